"""A validated config resolved against the data and the cluster: the concrete numbers every worker uses.

The driver makes the plan once (step counts from durations, the data's class count and size, CPUs per worker,
the MLflow run) and ships it with the config, so workers never re-derive them differently.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from .config import ConfigError, TrainConfig
from .durations import parse_duration, to_steps


@dataclass
class RunPlan:
    num_classes: int
    train_size: int  # examples in the training split (one epoch)
    dataset_name: str
    eval_splits: list[str]  # which of "val", "test" the data provides
    total_steps: int
    warmup_steps: int
    eval_every: int  # 0: only at the end
    fewshot_every: int  # 0: only at the end
    checkpoint_every: int  # 0: only at the end
    cpus_per_worker: float
    synthetic: bool
    tracking_uri: str | None = None
    mlflow_run_id: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> RunPlan:
        return cls(**data)


def resolve_steps(cfg: TrainConfig, train_size: int) -> dict[str, int]:
    """Durations of the config in optimiser steps (errors name the field)."""
    batch = cfg.schedule.global_batch_size
    if train_size < batch:
        raise ConfigError(f"schedule.global_batch_size: {batch} is larger than the training split ({train_size})")

    def steps(value, field: str) -> int:
        if value is None:
            return 0
        return to_steps(value, global_batch_size=batch, epoch_size=train_size, field=field)

    total = steps(cfg.schedule.total, "schedule.total")
    if total < 1:
        raise ConfigError(f"schedule.total: {parse_duration(cfg.schedule.total)} is less than one step of {batch}")
    warmup = steps(cfg.schedule.warmup, "schedule.warmup")
    if warmup >= total:
        raise ConfigError(f"schedule.warmup: {warmup} steps is not shorter than schedule.total ({total} steps)")
    return {"total_steps": total, "warmup_steps": warmup, "eval_every": steps(cfg.eval.every, "eval.every"),
            "fewshot_every": steps(cfg.eval.fewshot_every, "eval.fewshot_every"),
            "checkpoint_every": steps(cfg.checkpoint.every, "checkpoint.every")}

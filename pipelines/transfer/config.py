"""A fine-tuning run's configuration: the training config with the paper's fine-tuning recipe as its defaults,
plus the learning-rate sweep.

The recipe (Appendix B.1.1): SGD with momentum 0.9, no weight decay, cosine decay, global-norm clipping at 1,
batch 512, one run per learning rate in {0.003, 0.01, 0.03, 0.06}. Only the defaults that differ from
pre-training are written here (as subclasses of the training sections); everything else is the training config's.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pipelines.train.config import ConfigError, OptimSection, ScheduleSection, TrainConfig, validate
from pipelines.train.config_loading import apply_overrides, from_dict, read_yaml

SWEEP_KEY = "sweep"


@dataclass
class FinetuneOptim(OptimSection):
    name: str = "sgd"
    weight_decay: float = 0.0


@dataclass
class FinetuneSchedule(ScheduleSection):
    global_batch_size: int = 512
    decay: str = "cosine"


@dataclass
class SweepSection:
    lrs: list[float] = field(default_factory=lambda: [0.003, 0.01, 0.03, 0.06])  # one run each (sets optim.lr)
    select_by: str = "val/top1"  # the metric (higher is better) that picks the best learning rate


@dataclass
class FinetuneConfig(TrainConfig):
    name: str = "finetune"
    optim: FinetuneOptim = field(default_factory=FinetuneOptim)
    schedule: FinetuneSchedule = field(default_factory=FinetuneSchedule)
    sweep: SweepSection = field(default_factory=SweepSection)

    @classmethod
    def from_dict(cls, data: dict) -> FinetuneConfig:
        cfg = validate(from_dict(cls, data))
        lrs = cfg.sweep.lrs
        if not lrs or any(lr <= 0 for lr in lrs) or len(set(lrs)) != len(lrs):
            raise ConfigError(f"sweep.lrs: expected distinct positive learning rates, got {lrs}")
        if not cfg.sweep.select_by:
            raise ConfigError("sweep.select_by: name the metric that picks the best learning rate, e.g. val/top1")
        return cfg

    def run_config(self, lr: float) -> TrainConfig:
        """The training config of the sweep's run at learning rate ``lr`` (every value explicit)."""
        data = {k: v for k, v in self.to_dict().items() if k != SWEEP_KEY}
        return TrainConfig.from_dict(apply_overrides(data, {"optim.lr": lr, "name": run_label(self.name, lr)}))


def run_label(name: str, lr: float) -> str:
    """``finetune`` at 0.03 -> ``finetune-lr0.03`` (a Ray Train run name and MLflow run name)."""
    return f"{name}-lr{lr:g}"


def load_finetune_config(path=None, overrides=(), *, checkpoint: str | None = None) -> FinetuneConfig:
    """Read a fine-tuning YAML (or the defaults), apply overrides and ``checkpoint`` (sets ``init.checkpoint``),
    and validate."""
    data = read_yaml(path) if path is not None else {}
    extra = {"init.checkpoint": checkpoint} if checkpoint is not None else {}
    try:
        return FinetuneConfig.from_dict(apply_overrides(apply_overrides(data, overrides), extra))
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}" if path is not None else str(exc)) from None

"""Fine-tuning with the learning-rate sweep: one Ray Train run (and one MLflow run) per learning rate, then the
best one by ``sweep.select_by``, logged as a summary.

    summary = run_finetune(load_finetune_config("configs/finetune-hymenoptera.yaml"), checkpoint="runs:/<id>")

MLflow: the per-rate runs are children of ``parent_run_id`` when given (e.g. a study trial's run), else of a new
sweep run; the parent gets ``finetune/best_lr``, ``finetune/best_<metric>`` and one metric per rate. Every run is
tagged with the checkpoint it started from (and its MLflow run, when it came from one).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field

from pipelines import tracking
from pipelines.metric_names import FINETUNE_PREFIX, TEST_TOP1, finetune_best_key

from .config import FinetuneConfig, run_label

SWEEP_KIND = "finetune-sweep"


@dataclass
class SweepRun:
    lr: float
    metrics: dict[str, float]  # the run's final report (val/top1, test/top1, train/loss, ...)
    checkpoint: str | None  # its final Ray Train checkpoint (with export/)
    mlflow_run_id: str | None


@dataclass
class SweepSummary:
    select_by: str
    runs: list[SweepRun] = field(default_factory=list)
    mlflow_run_id: str | None = None  # the sweep's (or the given parent) run

    @property
    def best(self) -> SweepRun:
        scored = [r for r in self.runs if self.select_by in r.metrics]
        if not scored:
            raise ValueError(f"no fine-tuning run reported {self.select_by!r}; reported: "
                             f"{sorted(self.runs[0].metrics) if self.runs else []}")
        return max(scored, key=lambda r: r.metrics[self.select_by])

    def table(self) -> str:
        keys = [self.select_by] + [k for k in ("test/top1", "train/loss") if k != self.select_by]
        lines = ["lr       " + "  ".join(f"{k:>12}" for k in keys)]
        for r in self.runs:
            cells = "  ".join(f"{r.metrics[k]:12.4f}" if k in r.metrics else f"{'-':>12}" for k in keys)
            lines.append(f"{r.lr:<8g} {cells}{'  <- best' if r is self.best else ''}")
        return "\n".join(lines)


def run_finetune(config: FinetuneConfig, *, checkpoint: str | None = None, run_name: str | None = None,
                 storage_path: str | None = None, parent_run_id: str | None = None) -> SweepSummary:
    """Fine-tune ``checkpoint`` (default: ``config.init.checkpoint``; None trains from scratch with the same
    recipe) once per learning rate of ``config.sweep.lrs`` and return every run's final metrics and the best.

    Args:
        config: a validated :class:`FinetuneConfig`.
        checkpoint: anything ``init.checkpoint`` accepts (export dir, Ray Train checkpoint or run dir, MLflow run
            id or ``runs:/`` URI, a foreign checkpoint file).
        run_name: prefix of the Ray Train run names (``<run_name>-lr<lr>``); default ``<config name>-<time>``.
            Reusing one resumes those runs from their checkpoints.
        storage_path: Ray Train storage (default ``config.storage_path`` or ``./runs``).
        parent_run_id: an MLflow run to nest the per-rate runs under and log the summary into (it is not ended).
    """
    from pipelines.train.driver import run_training

    if checkpoint is not None:
        config = config.replace({"init.checkpoint": checkpoint})
    run_name = run_name or f"{config.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    uri = tracking.resolve_tracking_uri(config.tracking.uri) if config.tracking.enabled else None
    own_parent = uri is not None and parent_run_id is None
    if own_parent:
        experiment = tracking.get_or_create_experiment(uri, config.tracking.experiment, tracking.artifact_location(uri))
        parent_run_id = tracking.start_run(uri, experiment, key=run_name, run_name=run_name,
                                           tags=_sweep_tags(config), params=_sweep_params(config))
    summary = SweepSummary(select_by=config.sweep.select_by, mlflow_run_id=parent_run_id)
    status = "FAILED"
    try:
        for lr in config.sweep.lrs:
            label = run_label(run_name, lr)
            child = _child_run(uri, config, label, parent_run_id) if uri else None
            child_status = "FAILED"
            try:
                result = run_training(config.run_config(lr), run_name=label, storage_path=storage_path,
                                      mlflow_run_id=child)
                child_status = "FINISHED"
            finally:
                if child:
                    tracking.end_run(uri, child, child_status)
            metrics = {k: v for k, v in (result.metrics or {}).items() if isinstance(v, (int, float))}
            summary.runs.append(SweepRun(lr, metrics, result.checkpoint.path if result.checkpoint else None, child))
        if uri:
            _log_summary(uri, parent_run_id, summary)
        status = "FINISHED"
        return summary
    finally:
        if own_parent:
            tracking.end_run(uri, parent_run_id, status)


def _sweep_tags(config: FinetuneConfig) -> dict:
    tags = {"vit_study.kind": SWEEP_KIND, "variant": config.model.name}
    if config.init.checkpoint:
        tags["vit_study.init_checkpoint"] = config.init.checkpoint
    return tags


def _sweep_params(config: FinetuneConfig) -> dict:
    from pipelines.train.config_loading import flatten

    return flatten(config.to_dict())


def _child_run(uri: str, config: FinetuneConfig, label: str, parent_run_id: str) -> str:
    """The MLflow run of one learning rate, found again by its key when the sweep is resumed."""
    experiment = tracking.get_or_create_experiment(uri, config.tracking.experiment, tracking.artifact_location(uri))
    return tracking.start_run(uri, experiment, key=label, run_name=label, parent_run_id=parent_run_id)


def _log_summary(uri: str, run_id: str, summary: SweepSummary) -> None:
    from mlflow.entities import Metric

    best, key = summary.best, summary.select_by
    now = int(time.time() * 1000)
    values = {finetune_best_key("lr"): best.lr, finetune_best_key(key): best.metrics[key]}
    if TEST_TOP1 in best.metrics:
        values[finetune_best_key(TEST_TOP1)] = best.metrics[TEST_TOP1]
    for run in summary.runs:
        if key in run.metrics:
            values[f"{FINETUNE_PREFIX}lr{run.lr:g}/{key}"] = run.metrics[key]
    client = tracking.runs.client(uri)
    tracking.with_retries(lambda: client.log_batch(run_id, metrics=[Metric(k, float(v), now, 0)
                                                                    for k, v in values.items()]))
    text = json.dumps({"select_by": key, "best_lr": best.lr, "runs": [asdict(r) for r in summary.runs]}, indent=2)
    tracking.with_retries(lambda: client.log_text(run_id, text, "finetune_sweep.json"))

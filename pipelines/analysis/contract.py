"""What the study writes to MLflow and what the report reads back: the one place these names live.

One experiment may hold several studies. Each study has one *parent* run and one *child* run per trial:

parent run
    tag ``vit_study.role = "parent"``; the study config, and (from ``vit-study report``) the results table, the
    frontier, the fits and the plots as artifacts under ``report/``.
child run (one per trial, resumed, never duplicated, after a restore)
    tags
        ``mlflow.parentRunId`` (the parent's run id), ``vit_study.role = "trial"``, ``trial_id``, ``family``,
        ``variant``, ``data_fraction``, ``budget`` (the last four repeat params, for MLflow's comparison UI),
        optionally ``mlflow.note.content`` (free text shown as the run's description; the table's ``note``).
    params (``PARAM_COLUMNS``; values as ``str(value)``, which round-trips Python floats exactly)
        ``family``, ``variant``, ``params`` (parameter count), ``forward_gflops`` (per image), ``image_size``,
        ``patch_size``, ``data_fraction``, ``data_count`` (training images), ``budget`` (training images seen),
        ``budget_epochs``, ``lr`` (peak learning rate). Any other params (the recipe) are allowed and ignored here.
    final metrics (one value each; ``FINAL_METRICS``)
        ``top1`` (fraction in [0, 1]), ``train_flops``, ``wall_time_s``, ``device_hours`` and few-shot accuracies
        ``fewshot/<dataset>_<k>shot`` (fractions), which become table columns ``fewshot_<dataset>_<k>shot``;
        ``finetune/best_test/top1`` (``TRANSFER_METRIC``) when the study fine-tuned the trial (``frontier.finetune``),
        the table's ``transfer_top1``. The fine-tuning runs themselves are children of the trial's run.
    curves (metrics logged with an explicit ``step`` = optimiser step; ``CURVE_METRICS``)
        ``loss``, ``lr`` (the schedule; a metric, not the ``lr`` param), ``val_top1``: read from the keys the
        training loop logs (``train/loss``, ``train/lr``, ``val/top1``, see pipelines/train/metrics.py) or, when
        a run has none of those, from the short names themselves.
    run status
        MLflow's own (FINISHED, FAILED, KILLED, RUNNING), lower-cased into the table's ``status``.
"""

from __future__ import annotations

from pipelines import metric_names

TAG_ROLE = "vit_study.role"
ROLE_PARENT = "parent"
ROLE_TRIAL = "trial"
TAG_PARENT_RUN_ID = "mlflow.parentRunId"
TAG_TRIAL_ID = "trial_id"
TAG_NOTE = "mlflow.note.content"
# Tags that repeat params so that MLflow's UI can group and filter trials by them.
TRIAL_TAGS = ("family", "variant", "data_fraction", "budget")

PARAM_COLUMNS = (
    "family", "variant", "params", "forward_gflops", "image_size", "patch_size",
    "data_fraction", "data_count", "budget", "budget_epochs", "lr",
)
FINAL_METRICS = ("top1", "train_flops", "wall_time_s", "device_hours")
# The column of a trial fine-tuned by the study's frontier stage: its sweep's test top-1 at the best learning rate.
TRANSFER_COLUMN, TRANSFER_METRIC = "transfer_top1", metric_names.finetune_best_key(metric_names.TEST_TOP1)
FEWSHOT_METRIC_PREFIX = metric_names.FEWSHOT_PREFIX
FEWSHOT_COLUMN_PREFIX = "fewshot_"
# curve name in the curves table -> MLflow keys it is read from, first present wins: the training loop's keys, then
# plain names (runs logged by other tools).
CURVE_METRICS: dict[str, tuple[str, ...]] = {
    "loss": (metric_names.LOSS, "loss"),
    "lr": (metric_names.LR, "lr"),
    "val_top1": (metric_names.VAL_TOP1, "val_top1"),
}

# Where the report logs its outputs inside the parent run.
REPORT_ARTIFACT_DIR = "report"


def fewshot_metric_name(dataset: str, shots: int) -> str:
    """``("cifar10", 5)`` -> ``"fewshot/cifar10_5shot"``, the MLflow metric key."""
    return metric_names.fewshot_key(dataset, int(shots))


def fewshot_column(metric_name: str) -> str:
    """``"fewshot/cifar10_5shot"`` -> ``"fewshot_cifar10_5shot"``, the table column."""
    if not metric_name.startswith(FEWSHOT_METRIC_PREFIX):
        raise ValueError(f"not a few-shot metric: {metric_name!r} (expected prefix {FEWSHOT_METRIC_PREFIX!r})")
    return FEWSHOT_COLUMN_PREFIX + metric_name[len(FEWSHOT_METRIC_PREFIX):]


def fewshot_metric(column: str) -> str:
    """``"fewshot_cifar10_5shot"`` -> ``"fewshot/cifar10_5shot"``; the inverse of ``fewshot_column``."""
    if not column.startswith(FEWSHOT_COLUMN_PREFIX):
        raise ValueError(f"not a few-shot column: {column!r} (expected prefix {FEWSHOT_COLUMN_PREFIX!r})")
    return FEWSHOT_METRIC_PREFIX + column[len(FEWSHOT_COLUMN_PREFIX):]


def trial_tags(parent_run_id: str, trial_id: str, values: dict) -> dict[str, str]:
    """The tags of a trial's child run; ``values`` holds at least ``TRIAL_TAGS`` (e.g. the trial's params)."""
    missing = [k for k in TRIAL_TAGS if str(values.get(k)) in ("None", "", "nan", "<NA>")]
    if missing:
        raise ValueError(f"trial {trial_id!r}: missing value(s) for tag(s) {missing}")
    return {TAG_PARENT_RUN_ID: parent_run_id, TAG_ROLE: ROLE_TRIAL, TAG_TRIAL_ID: str(trial_id),
            **{k: str(values[k]) for k in TRIAL_TAGS}}

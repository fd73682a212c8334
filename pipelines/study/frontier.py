"""After the grid: the models on the accuracy-compute frontier get a closer look (``frontier`` in the study config).

With ``frontier.inspect`` each frontier trial's exported model (its MLflow run's ``model/`` artifact, written when
``train.checkpoint.export`` is on) goes through ``vit-study inspect``: attention rollout on sample test images, mean
attention distance, position-embedding similarity and embedding filters, logged to the trial's child run under
``inspection/`` and written under ``<report dir>/frontier/<trial_id>/``. A trial whose run already holds them (a
resumed study) is skipped, so ``--resume`` on a finished study only adds what is missing.

With ``frontier.finetune`` (a fine-tuning config) each frontier trial's model is fine-tuned with that config's
learning-rate sweep (``pipelines.transfer``): the per-rate runs are children of the trial's run, which gets the
sweep's summary (``finetune/best_test/top1`` becomes the results table's ``transfer_top1``). A trial that already
has it is skipped; an interrupted sweep resumes from its Ray Train checkpoints (same run names).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from pipelines.analysis.contract import ROLE_TRIAL, TAG_PARENT_RUN_ID, TAG_ROLE, TAG_TRIAL_ID, TRANSFER_METRIC
from pipelines.analysis.pareto import ALL, frontier
from pipelines.analysis.results_table import finished
from pipelines.data.storage import is_uri, join
from pipelines.inspection.tracking import ARTIFACT_DIR
from pipelines.metric_names import TEST_TOP1
from pipelines.tracking.runs import client

FRONTIER_DIR = "frontier"
FINETUNE_DIR = "finetune"  # under the study's Tune experiment: the fine-tuning runs' Ray Train storage
TEST_SPLIT_DIR = "test"


def frontier_trial_ids(table: pd.DataFrame, metric: str) -> list[str]:
    """Trial ids of the finished trials on the overall frontier of ``metric`` against training FLOPs, cheapest first."""
    done = finished(table, metric)
    if done.empty:
        return []
    on = frontier(done, metric=metric, by=None)
    return list(on.loc[on["group"] == ALL, "trial_id"])


def trial_run_ids(uri: str, experiment_id: str, parent_run_id: str) -> dict[str, str]:
    """trial_id -> run id of the study's FINISHED child runs."""
    query = (f"tags.`{TAG_ROLE}` = '{ROLE_TRIAL}' AND tags.`{TAG_PARENT_RUN_ID}` = '{parent_run_id}' "
             "AND attributes.status = 'FINISHED'")
    return {run.data.tags[TAG_TRIAL_ID]: run.info.run_id
            for run in client(uri).search_runs([experiment_id], filter_string=query, max_results=10_000)}


def sample_images(data_source: str) -> str | None:
    """Where the sample images for attention figures come from: the prepared test split (else train), when local."""
    if is_uri(data_source):
        return None
    root = Path(data_source)
    for split in (TEST_SPLIT_DIR, "train"):
        if (root / split).is_dir():
            return str(root / split)
    return None


def inspect_frontier(uri: str, experiment_id: str, parent_run_id: str, table: pd.DataFrame, *, metric: str,
                     data_source: str, num_images: int, out_dir: Path, log=print) -> dict[str, list[Path]]:
    """Inspection figures for each frontier trial not inspected yet; returns trial_id -> files written."""
    from pipelines.inspection.report import inspect_checkpoint

    ids = frontier_trial_ids(table, metric)
    run_ids = trial_run_ids(uri, experiment_id, parent_run_id)
    images = sample_images(data_source)
    mlflow = client(uri)
    written = {}
    for trial_id in ids:
        run_id = run_ids.get(trial_id)
        if run_id is None:
            continue
        if mlflow.list_artifacts(run_id, ARTIFACT_DIR):
            log(f"frontier: {trial_id} already has its inspection figures (run {run_id})")
            continue
        try:
            written[trial_id] = inspect_checkpoint(run_id, out_dir / FRONTIER_DIR / trial_id, images=images,
                                                   num_images=num_images, tracking_uri=uri, device="cpu")
        except ValueError as exc:  # e.g. a BiT ResNet: no attention to draw; the study's results stand regardless
            log(f"frontier: {trial_id}: no inspection figures: {exc}")
            continue
        log(f"frontier: {trial_id}: {len(written[trial_id])} inspection file(s) -> run {run_id}")
    return written


def finetune_frontier(uri: str, experiment: str, experiment_id: str, parent_run_id: str, table: pd.DataFrame, *,
                      metric: str, config_path: str, overrides: list[str], study_path: str,
                      log=print) -> dict[str, float]:
    """Fine-tune each frontier trial not fine-tuned yet; returns trial_id -> its transfer test top-1."""
    from pipelines.transfer.config import load_finetune_config
    from pipelines.transfer.sweep import run_finetune

    config = load_finetune_config(config_path, [*overrides, "tracking.enabled=true", f"tracking.uri={uri}",
                                                f"tracking.experiment={experiment}"])
    run_ids = trial_run_ids(uri, experiment_id, parent_run_id)
    mlflow = client(uri)
    done = {}
    for trial_id in frontier_trial_ids(table, metric):
        run_id = run_ids.get(trial_id)
        if run_id is None:
            continue
        if TRANSFER_METRIC in mlflow.get_run(run_id).data.metrics:
            log(f"frontier: {trial_id} is already fine-tuned (run {run_id})")
            continue
        log(f"frontier: fine-tuning {trial_id} with {config_path} (lrs {config.sweep.lrs})")
        summary = run_finetune(config, checkpoint=run_id, run_name=f"{trial_id}-ft",
                               storage_path=join(study_path, FINETUNE_DIR), parent_run_id=run_id)
        best = summary.best
        done[trial_id] = best.metrics.get(TEST_TOP1, float("nan"))
        log(f"frontier: {trial_id} fine-tuned: best lr {best.lr:g}, test top-1 {done[trial_id]:.4f}")
    return done


__all__ = ["finetune_frontier", "frontier_trial_ids", "inspect_frontier", "sample_images", "trial_run_ids"]

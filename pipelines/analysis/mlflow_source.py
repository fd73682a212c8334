"""Rebuild a study's results table and training curves from MLflow alone (names in ``contract``).

``table_from_mlflow(experiment, tracking_uri)`` reads the study's parent run and its trial runs and returns the
results table (``results_table`` columns) and the curves (``trial_id, step, metric, value``).

- Several studies in one experiment: the most recently started parent is used unless ``parent_run_id`` is given.
- Two child runs with the same ``trial_id`` (a restore that did not find its run): the finished one wins, then the
  most recently started; the other is ignored.
- A curve step logged twice (a trial resumed from an earlier checkpoint re-logs steps): the latest value wins.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from .contract import (
    CURVE_METRICS,
    FEWSHOT_METRIC_PREFIX,
    FINAL_METRICS,
    PARAM_COLUMNS,
    ROLE_PARENT,
    ROLE_TRIAL,
    TAG_NOTE,
    TAG_PARENT_RUN_ID,
    TAG_ROLE,
    TAG_TRIAL_ID,
    TRANSFER_COLUMN,
    TRANSFER_METRIC,
    fewshot_column,
)
from .results_table import results_table

CURVE_COLUMNS = ["trial_id", "step", "metric", "value"]
_PAGE = 1000


@dataclass
class StudyRuns:
    """What MLflow holds of one study."""

    experiment_id: str
    parent_run_id: str
    table: pd.DataFrame
    curves: pd.DataFrame


def table_from_mlflow(experiment_name: str, tracking_uri: str | None = None, *,
                      parent_run_id: str | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(results table, curves) of a study, from MLflow alone."""
    study = load_study(experiment_name, tracking_uri, parent_run_id=parent_run_id)
    return study.table, study.curves


def load_study(experiment_name: str, tracking_uri: str | None = None, *, parent_run_id: str | None = None,
               curve_metrics: dict[str, tuple[str, ...]] = CURVE_METRICS) -> StudyRuns:
    """The study's parent run id, results table and curves.

    ``tracking_uri`` is resolved as everywhere (``pipelines.tracking``: default ``sqlite:///<cwd>/mlflow.db``);
    ``curve_metrics`` maps each curve's name to the MLflow keys it may be logged under.
    """
    from mlflow.tracking import MlflowClient  # mlflow is slow to import; only the MLflow paths need it

    from pipelines.tracking import resolve_tracking_uri

    uri = resolve_tracking_uri(tracking_uri)
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name(experiment_name)
    if experiment is None:
        raise ValueError(f"no MLflow experiment named {experiment_name!r} at {uri}")
    parent = find_parent_run(client, experiment.experiment_id, parent_run_id)
    runs = _trial_runs(client, experiment.experiment_id, parent)
    table = results_table([_row(run) for run in runs])
    curves = [row for run in runs for row in _curves(client, run, curve_metrics)]
    curves = pd.DataFrame(curves, columns=CURVE_COLUMNS + ["timestamp"])
    curves = (curves.sort_values(["trial_id", "metric", "step", "timestamp"], kind="stable")
              .drop_duplicates(["trial_id", "metric", "step"], keep="last")[CURVE_COLUMNS].reset_index(drop=True))
    return StudyRuns(experiment.experiment_id, parent, table, curves.astype({"step": "int64", "value": "float64"}))


def find_parent_run(client, experiment_id: str, parent_run_id: str | None = None) -> str:
    """The study's parent run id: ``parent_run_id`` (checked), else the latest-started parent of the experiment."""
    if parent_run_id:
        run = client.get_run(parent_run_id)
        if run.info.experiment_id != experiment_id or run.data.tags.get(TAG_ROLE) != ROLE_PARENT:
            raise ValueError(f"run {parent_run_id} is not a study parent run (tag {TAG_ROLE}={ROLE_PARENT}) of "
                             f"experiment {experiment_id}")
        return parent_run_id
    parents = client.search_runs([experiment_id], filter_string=f"tags.`{TAG_ROLE}` = '{ROLE_PARENT}'",
                                 order_by=["attributes.start_time DESC"], max_results=1)
    if not parents:
        raise ValueError(f"experiment {experiment_id} has no study parent run (tag {TAG_ROLE}={ROLE_PARENT})")
    return parents[0].info.run_id


def _trial_runs(client, experiment_id: str, parent_run_id: str) -> list:
    """Child trial runs of the parent, one per trial_id (see module docstring for duplicates)."""
    query = f"tags.`{TAG_ROLE}` = '{ROLE_TRIAL}' AND tags.`{TAG_PARENT_RUN_ID}` = '{parent_run_id}'"
    runs, token = [], None
    while True:
        page = client.search_runs([experiment_id], filter_string=query, max_results=_PAGE, page_token=token)
        runs += list(page)
        token = page.token
        if not token:
            break
    chosen = {}
    for run in runs:
        trial_id = run.data.tags.get(TAG_TRIAL_ID)
        if not trial_id:
            raise ValueError(f"MLflow run {run.info.run_id}: trial run without a {TAG_TRIAL_ID!r} tag")
        rank = (run.info.status == "FINISHED", run.info.start_time or 0)
        if trial_id not in chosen or rank > chosen[trial_id][0]:
            chosen[trial_id] = (rank, run)
    return [run for _, run in sorted(chosen.values(), key=lambda item: item[1].data.tags[TAG_TRIAL_ID])]


def _row(run) -> dict:
    params, tags, metrics = run.data.params, run.data.tags, run.data.metrics
    row = {"trial_id": tags[TAG_TRIAL_ID], "status": run.info.status.lower(), "note": tags.get(TAG_NOTE)}
    for name in PARAM_COLUMNS:
        row[name] = params.get(name, tags.get(name))  # tags repeat some params; params are authoritative
    for name in FINAL_METRICS:
        row[name] = metrics.get(name)
    if TRANSFER_METRIC in metrics:
        row[TRANSFER_COLUMN] = metrics[TRANSFER_METRIC]
    for name, value in metrics.items():
        if name.startswith(FEWSHOT_METRIC_PREFIX):
            row[fewshot_column(name)] = value
    return row


def _curves(client, run, curve_metrics: dict[str, tuple[str, ...]]) -> list[tuple]:
    trial_id, logged = run.data.tags[TAG_TRIAL_ID], run.data.metrics
    rows = []
    for name, keys in curve_metrics.items():
        key = next((k for k in keys if k in logged), None)
        if key is not None:
            rows += [(trial_id, m.step, name, m.value, m.timestamp)
                     for m in client.get_metric_history(run.info.run_id, key)]
    return rows

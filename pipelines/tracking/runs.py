"""MLflow runs for training: one run per training run, created by the driver and found again by a tag.

The driver creates the run (or finds the one a restored run already has) and passes its id to the workers; rank 0
logs into it (:mod:`pipelines.tracking.logger`); the driver sets its final status. That is what keeps a restarted
worker group, or a resumed Tune trial, in the same run instead of opening a second one.
"""

from __future__ import annotations

import time

RUN_KEY_TAG = "vit_study.run_key"  # stable key of a training run (its Ray Train run name); find_run looks it up
MAX_PARAMS_PER_BATCH, MAX_PARAM_LENGTH = 100, 6000
PERMANENT_ERRORS = ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "RESOURCE_ALREADY_EXISTS", "BAD_REQUEST",
                    "PERMISSION_DENIED", "UNAUTHENTICATED", "ENDPOINT_NOT_FOUND")


def with_retries(fn, *, attempts: int = 6, delay: float = 0.5):
    """Call ``fn()``, retrying transient failures (sqlite "database is locked", a server restarting)."""
    from mlflow.exceptions import MlflowException

    for attempt in range(attempts):
        try:
            return fn()
        except (MlflowException, OSError, ConnectionError) as exc:
            if attempt == attempts - 1 or getattr(exc, "error_code", None) in PERMANENT_ERRORS:
                raise
            time.sleep(delay * 2**attempt)
    raise AssertionError("unreachable")  # the loop returns or raises


def client(uri: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def get_or_create_experiment(uri: str, name: str, artifact_location: str | None = None) -> str:
    from mlflow.exceptions import MlflowException

    from .server import check_reachable

    check_reachable(uri)  # the first contact of a run or study: a server that is down is one clear error, at once
    c = client(uri)

    def attempt():
        experiment = c.get_experiment_by_name(name)
        if experiment is not None:
            return experiment.experiment_id
        try:
            return c.create_experiment(name, artifact_location=artifact_location)
        except MlflowException as exc:  # created meanwhile by a concurrent run
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
            return c.get_experiment_by_name(name).experiment_id

    return with_retries(attempt)


def find_run(uri: str, experiment_id: str, key: str):
    """The newest run tagged with this run key, or None."""
    runs = with_retries(lambda: client(uri).search_runs(
        [experiment_id], filter_string=f"tags.`{RUN_KEY_TAG}` = '{key}'", order_by=["attributes.start_time DESC"],
        max_results=1))
    return runs[0] if runs else None


def start_run(uri: str, experiment_id: str, *, key: str, run_name: str, tags: dict | None = None,
              params: dict | None = None, parent_run_id: str | None = None, resume: bool = True) -> str:
    """The run for ``key``: an existing one (set RUNNING again) when ``resume``, else a new one with params."""
    c = client(uri)
    existing = find_run(uri, experiment_id, key) if resume else None
    if existing is not None:
        with_retries(lambda: c.update_run(existing.info.run_id, status="RUNNING"))
        return existing.info.run_id
    all_tags = {RUN_KEY_TAG: key, "mlflow.runName": run_name, **(tags or {})}
    if parent_run_id:
        all_tags["mlflow.parentRunId"] = parent_run_id
    run = with_retries(lambda: c.create_run(experiment_id, run_name=run_name,
                                            tags={k: str(v) for k, v in all_tags.items()}))
    if params:
        log_params(uri, run.info.run_id, params)
    return run.info.run_id


def log_params(uri: str, run_id: str, params: dict) -> None:
    from mlflow.entities import Param

    items = [Param(str(k), _param_value(v)) for k, v in params.items()]
    for i in range(0, len(items), MAX_PARAMS_PER_BATCH):
        chunk = items[i:i + MAX_PARAMS_PER_BATCH]
        with_retries(lambda chunk=chunk: client(uri).log_batch(run_id, params=chunk))


def _param_value(value) -> str:
    text = "null" if value is None else str(value)
    return text if len(text) <= MAX_PARAM_LENGTH else text[:MAX_PARAM_LENGTH - 3] + "..."


def end_run(uri: str, run_id: str, status: str = "FINISHED") -> None:
    with_retries(lambda: client(uri).set_terminated(run_id, status=status))

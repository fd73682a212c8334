"""Per-step metric histories of one named MLflow run, for benchmarks that read back what a real run logged."""

from __future__ import annotations

from mlflow.tracking import MlflowClient


def metric_history(uri: str, experiment: str, run_name: str, keys) -> dict[str, dict[int, float]]:
    """``{key: {step: value}}`` of the run called ``run_name`` (exactly one) in ``experiment``."""
    client = MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    (run,) = client.search_runs([found.experiment_id], f"attributes.run_name = '{run_name}'")
    return {key: {m.step: m.value for m in client.get_metric_history(run.info.run_id, key)} for key in keys}

"""Figures back to the MLflow run a model came from (``inspection/`` in its artifacts)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

ARTIFACT_DIR = "inspection"


def log_figures(run_id: str, files: Iterable[Path], tracking_uri: str | None = None,
                artifact_dir: str = ARTIFACT_DIR) -> None:
    """Attach ``files`` to the (possibly finished) run ``run_id`` under ``artifact_dir``."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    for file in files:
        client.log_artifact(run_id, str(file), artifact_dir)

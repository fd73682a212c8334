"""Rank 0's view of an MLflow run: metrics with explicit steps (buffered, written in batches), artifacts.

Other ranks get a :class:`NullLogger`, so the training loop never asks who it is before logging.
"""

from __future__ import annotations

import math
import time

from .runs import client, with_retries

MAX_METRICS_PER_BATCH = 1000


class RunLogger:
    def __init__(self, uri: str, run_id: str):
        from mlflow.entities import Metric

        self._metric, self.uri, self.run_id = Metric, uri, run_id
        self._client = client(uri)
        self._pending: list = []

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        """Queue numeric, finite metrics at ``step``; written by :meth:`flush`."""
        now = int(time.time() * 1000)
        for key, value in metrics.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                self._pending.append(self._metric(key, float(value), now, int(step)))

    def flush(self) -> None:
        while self._pending:
            chunk, self._pending = self._pending[:MAX_METRICS_PER_BATCH], self._pending[MAX_METRICS_PER_BATCH:]
            with_retries(lambda chunk=chunk: self._client.log_batch(self.run_id, metrics=chunk))

    def log_artifacts(self, directory, artifact_path: str | None = None) -> None:
        with_retries(lambda: self._client.log_artifacts(self.run_id, str(directory), artifact_path))

    def log_artifact(self, path, artifact_path: str | None = None) -> None:
        with_retries(lambda: self._client.log_artifact(self.run_id, str(path), artifact_path))

    def set_tags(self, tags: dict) -> None:
        for key, value in tags.items():
            with_retries(lambda key=key, value=value: self._client.set_tag(self.run_id, key, str(value)))


class NullLogger:
    """Stands in on ranks other than 0 and when tracking is off."""

    def log_metrics(self, metrics, step) -> None:
        pass

    def flush(self) -> None:
        pass

    def log_artifacts(self, directory, artifact_path=None) -> None:
        pass

    def log_artifact(self, path, artifact_path=None) -> None:
        pass

    def set_tags(self, tags) -> None:
        pass

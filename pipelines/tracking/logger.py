"""Rank 0's view of an MLflow run: metrics with explicit steps (buffered, written in batches), artifacts.

Batches are written by one background thread, so training does not stop while the tracking server is slow or being
restarted (``with_retries`` and MLflow's own HTTP retries ride out the outage there); ``flush(wait=True)`` - at
checkpoints and at the end - waits until everything queued is written, so a checkpoint never gets ahead of the
metrics before it. Other ranks get a :class:`NullLogger`, so the training loop never asks who it is before logging.
"""

from __future__ import annotations

import math
import queue
import threading
import time

from .runs import client, with_retries

MAX_METRICS_PER_BATCH = 1000


class RunLogger:
    def __init__(self, uri: str, run_id: str):
        from mlflow.entities import Metric

        self._metric, self.uri, self.run_id = Metric, uri, run_id
        self._client = client(uri)
        self._pending: list = []
        self._batches: queue.Queue = queue.Queue()
        self._writer: threading.Thread | None = None
        self._error: BaseException | None = None

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        """Queue numeric, finite metrics at ``step``; written by :meth:`flush`."""
        now = int(time.time() * 1000)
        for key, value in metrics.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                self._pending.append(self._metric(key, float(value), now, int(step)))

    def flush(self, wait: bool = True) -> None:
        """Hand the queued metrics to the writer thread; with ``wait``, return once all are written. A batch the
        writer could not write (after its retries) is raised here, at the next call."""
        self._raise_failure()
        while self._pending:
            chunk, self._pending = self._pending[:MAX_METRICS_PER_BATCH], self._pending[MAX_METRICS_PER_BATCH:]
            self._batches.put(chunk)
        if self._writer is None:
            self._writer = threading.Thread(target=self._write_batches, name="mlflow-metrics", daemon=True)
            self._writer.start()
        if wait:
            self._batches.join()
            self._raise_failure()

    def _write_batches(self) -> None:
        while True:
            chunk = self._batches.get()
            try:
                if self._error is None:  # after a failure, the run's error is what matters: stop writing
                    with_retries(lambda chunk=chunk: self._client.log_batch(self.run_id, metrics=chunk))
            except BaseException as exc:  # noqa: BLE001 - handed to the training thread by flush()
                self._error = exc
            finally:
                self._batches.task_done()

    def _raise_failure(self) -> None:
        if self._error is not None:
            raise RuntimeError(f"MLflow run {self.run_id}: writing metrics failed: {self._error}") from self._error

    def log_artifacts(self, directory, artifact_path: str | None = None) -> None:
        self.flush()
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

    def flush(self, wait: bool = True) -> None:
        pass

    def log_artifacts(self, directory, artifact_path=None) -> None:
        pass

    def log_artifact(self, path, artifact_path=None) -> None:
        pass

    def set_tags(self, tags) -> None:
        pass

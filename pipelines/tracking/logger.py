"""Rank 0's view of an MLflow run: metrics with explicit steps (written in batches by a background thread),
artifacts.

Training never waits for the tracking server: metrics are queued and one writer thread sends them, retrying through
an outage (a server being restarted) for as long as training runs. What is not yet written at a checkpoint is saved
in it (:meth:`RunLogger.unwritten`) and queued again on resume (:meth:`RunLogger.requeue`; MLflow ignores a metric
it already holds), so a worker killed during an outage loses nothing. Only the end of training waits, up to
``FINAL_WAIT_S``. Other ranks get a :class:`NullLogger`, so the training loop never asks who it is before logging.
"""

from __future__ import annotations

import math
import threading
import time

from .runs import PERMANENT_ERRORS, client, with_retries

MAX_METRICS_PER_BATCH = 1000
FINAL_WAIT_S = 600.0  # how long the end of training waits for a tracking server that is down
RETRY_CAP_S = 15.0  # longest pause between two tries of the writer while the server is down


class RunLogger:
    def __init__(self, uri: str, run_id: str):
        from mlflow.entities import Metric

        self._metric, self.uri, self.run_id = Metric, uri, run_id
        self._client = client(uri)
        self._unwritten: list = []  # oldest first; the writer removes a batch once MLflow has it
        self._lock = threading.Condition()
        self._wake = threading.Event()
        self._fatal: BaseException | None = None  # an error retrying cannot fix (a deleted run, a bad value)
        self._last_error: BaseException | None = None
        self._writer: threading.Thread | None = None

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        """Queue numeric, finite metrics at ``step``; sent at the next :meth:`flush`."""
        now = int(time.time() * 1000)
        queued = [self._metric(key, float(value), now, int(step)) for key, value in metrics.items()
                  if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)]
        with self._lock:
            self._unwritten += queued

    def flush(self, wait: bool = True, timeout_s: float = FINAL_WAIT_S) -> None:
        """Wake the writer. With ``wait``, return once every queued metric is written; raise if that takes longer
        than ``timeout_s`` or if MLflow refused a batch for good (also raised by a non-waiting flush)."""
        self._raise_fatal()
        if self._writer is None:
            self._writer = threading.Thread(target=self._write_forever, name="mlflow-metrics", daemon=True)
            self._writer.start()
        self._wake.set()
        if not wait:
            return
        deadline = time.monotonic() + timeout_s
        with self._lock:
            while self._unwritten and self._fatal is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise RuntimeError(f"MLflow run {self.run_id} at {self.uri}: {len(self._unwritten)} metrics "
                                       f"still unwritten after {timeout_s:.0f} s: {self._last_error}")
                self._lock.wait(timeout=min(left, 1.0))
        self._raise_fatal()

    def unwritten(self) -> list[dict]:
        """The metrics MLflow does not have yet, as plain records (saved with a checkpoint)."""
        with self._lock:
            return [{"key": m.key, "value": m.value, "timestamp": m.timestamp, "step": m.step}
                    for m in self._unwritten]

    def requeue(self, records: list[dict]) -> None:
        """Queue metrics saved by :meth:`unwritten` again, ahead of new ones (they are older)."""
        restored = [self._metric(r["key"], float(r["value"]), int(r["timestamp"]), int(r["step"])) for r in records]
        with self._lock:
            self._unwritten[:0] = restored

    def _write_forever(self) -> None:
        pause = 0.5
        while True:
            self._wake.wait(timeout=RETRY_CAP_S)
            self._wake.clear()
            while True:
                with self._lock:
                    batch = self._unwritten[:MAX_METRICS_PER_BATCH]
                if not batch or self._fatal is not None:
                    break
                try:
                    self._client.log_batch(self.run_id, metrics=batch)
                except Exception as exc:  # noqa: BLE001 - kept for the training thread to raise or report
                    self._last_error = exc
                    if getattr(exc, "error_code", None) in PERMANENT_ERRORS or not _transient(exc):
                        with self._lock:
                            self._fatal = exc
                            self._lock.notify_all()
                        return
                    time.sleep(pause)  # the server is down: try again later, training goes on meanwhile
                    pause = min(pause * 2, RETRY_CAP_S)
                    continue
                pause = 0.5
                with self._lock:
                    del self._unwritten[:len(batch)]
                    self._lock.notify_all()

    def _raise_fatal(self) -> None:
        if self._fatal is not None:
            raise RuntimeError(f"MLflow run {self.run_id}: writing metrics failed: {self._fatal}") from self._fatal

    def log_artifacts(self, directory, artifact_path: str | None = None) -> None:
        with_retries(lambda: self._client.log_artifacts(self.run_id, str(directory), artifact_path))

    def log_artifact(self, path, artifact_path: str | None = None) -> None:
        with_retries(lambda: self._client.log_artifact(self.run_id, str(path), artifact_path))

    def set_tags(self, tags: dict) -> None:
        for key, value in tags.items():
            with_retries(lambda key=key, value=value: self._client.set_tag(self.run_id, key, str(value)))


def _transient(exc: BaseException) -> bool:
    from mlflow.exceptions import MlflowException

    return isinstance(exc, (MlflowException, OSError, ConnectionError))


class NullLogger:
    """Stands in on ranks other than 0 and when tracking is off."""

    def log_metrics(self, metrics, step) -> None:
        pass

    def flush(self, wait: bool = True, timeout_s: float = FINAL_WAIT_S) -> None:
        pass

    def unwritten(self) -> list[dict]:
        return []

    def requeue(self, records) -> None:
        pass

    def log_artifacts(self, directory, artifact_path=None) -> None:
        pass

    def log_artifact(self, path, artifact_path=None) -> None:
        pass

    def set_tags(self, tags) -> None:
        pass

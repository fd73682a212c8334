"""Rank 0's MLflow logger writes in a background thread: training does not wait for a slow or restarting tracking
server, yet a waiting flush (checkpoints, the end) returns only once every metric is written, in order, and a batch
that could not be written is raised to the training loop."""

import threading
import time

import pytest

from pipelines.tracking import logger as logger_module


class SlowClient:
    """Stands in for MlflowClient: each log_batch blocks until released (a server that is down), or fails."""

    def __init__(self, fail: bool = False):
        self.release, self.fail, self.written = threading.Event(), fail, []

    def log_batch(self, run_id, metrics):
        self.release.wait(timeout=30)
        if self.fail:
            raise ValueError("bad batch")  # not a transient error: with_retries does not retry it
        self.written += [(m.key, m.step) for m in metrics]


@pytest.fixture
def slow(monkeypatch):
    fake = SlowClient()
    monkeypatch.setattr(logger_module, "client", lambda uri: fake)
    return fake


def test_a_non_waiting_flush_returns_while_the_server_is_down_and_a_waiting_one_writes_all(slow):
    run = logger_module.RunLogger("http://127.0.0.1:1", "run")
    for step in range(1, 4):
        run.log_metrics({"train/loss": 1.0 / step, "skipped": float("nan")}, step)
        started = time.perf_counter()
        run.flush(wait=False)
        assert time.perf_counter() - started < 1.0  # training goes on
    assert slow.written == []
    threading.Timer(0.3, slow.release.set).start()  # the server comes back
    run.flush(wait=True)
    assert slow.written == [("train/loss", 1), ("train/loss", 2), ("train/loss", 3)]  # complete, in order


def test_a_batch_that_cannot_be_written_is_raised_at_the_next_flush(monkeypatch):
    fake = SlowClient(fail=True)
    fake.release.set()
    monkeypatch.setattr(logger_module, "client", lambda uri: fake)
    run = logger_module.RunLogger("http://127.0.0.1:1", "run-7")
    run.log_metrics({"train/loss": 1.0}, 1)
    with pytest.raises(RuntimeError, match="MLflow run run-7: writing metrics failed: bad batch"):
        run.flush(wait=True)

"""Rank 0's MLflow logger writes in a background thread: training does not wait for a tracking server that is down,
what is unwritten can be saved (with a checkpoint) and queued again without duplicates, a waiting flush returns
only once everything is written, and an error retrying cannot fix reaches the training loop."""

import threading
import time

import pytest
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

from pipelines.tracking import logger as logger_module


class DownServer:
    """Stands in for MlflowClient: ``log_batch`` fails like a stopped server until ``up`` is set."""

    def __init__(self, error: Exception | None = None):
        self.up, self.error, self.written, self.tries = threading.Event(), error, [], 0

    def log_batch(self, run_id, metrics):
        self.tries += 1
        if self.error is not None:
            raise self.error
        if not self.up.is_set():
            raise ConnectionError("connection refused")
        self.written += [(m.key, m.step) for m in metrics]


@pytest.fixture
def server(monkeypatch):
    fake = DownServer()
    monkeypatch.setattr(logger_module, "client", lambda uri: fake)
    monkeypatch.setattr(logger_module, "RETRY_CAP_S", 0.2)
    return fake


def test_training_goes_on_while_the_server_is_down_and_the_end_waits_for_every_metric(server):
    run = logger_module.RunLogger("http://127.0.0.1:1", "run")
    for step in range(1, 4):
        run.log_metrics({"train/loss": 1.0 / step, "skipped": float("nan"), "flag": True}, step)
        started = time.perf_counter()
        run.flush(wait=False)
        assert time.perf_counter() - started < 0.5
    time.sleep(1.5)
    assert server.written == [] and server.tries >= 2  # the writer kept trying
    assert [r["step"] for r in run.unwritten()] == [1, 2, 3]
    threading.Timer(0.3, server.up.set).start()  # the server comes back
    run.flush(wait=True)
    assert server.written == [("train/loss", 1), ("train/loss", 2), ("train/loss", 3)]  # complete, in order
    assert run.unwritten() == []


def test_a_waiting_flush_gives_up_after_its_timeout_naming_the_run_and_the_error(server):
    run = logger_module.RunLogger("http://127.0.0.1:1", "run-3")
    run.log_metrics({"train/loss": 1.0}, 1)
    with pytest.raises(RuntimeError, match=r"run-3 .*1 metrics still unwritten after 1 s: connection refused"):
        run.flush(wait=True, timeout_s=1.0)


def test_a_refused_batch_is_raised_at_the_next_flush_without_retrying(monkeypatch):
    fake = DownServer(error=MlflowException("run is deleted", error_code=INVALID_PARAMETER_VALUE))
    monkeypatch.setattr(logger_module, "client", lambda uri: fake)
    run = logger_module.RunLogger("http://127.0.0.1:1", "run-7")
    run.log_metrics({"train/loss": 1.0}, 1)
    with pytest.raises(RuntimeError, match="MLflow run run-7: writing metrics failed: run is deleted"):
        run.flush(wait=True)
    assert fake.tries == 1
    with pytest.raises(RuntimeError, match="run is deleted"):
        run.flush(wait=False)


def test_metrics_saved_at_a_checkpoint_are_logged_once_after_resume_in_a_real_store(tmp_path):
    """The checkpoint path: some metrics reached MLflow, the rest were saved unwritten; the resumed worker queues
    them again (with one MLflow already has, as a save racing the writer can do) and MLflow ends with each once."""
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run_id = MlflowClient(uri).create_run(MlflowClient(uri).create_experiment("resume")).info.run_id
    first = logger_module.RunLogger(uri, run_id)
    first.log_metrics({"train/loss": 2.0}, 1)
    first.flush()
    first.log_metrics({"train/loss": 1.5}, 2)
    first.log_metrics({"train/loss": 1.0}, 3)
    saved = first.unwritten()  # what a checkpoint at step 3 holds while the server is down
    assert [r["step"] for r in saved] == [2, 3]
    first.flush()  # ... and the server took step 2 and 3 after all before the worker died

    resumed = logger_module.RunLogger(uri, run_id)
    resumed.requeue(saved)
    resumed.log_metrics({"train/loss": 0.5}, 4)
    resumed.flush()
    history = MlflowClient(uri).get_metric_history(run_id, "train/loss")
    assert sorted((m.step, m.value) for m in history) == [(1, 2.0), (2, 1.5), (3, 1.0), (4, 0.5)]

"""The MLflow run of a smoke training, checked through MlflowClient: params, loss/lr/images-per-second curves,
final top-1, few-shot accuracy, training FLOPs and the safetensors artifact - on the embedded sqlite store, and
(slow) on a real ``mlflow server`` on 127.0.0.1."""

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

import vit_model
from pipelines.tracking import RUN_KEY_TAG, resolve_tracking_uri
from pipelines.train import load_config, run_training

SMOKE = Path(__file__).resolve().parents[1] / "configs" / "train-smoke.yaml"
CURVES = ("train/loss", "train/lr", "train/images_per_s", "train/grad_norm", "train/flops")



def _train_and_check(uri: str, storage: Path, download_to: Path) -> None:
    from mlflow.tracking import MlflowClient

    cfg = load_config(SMOKE, [f"tracking.uri={uri}", "tracking.experiment=smoke-test"])
    result = run_training(cfg, run_name="smoke-mlflow", storage_path=str(storage))
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("smoke-test")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1
    run = runs[0]
    assert run.info.status == "FINISHED" and run.data.tags[RUN_KEY_TAG] == "smoke-mlflow"
    assert run.data.tags["variant"] == "vit-pi/4" and run.data.tags["family"] == "vit"

    params = run.data.params
    assert params["model.name"] == "vit-pi/4" and float(params["optim.lr"]) == cfg.optim.lr
    assert params["schedule.total"] == "30 steps" and int(params["plan.total_steps"]) == 30

    for key in CURVES:
        history = client.get_metric_history(run.info.run_id, key)
        assert sorted(m.step for m in history) == list(range(1, 31)), key
    lrs = {m.step: m.value for m in client.get_metric_history(run.info.run_id, "train/lr")}
    assert lrs[5] == pytest.approx(cfg.optim.lr) and lrs[30] < lrs[6]  # warm-up peak, then decay

    final = run.data.metrics  # latest value of each metric
    for key in ("val/top1", "test/top1", "train/flops", *(f"fewshot/synthetic_{k}shot" for k in (1, 5, 10, 25))):
        assert final[key] == pytest.approx(result.metrics[key]), key
    assert final["val/top1"] > 0.3 and final["train/flops"] > 0

    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "model")}
    assert artifacts == {"model/model.safetensors", "model/config.json"}
    assert "run_config.yaml" in {a.path for a in client.list_artifacts(run.info.run_id)}
    local = client.download_artifacts(run.info.run_id, "model", str(download_to))
    model = vit_model.load_model(local)
    assert model.model_name == "vit-pi/4" and model.config.num_classes == 10


def test_local_sqlite_store(ray_cluster, tmp_path):
    uri = resolve_tracking_uri(str(tmp_path / "mlflow.db"))
    assert uri == f"sqlite:///{tmp_path / 'mlflow.db'}"
    _train_and_check(uri, tmp_path / "runs", tmp_path / "download")
    assert (tmp_path / "mlruns").is_dir()  # artifacts beside the database, at an absolute path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def mlflow_server(tmp_path):
    """A real ``mlflow server`` (sqlite backend, proxied artifacts) on a free port; stopped even if a test fails."""
    port = _free_port()
    mlflow = Path(sys.executable).with_name("mlflow")
    command = [str(mlflow), "server", "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
               "--artifacts-destination", str(tmp_path / "server-artifacts"), "--host", "127.0.0.1",
               "--port", str(port), "--workers", "1"]
    log = open(tmp_path / "server.log", "w")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=tmp_path)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2):
                    break
            except OSError as exc:
                if process.poll() is not None or time.monotonic() > deadline:
                    log_text = (tmp_path / "server.log").read_text()
                    raise RuntimeError(f"mlflow server did not start:\n{log_text}") from exc
                time.sleep(1)
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()


@pytest.mark.slow
def test_real_mlflow_server(ray_cluster, mlflow_server, tmp_path):
    _train_and_check(mlflow_server, tmp_path / "runs", tmp_path / "download")
    assert list((tmp_path / "server-artifacts").rglob("model.safetensors"))  # uploaded through the server

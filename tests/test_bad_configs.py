"""Bad configs and unusable services: one clear error each, before Ray starts (or, for what only the cluster can
tell, before any trial is scheduled), through the commands users run.

Each case prints ``BAD-CONFIG | <command> | <case> | <error line>`` (``pytest -s``): RELIABILITY.md's table is
those lines.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from pipelines.cli import main as cli_main

REPO = Path(__file__).resolve().parents[1]
STUDY = str(REPO / "configs" / "study-smoke.yaml")
TRAIN = str(REPO / "configs" / "train-smoke.yaml")
SYNTHETIC = ["train.data.source=synthetic", "train.data.num_classes=10"]

STUDY_CASES = {  # case -> (override, the field the error must start with, words it must contain)
    "unknown variant": ("grid.models=[vit-pi/8, vit-zz/4]", "grid.models[1]", "vit-zz/4"),
    "patch size not dividing the image size": ("grid.models=[vit-pi/5]", "grid.models[0]",
                                               "not divisible by patch_size 5"),
    "negative budget": ("grid.budgets=[-640 images]", "grid.budgets[0]", "-640"),
    "data fraction > 1": ("grid.data_fractions=[0.5, 1.5]", "grid.data_fractions[1]", "(0, 1]"),
    "missing data path": ("train.data.source=/nonexistent/cifar10", "train.data.source", "/nonexistent/cifar10"),
}
TRAIN_CASES = {
    "unknown variant": ("model.name=vit-zz/4", "model.name", "vit-zz/4"),
    "patch size not dividing the image size": ("model.name=vit-pi/5", "model.options", "not divisible by patch_size 5"),
    "negative budget": ("schedule.total=-30 steps", "schedule.total", "-30"),
    "data fraction > 1": ("data.train_fraction=1.5", "data.train_fraction", "1.5"),
    "missing data path": ("data.source=/nonexistent/cifar10", "data.source", "/nonexistent/cifar10"),
}


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if line.startswith("error: ")]
    assert len(errors) == 1, err  # one error, not a traceback or a cascade
    return errors[0][len("error: "):]


def _ray_untouched() -> bool:
    import sys

    return "ray" not in sys.modules or not sys.modules["ray"].is_initialized()


def _record(command: str, case: str, message: str) -> None:
    print(f"\nBAD-CONFIG | {command} | {case} | {message}")


@pytest.mark.parametrize("case", STUDY_CASES)
def test_study_command_refuses_a_bad_config_before_ray(case, capsys, tmp_path):
    override, field, words = STUDY_CASES[case]
    code = cli_main(["study", "--config", STUDY, *SYNTHETIC, override, f"storage_path={tmp_path}",
                     "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}"])
    message = _error_line(capsys)
    _record("study", case, message)
    assert code == 2 and message.startswith(f"{STUDY}: {field}") and words in message, message
    assert _ray_untouched() and not list(tmp_path.iterdir())  # nothing started, nothing written


@pytest.mark.parametrize("case", TRAIN_CASES)
def test_train_command_refuses_a_bad_config_before_ray(case, capsys, tmp_path):
    override, field, words = TRAIN_CASES[case]
    code = cli_main(["train", "--config", TRAIN, override, "--storage-path", str(tmp_path / "runs"),
                     "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}"])
    message = _error_line(capsys)
    _record("train", case, message)
    assert code == 2 and message.startswith(f"{TRAIN}: {field}") and words in message, message
    assert _ray_untouched() and not list(tmp_path.iterdir())


# ------------------------------------------------------------------------------------------------- the cluster

CPU_ONLY_NODES = [  # what ray.nodes() says of a two-node cluster without GPUs (the fields cluster_capacity reads)
    {"Alive": True, "Resources": {"CPU": 2.0, "memory": 8e9, "node:__internal_head__": 1.0, "node:10.0.0.1": 1.0}},
    {"Alive": True, "Resources": {"CPU": 2.0, "memory": 8e9, "node:10.0.0.2": 1.0}},
]


@pytest.fixture
def cpu_only_cluster(monkeypatch):
    """The study driver connected to a CPU-only cluster: Ray's view of it faked, the Tuner (what would schedule a
    trial) failing the test."""
    import ray
    from ray import tune

    from pipelines.study import driver

    def never(*args, **kwargs):
        raise AssertionError("a trial was about to be scheduled")

    class NoTuner:
        can_restore = staticmethod(lambda path: False)  # a new study
        __init__ = restore = never

    monkeypatch.setattr(driver, "start_ray", lambda num_cpus, dashboard_port: False)
    monkeypatch.setattr(ray, "nodes", lambda: CPU_ONLY_NODES)
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 4.0, "memory": 16e9})
    monkeypatch.setattr(tune, "Tuner", NoTuner)


def test_gpus_asked_of_a_cpu_only_cluster_fail_before_any_trial(cpu_only_cluster, capsys, tmp_path):
    code = cli_main(["study", "--config", STUDY, *SYNTHETIC, "train.scaling.use_gpu=true", f"storage_path={tmp_path}",
                     "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}"])
    message = _error_line(capsys)
    _record("study", "GPU requested on a CPU-only cluster", message)
    assert code == 2 and message.startswith("train.scaling.use_gpu: ") and "has no GPU" in message, message


def test_trial_drivers_are_placed_on_the_head_node(cpu_only_cluster):
    """What makes a lost worker node cost only Train workers (restarted from a checkpoint), never a trial."""
    from pipelines.study.config import ResourcesSection
    from pipelines.study.resources import cluster_capacity, plan_resources
    from pipelines.train.config import ScalingSection

    plan = plan_resources(ScalingSection(data_cpus=0.5), ResourcesSection(), cluster_capacity(), num_trials=4)
    assert 0 < plan.trial_resources["node:__internal_head__"] <= 0.01 and "CPU" not in plan.trial_resources


# ------------------------------------------------------------------------------------------------- services


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # closed again when the socket is: nothing listens there


def test_train_with_the_tracking_server_down_is_one_error_before_ray(capsys, tmp_path):
    uri = f"http://127.0.0.1:{_closed_port()}"
    code = cli_main(["train", "--config", TRAIN, "--storage-path", str(tmp_path / "runs"), "--tracking-uri", uri])
    message = _error_line(capsys)
    _record("train", "MLflow server down at start", message)
    assert code == 2 and message.startswith(f"tracking.uri: {uri}: the MLflow tracking server does not answer")
    assert _ray_untouched()


@pytest.mark.timeout(120)  # without the check, MLflow's client would retry for many minutes
def test_study_with_the_tracking_server_down_is_one_error_before_ray(capsys, tmp_path):
    uri = f"http://127.0.0.1:{_closed_port()}"
    code = cli_main(["study", "--config", STUDY, *SYNTHETIC, f"storage_path={tmp_path}", "--tracking-uri", uri])
    message = _error_line(capsys)
    _record("study", "MLflow server down at start", message)
    assert code == 2 and message.startswith(f"train.tracking.uri: {uri}: the MLflow tracking server does not answer")
    assert _ray_untouched()


@pytest.mark.parametrize("where", ["read-only filesystem", "under a file"])
def test_unwritable_checkpoint_storage_is_one_error_before_ray(where, capsys, tmp_path, request):
    if where == "read-only filesystem":
        storage = request.getfixturevalue("read_only_mount") / "runs"
    else:
        (tmp_path / "a-file").write_text("not a directory")
        storage = tmp_path / "a-file" / "runs"
    code = cli_main(["train", "--config", TRAIN, "--storage-path", str(storage),
                     "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}"])
    message = _error_line(capsys)
    _record("train", f"checkpoint storage unwritable ({where})", message)
    assert code == 2 and message.startswith(f"storage_path: {storage}: cannot write checkpoints there"), message
    assert ("Read-only file system" if where.startswith("read-only") else "Not a directory") in message
    assert _ray_untouched()


def test_study_with_unwritable_storage_is_one_error_before_ray(capsys, tmp_path):
    (tmp_path / "a-file").write_text("")
    storage = tmp_path / "a-file" / "runs"
    code = cli_main(["study", "--config", STUDY, *SYNTHETIC, f"storage_path={storage}",
                     "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}"])
    message = _error_line(capsys)
    _record("study", "study storage unwritable (under a file)", message)
    assert code == 2 and message.startswith(f"storage_path: {storage}: cannot write checkpoints there"), message
    assert _ray_untouched()

"""Shared test set-up: quiet, deterministic and small."""

import os
import subprocess
from pathlib import Path

import pytest
import torch

# Tests never reach the network; Ray and MLflow stay on 127.0.0.1.
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="module")
def ray_cluster():
    """A local Ray of 2 CPUs for one test module's Ray Train runs (no dashboard: nothing listens on default ports)."""
    import ray

    from pipelines.train import ray_logs

    ray.init(num_cpus=2, include_dashboard=False, runtime_env=ray_logs.RUNTIME_ENV)
    try:
        yield
    finally:
        ray.shutdown()


def _tmpfs(directory: Path, options: str):
    """A tmpfs mounted at ``directory`` for one test; skipped where mounting is not allowed (needs CAP_SYS_ADMIN)."""
    directory.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(directory)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a filesystem here")
    try:
        yield directory
    finally:
        subprocess.run(["umount", "-l", str(directory)], check=True)


@pytest.fixture
def read_only_mount(tmp_path):
    """A read-only filesystem, where even root cannot write."""
    yield from _tmpfs(tmp_path / "ro", "size=1m,ro")


@pytest.fixture
def small_storage(tmp_path):
    """A 512 KiB filesystem: room for the start-up check's probe, not for one checkpoint (about 2.5 MB)."""
    yield from _tmpfs(tmp_path / "small", "size=512k")

"""Runs `vit-study study` the way a user does, for the slow study tests (not a test module).

    with study_workspace() as ws:
        result = ws.run("--config", "configs/study-smoke.yaml", timeout_s=1500)

Each workspace has its own short temporary directory (Ray's sockets live under RAY_TMPDIR, and their paths are
limited to 107 characters) holding the local Ray, the Tune storage and the sqlite MLflow store; the command runs in
its own session with a free dashboard port and 2 CPUs. On exit every process the workspace started (the command,
its Ray and Ray's workers, found by cluster_harness.ProcessScope) is stopped by pid, and the test fails if one
survives.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from cluster_harness import PortPicker, ProcessScope

REPO = Path(__file__).resolve().parents[1]
VIT_STUDY = Path(sys.executable).parent / "vit-study"


@dataclass
class StudyResult:
    returncode: int
    output: str
    wall_s: float


@dataclass
class StudyWorkspace:
    directory: Path
    scope: ProcessScope

    @property
    def storage(self) -> Path:
        return self.directory / "runs"

    @property
    def tracking_uri(self) -> str:
        return f"sqlite:///{self.directory / 'mlflow.db'}"

    def command(self, *args: str) -> list[str]:
        return [str(VIT_STUDY), "study", *args, f"storage_path={self.storage}", "--tracking-uri", self.tracking_uri,
                "--num-cpus", "2", "--dashboard-port", str(PortPicker().take())]

    def start(self, *args: str, log_name: str = "study.log") -> subprocess.Popen:
        """Start the command (in the repository, where the configs' relative data paths point)."""
        env = self.scope.environment({"RAY_TMPDIR": str(self.directory / "ray"), "RAY_USAGE_STATS_ENABLED": "0"})
        (self.directory / "ray").mkdir(exist_ok=True)
        return self.scope.spawn(self.command(*args), env=env, log_path=self.directory / log_name, cwd=REPO)

    def run(self, *args: str, timeout_s: float, log_name: str = "study.log") -> StudyResult:
        started = time.monotonic()
        process = self.start(*args, log_name=log_name)
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        return StudyResult(process.returncode, self.log(log_name), time.monotonic() - started)

    def log(self, log_name: str = "study.log") -> str:
        return (self.directory / log_name).read_text(errors="replace")


@contextlib.contextmanager
def study_workspace() -> Iterator[StudyWorkspace]:
    directory = Path(tempfile.mkdtemp(prefix="vst-", dir="/tmp"))
    scope = ProcessScope(directory)
    try:
        yield StudyWorkspace(directory, scope)
    finally:
        survivors = scope.stop()
        shutil.rmtree(directory, ignore_errors=True)
        assert not survivors, f"processes left behind: {survivors}"

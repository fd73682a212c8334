"""The cluster harness's own guarantees, without starting Ray: it finds every process it owns (however it was
started), stops them even when they ignore SIGTERM, never touches anybody else's, and hands out free ports."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
from cluster_harness import PortPicker, ProcessScope, _merged_runtime_env, _port_is_free, _read_process

SLEEP = [sys.executable, "-c", "import time; time.sleep(600)"]


def _wait_for(predicate, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def _alive(pid: int) -> bool:
    info = _read_process(pid)
    return info is not None and info.state != "Z"


def _pid_written_to(path) -> int:
    assert _wait_for(lambda: path.exists() and path.read_text().strip()), f"{path} never written"
    return int(path.read_text())


@pytest.fixture
def outsider():
    """A process of somebody else (another helper's Ray, say): the harness must leave it alone."""
    process = subprocess.Popen(SLEEP, start_new_session=True)
    yield process
    process.kill()
    process.wait()


def test_scope_stops_every_kind_of_owned_process_and_nothing_else(tmp_path, outsider):
    scope = ProcessScope(tmp_path)
    # Started elsewhere but with the harness's directory on its command line (how Ray's daemons name it).
    by_path = subprocess.Popen([*SLEEP, str(tmp_path / "session")], start_new_session=True)
    try:
        _check_scope_finds_and_stops_its_processes(scope, tmp_path, outsider, by_path)
    finally:  # also when an assertion failed (even one about detection: the pid files name the others)
        scope.stop(grace_s=0.5)
        by_path.kill()
        by_path.wait()
        for pid_file in tmp_path.glob("*.pid"):
            with contextlib.suppress(ValueError, ProcessLookupError):
                os.kill(int(pid_file.read_text()), signal.SIGKILL)


def _check_scope_finds_and_stops_its_processes(scope, tmp_path, outsider, by_path) -> None:
    env = scope.environment()
    # 1. started by the harness (its own session);
    direct = scope.spawn(SLEEP, env=env, log_path=tmp_path / "direct.log")
    # 2. a child that moved to a new session, as Ray's job drivers do (found as a descendant);
    setsid_child = tmp_path / "setsid_child.pid"
    scope.spawn([sys.executable, "-c", "import os, subprocess, sys, time; "
                 f"p = subprocess.Popen({SLEEP!r}, start_new_session=True); "
                 f"open({str(setsid_child)!r}, 'w').write(str(p.pid)); time.sleep(600)"],
                env=env, log_path=tmp_path / "parent.log")
    # 3. a daemon that left both the session and the tree (re-parented to init): found by its environment;
    daemon = tmp_path / "daemon.pid"
    launcher = scope.spawn([sys.executable, "-c", "import subprocess, sys; "
                            f"p = subprocess.Popen({SLEEP!r}, start_new_session=True); "
                            f"open({str(daemon)!r}, 'w').write(str(p.pid))"],
                           env=env, log_path=tmp_path / "launcher.log")
    launcher.wait()
    # 4. `by_path`, found by its command line.
    owned = [direct.pid, _pid_written_to(setsid_child), _pid_written_to(daemon), by_path.pid]
    assert set(owned) <= {p.pid for p in scope.processes()}
    assert outsider.pid not in {p.pid for p in scope.processes()}

    assert scope.stop(grace_s=2) == []
    for process in (direct, by_path):
        process.wait(timeout=10)  # reap this process's own children
    assert _wait_for(lambda: not any(_alive(pid) for pid in owned))
    assert outsider.poll() is None, "the harness stopped a process it does not own"


def test_scope_kills_what_ignores_sigterm(tmp_path):
    scope = ProcessScope(tmp_path)
    stubborn = scope.spawn([sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                            "print('ready', flush=True); time.sleep(600)"],
                           env=scope.environment(), log_path=tmp_path / "stubborn.log")
    assert _wait_for(lambda: "ready" in (tmp_path / "stubborn.log").read_text())
    assert scope.stop(grace_s=0.5) == []
    assert stubborn.wait(timeout=10) == -signal.SIGKILL


def test_scope_environment_drops_the_callers_cluster_settings(tmp_path, monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.1:6379")
    monkeypatch.setenv("RAY_AUTH_TOKEN", "not-this-one")
    env = ProcessScope(tmp_path).environment({"RAY_AUTH_MODE": "token"})
    assert "RAY_ADDRESS" not in env and "RAY_AUTH_TOKEN" not in env
    assert env["RAY_AUTH_MODE"] == "token"
    assert env["PATH"].split(os.pathsep)[0] == os.path.dirname(sys.executable)


def test_port_picker_skips_ports_in_use_and_never_repeats():
    # Three free neighbouring ports; occupy the middle one, then ask a picker confined to the three.
    port = next(p for p in range(20_001, 30_000, 7) if all(_port_is_free(q) for q in (p - 1, p, p + 1)))
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", port))
        busy.listen()
        assert not _port_is_free(port)
        picker = PortPicker(low=port - 1, high=port + 3, seed=0)
        picked = {picker.take() for _ in range(2)}
    assert picked == {port - 1, port + 1}


def test_port_picker_ranges_are_free_contiguous_and_below_the_ephemeral_range():
    picker = PortPicker(seed=1)
    first, second = picker.take_range(50), picker.take_range(50)
    for ports in (first, second):
        assert ports == list(range(ports[0], ports[0] + 50)) and ports[-1] < picker.high + 1
    assert not set(first) & set(second)


def test_runtime_env_overrides_are_laid_over_the_file(tmp_path):
    path = tmp_path / "runtime_env.yaml"
    path.write_text("excludes: ['.git']\nenv_vars: {A: '1', B: '2'}\n")
    merged = _merged_runtime_env(path, {"env_vars": {"B": "3"}, "config": {"setup_timeout_seconds": 60}})
    assert merged == {"excludes": [".git"], "env_vars": {"A": "1", "B": "3"}, "config": {"setup_timeout_seconds": 60}}

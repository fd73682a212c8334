"""A real multi-node Ray cluster and a real MLflow server on this machine, for tests that submit work as users do.

    from cluster_harness import ray_cluster_with_mlflow   # or ray_cluster() / mlflow_server() on their own

    with ray_cluster_with_mlflow() as (cluster, tracking):
        job_id = cluster.submit_job(
            ["vit-study", "study", "--config", "configs/study-smoke.yaml", "--tracking-uri", tracking.uri],
            working_dir=REPO, runtime_env_file=REPO / "cluster" / "runtime_env.yaml")
        cluster.wait_for_job(job_id, timeout_s=600)   # raises JobFailedError with the job's and nodes' logs

Faults for reliability tests: ``cluster.stop_node("worker")`` SIGKILLs every process of a node (a lost machine);
``tracking.stop()`` / ``tracking.start()`` kill the MLflow server and start it again on the same port and store.

Each harness gets its own free ports, its own temporary directory and its own authentication token (token
authentication stays on, as on a real cluster), so it neither sees nor disturbs other Ray instances or MLflow
servers on the machine. Teardown never uses `ray stop` (it stops every Ray of the user): it stops exactly the
processes this harness started and their descendants, also when the body raises, and fails if one survives.

Everything is driven from the outside (the `ray` CLI and HTTP): the calling process never imports Ray's runtime,
never sets RAY_* variables and never touches ~/.ray.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

# Python, `ray`, `mlflow` and `vit-study` of the environment running the tests; put first on the cluster's PATH so
# that a job's `python` is this environment's interpreter (a job runs whatever the cluster's PATH finds).
ENV_BIN = Path(sys.executable).parent
# Variables of the calling environment that must not leak into the cluster: they would point it elsewhere.
_FOREIGN_VARIABLES = ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN",
                      "RAY_AUTH_TOKEN_PATH", "MLFLOW_TRACKING_URI")
TERMINAL_JOB_STATES = ("SUCCEEDED", "FAILED", "STOPPED")


class HarnessError(RuntimeError):
    """The harness could not start, reach or stop what it manages."""


class JobFailedError(HarnessError):
    """A submitted job ended in a state other than SUCCEEDED, or did not end in time."""


class LeftoverProcessError(HarnessError):
    """Processes of this harness were still alive after teardown."""


# ------------------------------------------------------------------------------------------------- ports


def _ephemeral_port_floor() -> int:
    """Ports the kernel hands out for outgoing connections start here; ours stay below so it never takes one."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _port_is_free(port: int) -> bool:
    # Ray binds several servers on all interfaces: a port is only usable if the wildcard address is free.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


class PortPicker:
    """Free TCP ports (and contiguous free ranges) below the ephemeral range, never handing out one twice."""

    def __init__(self, low: int = 10_000, high: int | None = None, seed: int | None = None):
        self.low, self.high = low, (high or _ephemeral_port_floor()) - 1
        self._taken: set[int] = set()
        self._random = random.Random(seed)

    def take_range(self, count: int, attempts: int = 500) -> list[int]:
        """``count`` consecutive free ports (a random start spreads concurrent harnesses apart)."""
        for _ in range(attempts):
            start = self._random.randint(self.low, self.high - count)
            ports = list(range(start, start + count))
            if not self._taken.intersection(ports) and all(_port_is_free(p) for p in ports):
                self._taken.update(ports)
                return ports
        raise HarnessError(f"no {count} consecutive free ports found in {self.low}-{self.high}")

    def take(self) -> int:
        return self.take_range(1)[0]


# ------------------------------------------------------------------------------------------------- processes


@dataclass(frozen=True)
class ProcessInfo:
    pid: int
    ppid: int
    session: int
    start_ticks: int
    state: str
    command: str

    def __str__(self) -> str:
        return f"pid {self.pid} (session {self.session}, parent {self.ppid}): {self.command[:160]}"


def _read_process(pid: int) -> ProcessInfo | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses: split after its closing parenthesis.
    fields = stat[stat.rindex(")") + 2:].split()
    return ProcessInfo(pid=pid, ppid=int(fields[1]), session=int(fields[3]), start_ticks=int(fields[19]),
                       state=fields[0], command=command or stat[stat.index("(") + 1:stat.rindex(")")])


def _all_processes() -> dict[int, ProcessInfo]:
    infos = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (info := _read_process(int(entry))) is not None:
            infos[info.pid] = info
    return infos


def _environ_has(pid: int, needle: bytes) -> bool:
    try:
        return needle in Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return False


class ProcessScope:
    """The processes one harness owns: everything it spawned (each in a session of its own), their descendants,
    and anything carrying its marker in the environment or its directory on the command line.

    Sessions alone are not enough (Ray starts job drivers in new sessions), nor is the environment (Ray workers
    rename themselves, which overwrites /proc/<pid>/environ), nor the process tree (daemons are re-parented to
    init): the union of the three finds them all.
    """

    def __init__(self, directory: Path):
        self.directory = str(directory)
        self.marker = f"VIT_HARNESS_SCOPE={uuid.uuid4().hex}"
        self.sessions: set[int] = set()

    def environment(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in _FOREIGN_VARIABLES}
        env["PATH"] = f"{ENV_BIN}{os.pathsep}{env.get('PATH', '')}"
        key, value = self.marker.split("=", 1)
        env[key] = value
        env.update(extra or {})
        return env

    def spawn(self, command: Sequence[str], *, env: Mapping[str, str], log_path: Path, cwd: Path | None = None
              ) -> subprocess.Popen:
        """Start a long-running process in a new session, output to ``log_path``."""
        with open(log_path, "ab") as log:
            process = subprocess.Popen(list(command), env=dict(env), cwd=cwd, stdout=log, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL, start_new_session=True)
        self.sessions.add(process.pid)
        return process

    def run(self, command: Sequence[str], *, env: Mapping[str, str], timeout_s: float, cwd: Path | None = None
            ) -> subprocess.CompletedProcess:
        """Run a command to completion in a new session; on timeout its whole session is killed.

        Output goes to a file, not a pipe: daemons the command leaves running (`ray start`) could hold a pipe open.
        """
        with tempfile.TemporaryFile() as output:
            process = subprocess.Popen(list(command), env=dict(env), cwd=cwd, stdout=output,
                                       stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
            self.sessions.add(process.pid)
            timed_out = False
            try:
                process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                timed_out = True
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()
            output.seek(0)
            text = output.read().decode(errors="replace")
        if timed_out:
            raise HarnessError(f"{' '.join(map(str, command[:4]))} ... timed out after {timeout_s:.0f} s:\n"
                               f"{_tail(text)}")
        return subprocess.CompletedProcess(process.args, process.returncode, text, None)

    def processes(self) -> list[ProcessInfo]:
        """Live (non-zombie) processes of this scope."""
        table = _all_processes()
        me = os.getpid()
        marker = self.marker.encode()
        owned = {pid for pid, info in table.items()
                 if pid != me and (info.session in self.sessions or self.directory in info.command
                                   or _environ_has(pid, marker))}
        children: dict[int, list[int]] = {}
        for info in table.values():
            children.setdefault(info.ppid, []).append(info.pid)
        stack = list(owned)
        while stack:
            for child in children.get(stack.pop(), ()):
                if child not in owned and child != me:
                    owned.add(child)
                    stack.append(child)
        return sorted((table[pid] for pid in owned if table[pid].state != "Z"), key=lambda p: p.pid)

    def stop(self, grace_s: float = 5.0, rounds: int = 3) -> list[ProcessInfo]:
        """SIGTERM, then after ``grace_s`` SIGKILL, every process of the scope; returns survivors (should be [])."""
        for _ in range(rounds):
            targets = self.processes()
            if not targets:
                return []
            for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
                for info in targets:
                    _signal(info, sig)
                deadline = time.monotonic() + wait_s
                while time.monotonic() < deadline and any(_is_alive(info) for info in targets):
                    time.sleep(0.1)
        return self.processes()


def _is_alive(info: ProcessInfo) -> bool:
    current = _read_process(info.pid)
    return current is not None and current.start_ticks == info.start_ticks and current.state != "Z"


def _signal(info: ProcessInfo, sig: int) -> None:
    if _is_alive(info):  # the same process, not a new one that reused the pid
        with contextlib.suppress(ProcessLookupError):
            os.kill(info.pid, sig)


@contextlib.contextmanager
def _owned_directory(prefix: str, base_dir: Path | None, keep: bool) -> Iterator[Path]:
    # Short paths: Ray puts unix sockets under its temp dir, and those are limited to 107 characters.
    directory = Path(tempfile.mkdtemp(prefix=prefix, dir=base_dir or "/tmp"))
    failed = False
    try:
        yield directory
    except BaseException:
        failed = True
        raise
    finally:
        if failed and keep:
            print(f"[cluster_harness] kept {directory} for diagnosis", file=sys.stderr)
        else:
            shutil.rmtree(directory, ignore_errors=True)


def _stop_scope(scope: ProcessScope, what: str) -> None:
    survivors = scope.stop()
    if survivors:
        raise LeftoverProcessError(f"{what}: processes still alive after teardown:\n"
                                   + "\n".join(f"  {p}" for p in survivors))


def _tail(text: str, lines: int = 60) -> str:
    return "\n".join(text.splitlines()[-lines:])


# ------------------------------------------------------------------------------------------------- Ray


@dataclass(frozen=True)
class NodeSpec:
    """One Ray node: its logical CPUs and custom resources; it also gets ``harness_node_<name>: 1`` so that work
    can be pinned to it and placement checked."""

    name: str
    num_cpus: float = 1
    resources: Mapping[str, float] = field(default_factory=dict)
    object_store_mb: int = 100

    @property
    def marker_resource(self) -> str:
        return f"harness_node_{self.name}"


DEFAULT_NODES = (NodeSpec("head"), NodeSpec("worker"))


@dataclass(frozen=True)
class HttpResponse:
    status: int
    body: str

    def json(self):
        return json.loads(self.body)


@dataclass
class RayCluster:
    """A running cluster: where to reach it, its nodes, and job submission through the `ray job` CLI."""

    dashboard_url: str
    gcs_address: str
    nodes: dict[str, NodeSpec]
    node_ids: dict[str, str]  # node name -> Ray node id
    env: dict[str, str]  # environment that authenticates the `ray` CLI against this cluster
    scope: ProcessScope
    directory: Path
    token_path: Path
    ports: dict[str, int]

    def node_resource(self, name: str) -> str:
        """The custom resource that pins a task to node ``name``."""
        return self.nodes[name].marker_resource

    def api(self, path: str, *, method: str = "GET", payload: dict | None = None, authenticate: bool = True,
            timeout_s: float = 30) -> HttpResponse:
        """A request to the dashboard's HTTP API (``authenticate=False`` sends no token)."""
        headers = {"Content-Type": "application/json"}
        if authenticate:
            headers["Authorization"] = f"Bearer {self.token_path.read_text().strip()}"
        data = json.dumps(payload).encode() if payload is not None else None
        request = urllib.request.Request(self.dashboard_url + path, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as response:
                return HttpResponse(response.status, response.read().decode())
        except urllib.error.HTTPError as error:
            return HttpResponse(error.code, error.read().decode(errors="replace"))

    def ray_cli(self, *args: str, timeout_s: float = 120) -> subprocess.CompletedProcess:
        """Run ``ray <args>`` against this cluster (authenticated, this environment's Ray)."""
        return self.scope.run([str(ENV_BIN / "ray"), *args], env=self.env, timeout_s=timeout_s)

    def submit_job(self, entrypoint: Sequence[str], *, working_dir: Path | str | None = None,
                   runtime_env_file: Path | str | None = None, runtime_env: Mapping | None = None,
                   submission_id: str | None = None, timeout_s: float = 180) -> str:
        """``ray job submit --no-wait`` (the CLI users run); returns the submission id.

        ``runtime_env_file`` alone is passed as ``--runtime-env``, ``runtime_env`` alone as ``--runtime-env-json``;
        given both, ``runtime_env`` is laid over the file (its ``env_vars`` merged) and passed as JSON.
        """
        job_id = submission_id or f"harness-{uuid.uuid4().hex[:12]}"
        args = ["job", "submit", "--address", self.dashboard_url, "--submission-id", job_id, "--no-wait"]
        if working_dir is not None:
            args += ["--working-dir", str(working_dir)]
        if runtime_env_file is not None and runtime_env is None:
            args += ["--runtime-env", str(runtime_env_file)]
        elif runtime_env is not None:
            args += ["--runtime-env-json", json.dumps(_merged_runtime_env(runtime_env_file, runtime_env))]
        result = self.ray_cli(*args, "--", *entrypoint, timeout_s=timeout_s)
        if result.returncode != 0:
            raise JobFailedError(f"`ray job submit` exited with {result.returncode}:\n{_tail(result.stdout)}")
        return job_id

    def job_info(self, job_id: str) -> dict:
        response = self.api(f"/api/jobs/{job_id}")
        if response.status != 200:
            raise HarnessError(f"job {job_id}: HTTP {response.status}: {response.body[:500]}")
        return response.json()

    def job_logs(self, job_id: str) -> str:
        response = self.api(f"/api/jobs/{job_id}/logs")
        return response.json().get("logs", "") if response.status == 200 else f"(no logs: HTTP {response.status})"

    def wait_for_job(self, job_id: str, *, timeout_s: float = 600, poll_s: float = 2.0) -> str:
        """Wait until the job succeeds and return its logs; otherwise (or on timeout, after stopping it) raise
        JobFailedError with the job's logs and the tails of the nodes' logs."""
        deadline = time.monotonic() + timeout_s
        info = self.job_info(job_id)
        while info.get("status") not in TERMINAL_JOB_STATES:
            if time.monotonic() > deadline:
                self.api(f"/api/jobs/{job_id}/stop", method="POST")
                raise JobFailedError(f"job {job_id} still {info.get('status')} after {timeout_s:.0f} s\n"
                                     + self.failure_report(job_id))
            time.sleep(poll_s)
            info = self.job_info(job_id)
        if info["status"] != "SUCCEEDED":
            raise JobFailedError(f"job {job_id} ended {info['status']}: {info.get('message')}\n"
                                 + self.failure_report(job_id))
        return self.job_logs(job_id)

    def failure_report(self, job_id: str | None = None, lines: int = 40) -> str:
        """The job's logs and the tails of every node's error logs, for a failure message."""
        parts = [f"--- job {job_id} logs ---\n{_tail(self.job_logs(job_id), 200)}"] if job_id else []
        for name in self.nodes:
            logs = self.directory / name / "session_latest" / "logs"
            for path in sorted(logs.glob("*.err")) + [logs / "raylet.out", logs / "gcs_server.out"]:
                with contextlib.suppress(OSError):
                    if text := path.read_text(errors="replace").strip():
                        parts.append(f"--- {name}: {path.name} ---\n{_tail(text, lines)}")
        return "\n".join(parts)

    def stop_node(self, name: str) -> list[ProcessInfo]:
        """SIGKILL every process of node ``name`` at once (its raylet, agents and workers), as a machine that loses
        power or is preempted; returns what was killed. The head cannot be stopped this way."""
        if name == next(iter(self.nodes)):
            raise ValueError("stopping the head node stops the cluster; stop a worker node")
        marker = str(self.directory / name) + os.sep
        table = _all_processes()
        victims = {pid for pid, info in table.items() if marker in info.command}
        stack = list(victims)
        while stack:
            parent = stack.pop()
            for info in table.values():
                if info.ppid == parent and info.pid not in victims:
                    victims.add(info.pid)
                    stack.append(info.pid)
        killed = [table[pid] for pid in sorted(victims) if table[pid].state != "Z"]
        for info in killed:
            _signal(info, signal.SIGKILL)
        return killed

    def alive_nodes(self) -> list[dict]:
        response = self.api("/api/v0/nodes?detail=1&limit=1000")
        if response.status != 200:
            return []
        return [n for n in response.json()["data"]["result"]["result"] if n["state"] == "ALIVE"]


def _merged_runtime_env(path: Path | str | None, overrides: Mapping) -> dict:
    import yaml  # only needed here; the harness otherwise runs on the standard library

    merged = dict(yaml.safe_load(Path(path).read_text()) or {}) if path is not None else {}
    env_vars = {**merged.get("env_vars", {}), **overrides.get("env_vars", {})}
    merged.update(overrides)
    if env_vars:
        merged["env_vars"] = env_vars
    return merged


def _node_arguments(node: NodeSpec, directory: Path, picker: PortPicker, worker_ports: int) -> tuple[list[str], dict]:
    ports = dict(zip(("node_manager", "object_manager", "agent_http", "agent_grpc", "runtime_env_agent", "metrics"),
                     picker.take_range(6)))
    workers = picker.take_range(worker_ports)
    resources = {**node.resources, node.marker_resource: 1}
    args = [f"--node-manager-port={ports['node_manager']}", f"--object-manager-port={ports['object_manager']}",
            f"--min-worker-port={workers[0]}", f"--max-worker-port={workers[-1]}",
            f"--dashboard-agent-listen-port={ports['agent_http']}",
            f"--dashboard-agent-grpc-port={ports['agent_grpc']}",
            f"--runtime-env-agent-port={ports['runtime_env_agent']}", f"--metrics-export-port={ports['metrics']}",
            f"--temp-dir={directory / node.name}", f"--num-cpus={node.num_cpus}", "--num-gpus=0",
            f"--resources={json.dumps(resources)}", f"--object-store-memory={node.object_store_mb * 10**6}",
            "--disable-usage-stats"]
    return args, {f"{node.name}.{k}": v for k, v in ports.items()}


@contextlib.contextmanager
def ray_cluster(nodes: Sequence[NodeSpec] = DEFAULT_NODES, *, startup_timeout_s: float = 180,
                worker_ports_per_node: int = 200, base_dir: Path | None = None, keep_files_on_error: bool = True
                ) -> Iterator[RayCluster]:
    """Start a Ray cluster of ``nodes`` (the first is the head) with `ray start`, token authentication on.

    The head serves the dashboard (Jobs API) on 127.0.0.1; the other nodes join with `ray start --address`, each
    with its own ports and --temp-dir. Ray advertises the machine's routable address for its nodes whatever
    --node-ip-address says, so nodes are reached through 127.0.0.1 and addressed by port only.
    """
    if len({n.name for n in nodes}) != len(nodes) or not nodes:
        raise ValueError(f"nodes need distinct names and at least a head: {[n.name for n in nodes]}")
    with _owned_directory("rayh-", base_dir, keep_files_on_error) as directory:
        scope = ProcessScope(directory)
        try:
            yield _start_ray(list(nodes), directory, scope, startup_timeout_s, worker_ports_per_node)
        finally:
            _stop_scope(scope, "ray cluster")


def _start_ray(nodes: list[NodeSpec], directory: Path, scope: ProcessScope, timeout_s: float,
               worker_ports: int) -> RayCluster:
    token_path = directory / "auth_token"
    token_path.write_text(secrets.token_hex(32))
    token_path.chmod(0o600)
    env = scope.environment({"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token_path),
                             "RAY_USAGE_STATS_ENABLED": "0"})
    picker = PortPicker()
    head_ports = dict(zip(("gcs", "dashboard", "client"), picker.take_range(3)))
    gcs_address = f"127.0.0.1:{head_ports['gcs']}"
    ports = {f"head.{k}": v for k, v in head_ports.items()}
    for index, node in enumerate(nodes):
        node_args, node_ports = _node_arguments(node, directory, picker, worker_ports)
        ports.update(node_ports)
        if index == 0:
            role = ["--head", f"--port={head_ports['gcs']}", "--include-dashboard=true", "--dashboard-host=127.0.0.1",
                    f"--dashboard-port={head_ports['dashboard']}", f"--ray-client-server-port={head_ports['client']}"]
        else:
            role = [f"--address={gcs_address}"]
        result = scope.run([str(ENV_BIN / "ray"), "start", *role, *node_args], env=env, timeout_s=timeout_s,
                           cwd=directory)
        (directory / f"{node.name}-start.log").write_text(result.stdout)
        if result.returncode != 0:
            raise HarnessError(f"`ray start` for node {node.name!r} exited with {result.returncode}:\n"
                               f"{_tail(result.stdout)}")
    cluster = RayCluster(dashboard_url=f"http://127.0.0.1:{head_ports['dashboard']}", gcs_address=gcs_address,
                         nodes={n.name: n for n in nodes}, node_ids={}, env=env, scope=scope, directory=directory,
                         token_path=token_path, ports=ports)
    cluster.node_ids.update(_wait_for_nodes(cluster, timeout_s))
    return cluster


def _wait_for_nodes(cluster: RayCluster, timeout_s: float) -> dict[str, str]:
    """Node ids by name, once every node is ALIVE (found by its marker resource)."""
    deadline = time.monotonic() + timeout_s
    found: dict[str, str] = {}
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            for node in cluster.alive_nodes():
                for name, spec in cluster.nodes.items():
                    if spec.marker_resource in node.get("resources_total", {}):
                        found[name] = node["node_id"]
            if len(found) == len(cluster.nodes):
                return found
        time.sleep(1.0)
    raise HarnessError(f"nodes alive after {timeout_s:.0f} s: {sorted(found)} of {sorted(cluster.nodes)}\n"
                       + cluster.failure_report())


# ------------------------------------------------------------------------------------------------- MLflow


@dataclass
class MlflowServer:
    """A running `mlflow server`: SQLite backend, artifacts proxied by the server into a local directory."""

    uri: str
    backend_store_uri: str
    artifacts_dir: Path
    log_path: Path
    scope: ProcessScope
    port: int
    process: subprocess.Popen | None = None

    def stop(self) -> None:
        """SIGKILL the server (and its web workers): clients see connections refused until :meth:`start`."""
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        deadline = time.monotonic() + 30
        while not _port_is_free(self.port) and time.monotonic() < deadline:  # its workers may linger a moment
            time.sleep(0.2)

    def start(self, timeout_s: float = 120) -> None:
        """Start the server again on the same port and store (after :meth:`stop`); returns once it is healthy."""
        self.process = self.scope.spawn(_mlflow_command(self), env=self.scope.environment(), log_path=self.log_path,
                                        cwd=self.artifacts_dir.parent)
        _wait_for_mlflow(self, self.process, timeout_s)


@contextlib.contextmanager
def mlflow_server(*, startup_timeout_s: float = 120, base_dir: Path | None = None, keep_files_on_error: bool = True
                  ) -> Iterator[MlflowServer]:
    """Start `mlflow server` on a free 127.0.0.1 port (clients upload artifacts through it, as on a cluster)."""
    with _owned_directory("mlflowh-", base_dir, keep_files_on_error) as directory:
        scope = ProcessScope(directory)
        try:
            yield _wait_for_mlflow(*_spawn_mlflow(directory, scope), startup_timeout_s)
        finally:
            _stop_scope(scope, "mlflow server")


@contextlib.contextmanager
def ray_cluster_with_mlflow(nodes: Sequence[NodeSpec] = DEFAULT_NODES, *, startup_timeout_s: float = 180,
                            base_dir: Path | None = None, keep_files_on_error: bool = True, **ray_options
                            ) -> Iterator[tuple[RayCluster, MlflowServer]]:
    """:func:`ray_cluster` and :func:`mlflow_server` together, MLflow starting while Ray does (it takes as long)."""
    with _owned_directory("mlflowh-", base_dir, keep_files_on_error) as directory:
        scope = ProcessScope(directory)
        try:
            pending = _spawn_mlflow(directory, scope)
            with ray_cluster(nodes, startup_timeout_s=startup_timeout_s, base_dir=base_dir,
                             keep_files_on_error=keep_files_on_error, **ray_options) as cluster:
                yield cluster, _wait_for_mlflow(*pending, startup_timeout_s)
        finally:
            _stop_scope(scope, "mlflow server")


def _spawn_mlflow(directory: Path, scope: ProcessScope) -> tuple[MlflowServer, subprocess.Popen]:
    port = PortPicker().take()
    server = MlflowServer(uri=f"http://127.0.0.1:{port}", backend_store_uri=f"sqlite:///{directory / 'mlflow.db'}",
                          artifacts_dir=directory / "artifacts", log_path=directory / "server.log", scope=scope,
                          port=port)
    process = scope.spawn(_mlflow_command(server), env=scope.environment(), log_path=server.log_path, cwd=directory)
    server.process = process
    return server, process


def _mlflow_command(server: MlflowServer) -> list[str]:
    return [str(ENV_BIN / "mlflow"), "server", "--backend-store-uri", server.backend_store_uri, "--serve-artifacts",
            "--artifacts-destination", str(server.artifacts_dir), "--host", "127.0.0.1", "--port", str(server.port),
            "--workers", "1"]


def _wait_for_mlflow(server: MlflowServer, process: subprocess.Popen, timeout_s: float) -> MlflowServer:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise HarnessError(f"mlflow server exited with {process.returncode}:\n"
                               f"{_tail(server.log_path.read_text(errors='replace'))}")
        with contextlib.suppress(OSError):
            with urllib.request.urlopen(f"{server.uri}/health", timeout=5) as response:
                if response.status == 200:
                    return server
        time.sleep(0.5)
    raise HarnessError(f"mlflow server not healthy after {timeout_s:.0f} s:\n"
                       f"{_tail(server.log_path.read_text(errors='replace'))}")

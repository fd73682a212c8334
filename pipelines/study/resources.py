"""How many trials run at once and how many CPUs each Train worker gets, computed from the cluster.

What hangs without a word on a small machine (../shared/NOTES-ray-mlflow.md): a trial driver holding a CPU while
its workers wait for one, or workers holding every CPU so Ray Data's tasks (one whole CPU each) never run. So:

- a trial's driver (the Tune function that starts the ``TorchTrainer``) reserves memory, not CPU: it waits for
  its workers and never competes with them or with Ray Data for a CPU;
- each running trial leaves ``train.scaling.data_cpus`` CPUs free for Ray Data; together at least one whole CPU;
- the rest is shared by the workers of ``max_concurrent_trials`` trials: with ``train.scaling.cpus_per_worker``
  unset, as many trials as give each worker one CPU (at least one trial, with a fraction of a CPU per worker on
  a machine too small for one each), and on GPUs one trial per ``num_workers`` GPUs. A share of one CPU or more
  is rounded down to whole CPUs, so that the CPUs left free are whole CPUs on some node (Ray places each worker
  on one node; half a CPU free on each of two nodes would run no Ray Data task);
- a trial's driver (and with it the Train controller, which Ray Train places beside it) runs on the head node,
  which a cluster never loses without losing everything: a lost worker node takes only Train workers, which
  Train restarts elsewhere from the latest checkpoint (``train.max_failures``), never a whole trial;
- a trial that no node (or the whole cluster) could ever hold is a :class:`ConfigError` before anything runs.

:func:`plan_resources` is pure; :func:`cluster_capacity` reads a running Ray cluster (on an autoscaling cluster,
the largest size its config allows).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from pipelines.train.config import ConfigError, ScalingSection

from .config import ResourcesSection

CPU_GRANULARITY = 100  # CPUs are planned in hundredths (Ray's own granularity is 1e-4)
MIN_CPUS_PER_WORKER = 0.1  # less is a plan that could only crawl: an error, not a silent crawl
MIB = 2**20
HEAD_NODE_RESOURCE = "node:__internal_head__"  # Ray gives the head node 1 of it
HEAD_SHARE_PER_DRIVER = 0.001  # a sliver of it per trial driver: up to 1000 drivers at once


@dataclass(frozen=True)
class ClusterCapacity:
    """Resources of a cluster: the total and the shapes of its nodes (``{"CPU": 8, "GPU": 1, "memory": ...}``)."""

    total: dict[str, float]
    nodes: list[dict[str, float]] = field(default_factory=list)
    autoscaling: bool = False  # totals are the most the cluster config allows, not what is up now

    def describe(self) -> str:
        what = "up to" if self.autoscaling else "has"
        return (f"the cluster {what} {self.total.get('CPU', 0):g} CPUs and {self.total.get('GPU', 0):g} GPUs in "
                f"{'node types' if self.autoscaling else 'nodes'} of {_shapes_text(self.nodes)}")


@dataclass(frozen=True)
class ResourcePlan:
    max_concurrent_trials: int
    cpus_per_worker: float
    trial_resources: dict[str, float]  # for tune.with_resources: what a trial's driver reserves
    data_cpus: float  # CPUs left free for Ray Data while max_concurrent_trials trials run

    def describe(self, num_workers: int, use_gpu: bool) -> str:
        gpus = " + 1 GPU" if use_gpu else ""
        return (f"{self.max_concurrent_trials} trial(s) at a time, each {num_workers} worker(s) x "
                f"({self.cpus_per_worker:g} CPU{gpus}); {self.data_cpus:g} CPU(s) left for Ray Data")


def _floor(value: float) -> float:
    return math.floor(value * CPU_GRANULARITY + 1e-9) / CPU_GRANULARITY


def _shapes_text(nodes: list[dict]) -> str:
    shapes = sorted({(n.get("CPU", 0), n.get("GPU", 0)) for n in nodes}, reverse=True)
    return ", ".join(f"{c:g} CPU/{g:g} GPU" for c, g in shapes) or "nothing"


def plan_resources(scaling: ScalingSection, resources: ResourcesSection, capacity: ClusterCapacity, *,
                   num_trials: int, uses_ray_data: bool = True) -> ResourcePlan:
    """Concurrency and per-worker CPUs for trials of ``scaling.num_workers`` workers on ``capacity``.

    Raises :class:`ConfigError` (naming the field to change) when a trial could never be scheduled.
    """
    workers, data_cpus, use_gpu = scaling.num_workers, scaling.data_cpus, scaling.use_gpu
    cpus, gpus = float(capacity.total.get("CPU", 0)), float(capacity.total.get("GPU", 0))
    if use_gpu and gpus < workers:
        what = "has no GPU" if gpus == 0 else f"has {gpus:g} GPU(s)"
        raise ConfigError(f"train.scaling.use_gpu: a trial of {workers} GPU worker(s) needs {workers} GPU(s), but "
                          f"{capacity.describe()} ({what}); set train.scaling.use_gpu=false or "
                          "train.scaling.num_workers lower, or add GPU nodes")
    gpu_limit = math.floor(gpus / workers) if use_gpu else num_trials
    wanted = resources.max_concurrent_trials
    if scaling.cpus_per_worker is not None:
        share = scaling.cpus_per_worker
        fit = math.floor((cpus + 1e-9) / (workers * share + data_cpus))
        concurrency = min(fit, gpu_limit, num_trials, wanted or num_trials)
    else:
        one_each = math.floor((cpus + 1e-9) / (workers + data_cpus))
        concurrency = max(1, min(wanted or one_each, gpu_limit, num_trials))
        share = _floor((cpus - concurrency * data_cpus) / (concurrency * workers))
        share = min(share, _largest_worker_share(capacity, use_gpu))
        if share >= 1:  # whole CPUs: nodes keep whole CPUs free, and a Ray Data task needs one on a single node
            share = float(math.floor(share))
    if concurrency < 1 or share < MIN_CPUS_PER_WORKER or concurrency * (workers * share + data_cpus) > cpus + 1e-9:
        raise ConfigError(
            f"train.scaling: a trial of {workers} worker(s) x {share:g} CPU + {data_cpus:g} CPU for Ray Data can "
            f"never be scheduled{' ' + str(wanted) + ' at a time' if wanted else ''}: {capacity.describe()}; lower "
            "train.scaling.num_workers, train.scaling.cpus_per_worker, train.scaling.data_cpus or "
            "resources.max_concurrent_trials, or add nodes")
    if uses_ray_data and concurrency * data_cpus < 1:
        raise ConfigError(f"train.scaling.data_cpus: {concurrency} trial(s) x {data_cpus:g} CPU leaves less than one "
                          "whole CPU free, and each Ray Data task needs one; raise train.scaling.data_cpus")
    _check_a_node_fits(share, use_gpu, capacity)
    driver = {"memory": float(resources.driver_memory_mb * MIB), HEAD_NODE_RESOURCE: HEAD_SHARE_PER_DRIVER}
    heads = [n for n in capacity.nodes if n.get(HEAD_NODE_RESOURCE)] or capacity.nodes  # drivers run on the head
    memories = [n["memory"] for n in heads if n.get("memory")]
    if memories and max(memories) < driver["memory"]:
        raise ConfigError(f"resources.driver_memory_mb: {resources.driver_memory_mb} MiB is more than the head node "
                          f"has ({max(memories) / MIB:.0f} MiB), where trial drivers run")
    free = cpus - concurrency * workers * share
    return ResourcePlan(concurrency, share, driver, _floor(min(free, cpus)))


def _largest_worker_share(capacity: ClusterCapacity, use_gpu: bool) -> float:
    """The most CPUs one worker can ask for and still fit a node (on GPU nodes: that node's CPUs per GPU)."""
    shares = [n.get("CPU", 0) / (n["GPU"] if use_gpu else 1) for n in capacity.nodes
              if not use_gpu or n.get("GPU", 0) >= 1]
    return _floor(max(shares)) if shares else math.inf


def _check_a_node_fits(share: float, use_gpu: bool, capacity: ClusterCapacity) -> None:
    if not capacity.nodes:
        return
    need = {"CPU": share, **({"GPU": 1.0} if use_gpu else {})}
    if not any(all(node.get(k, 0) + 1e-9 >= v for k, v in need.items()) for node in capacity.nodes):
        raise ConfigError(f"train.scaling.cpus_per_worker: one worker needs {need}, more than any node offers "
                          f"({_shapes_text(capacity.nodes)}); lower train.scaling.cpus_per_worker")


def cluster_capacity() -> ClusterCapacity:
    """The running cluster's resources; on an autoscaling cluster the maximum its config allows."""
    import ray

    nodes = [_resources(n["Resources"]) for n in ray.nodes() if n.get("Alive")]
    total = _resources(ray.cluster_resources())
    config_max, config_nodes = _autoscaling_limits()
    if not config_max:
        return ClusterCapacity(total, nodes)
    total = {**total, **{k: max(total.get(k, 0.0), float(v)) for k, v in config_max.items()}}
    return ClusterCapacity(total, nodes + config_nodes, autoscaling=True)


def _resources(resources: dict) -> dict[str, float]:
    return {k: float(v) for k, v in resources.items() if k in ("CPU", "GPU", "memory", HEAD_NODE_RESOURCE)}


def _autoscaling_limits() -> tuple[dict | None, list[dict]]:
    """(max total resources, node-type shapes) from the autoscaler's cluster config, or (None, [])."""
    try:
        from ray._private import state

        config = state.state.get_cluster_config()
        limits = state.state.get_max_resources_from_cluster_config()
    except Exception:  # noqa: BLE001 - a private API; without it the live resources are the capacity
        return None, []
    if not limits or config is None:
        return None, []
    shapes = [_resources(dict(group.resources)) for group in config.node_group_configs if group.max_count != 0]
    return limits, shapes


__all__ = ["ClusterCapacity", "ResourcePlan", "cluster_capacity", "plan_resources"]

"""Per-worker resources computed from the cluster, leaving CPUs for Ray Data, and a clear error for a run that
could never be scheduled (Ray would otherwise wait forever without a word)."""

from __future__ import annotations

import math

from .config import ConfigError, ScalingSection


def cpus_per_worker(scaling: ScalingSection, cluster: dict[str, float], reads_data: bool = False) -> float:
    """CPUs each Train worker asks for: ``scaling.cpus_per_worker`` or an equal share of what the data leaves.

    ``cluster`` is ``ray.cluster_resources()`` (or the share of it a Tune trial may use). ``reads_data``: the run
    has Ray Data read tasks, which take a whole CPU each, so the workers must leave at least one free.
    """
    total_cpus = float(cluster.get("CPU", 0.0))
    workers = scaling.num_workers
    if scaling.use_gpu and float(cluster.get("GPU", 0.0)) < workers:
        raise ConfigError(f"scaling.use_gpu: {workers} GPU worker(s) need {workers} GPU(s); the cluster has "
                          f"{cluster.get('GPU', 0):g}")
    if scaling.cpus_per_worker is not None:
        share = scaling.cpus_per_worker
    else:
        share = math.floor((total_cpus - scaling.data_cpus) / workers * 100) / 100  # Ray's granularity is 1e-4
    needed = share * workers + scaling.data_cpus
    if share <= 0 or needed > total_cpus + 1e-9:
        raise ConfigError(
            f"scaling: {workers} worker(s) x {max(share, 0):g} CPU + {scaling.data_cpus:g} CPU kept for Ray Data "
            f"needs {needed:g} CPUs, but the cluster has {total_cpus:g}; lower scaling.num_workers, "
            "scaling.cpus_per_worker or scaling.data_cpus, or add nodes")
    left = total_cpus - share * workers
    if reads_data and left < 1 - 1e-9:
        raise ConfigError(
            f"scaling.data_cpus: {workers} worker(s) x {share:g} CPU leave {left:g} of the cluster's "
            f"{total_cpus:g} CPUs to Ray Data, whose read tasks need 1 whole CPU each (the run would wait forever); "
            "set scaling.data_cpus to at least 1 or lower scaling.cpus_per_worker")
    return share


def torch_threads(cpus: float) -> int:
    """Intra-op threads for a worker holding ``cpus`` CPUs (at least one)."""
    return max(1, int(cpus))

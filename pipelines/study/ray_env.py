"""Set-up of the study's Ray worker processes: Ray Train's quiet logs plus the cluster's own address.

Ray Train's placement-group cleaner asks Ray's State API about the controller; with no address given, the State API
looks for "the" Ray instance on the machine and fails ("Found multiple active Ray instances") where several run, as
on a shared workstation or CI machine. Every worker of the study's Ray knows its cluster, so it says so.

    ray.init(runtime_env=RUNTIME_ENV)
"""

from __future__ import annotations

import os

from pipelines.train import ray_logs

HOOK = "pipelines.study.ray_env.setup_worker"
RUNTIME_ENV = {"worker_process_setup_hook": HOOK}


def setup_worker() -> None:
    """``worker_process_setup_hook``: quiet Ray Train's logs; point the State API at this worker's cluster."""
    import ray

    ray_logs.quiet()
    if not os.environ.get("RAY_ADDRESS"):
        os.environ["RAY_ADDRESS"] = ray.get_runtime_context().gcs_address

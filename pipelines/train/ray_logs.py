"""Clean logs: Ray Train 2.60 prints every report in full from every worker, without the dashboard its
placement-group cleaner warns about the State API dozens of times a run, and Ray Data announces every execution
of every split at each evaluation. This hook keeps their warnings and drops the chatter.

Pass :data:`RUNTIME_ENV` to ``ray.init(runtime_env=...)`` (the cleaner is a job-level actor) - ``run_training``
does when it starts Ray itself - and it is also set on the Train workers.
"""

from __future__ import annotations

import logging
import os

HOOK = "pipelines.train.ray_logs.quiet"
RUNTIME_ENV = {"worker_process_setup_hook": HOOK}


def _pin_cluster_address() -> None:
    """Point address lookups in this worker (Ray's State API client) at its own cluster: with several Ray
    instances on one machine, the placement-group cleaner otherwise dies with "Found multiple active Ray
    instances"."""
    import ray

    try:
        os.environ.setdefault("RAY_ADDRESS", ray.get_runtime_context().gcs_address)
    except Exception:  # not connected yet in this Ray version: leave the default lookup
        pass


def quiet() -> None:
    """``worker_process_setup_hook``: raise the level of Ray Train's chattiest internal loggers."""
    try:
        from ray.train.v2._internal.execution import context
        from ray.train.v2._internal.execution.controller import placement_group_cleaner
    except ImportError:  # another Ray version: nothing to quiet
        return
    _pin_cluster_address()
    logging.getLogger(context.__file__).setLevel(logging.WARNING)  # that module names its logger by file path
    logging.getLogger(placement_group_cleaner.__name__).setLevel(logging.ERROR)
    logging.getLogger("ray.data").setLevel(logging.WARNING)

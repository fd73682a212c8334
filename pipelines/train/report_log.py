"""A Ray Train callback that keeps every report of every rank, and every worker failure, as JSON lines.

    run_training(cfg, callbacks=[ReportLog("reports.jsonl")])

It runs in the Train controller, so the file is written on the head node. Tests use it to compare ranks and to see
restarts; users can use it to inspect a run without MLflow.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import ray.train


class ReportLog(ray.train.UserCallback):
    def __init__(self, path):
        self.path = str(Path(path).resolve())

    def _write(self, record: dict) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps({"time": time.time(), **record}, default=str) + "\n")

    def after_report(self, run_context, metrics, checkpoint):
        """``metrics[i]`` is what rank ``i`` reported."""
        self._write({"ranks": metrics, "checkpoint": checkpoint.path if checkpoint else None})

    def after_exception(self, run_context, worker_exceptions):
        self._write({"failed_ranks": sorted(worker_exceptions), "errors": [str(e)[:500]
                                                                           for e in worker_exceptions.values()]})


def read_report_log(path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]

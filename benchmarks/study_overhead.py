"""Share of a study's wall time that its trials spend stepping, versus Ray/Tune start-up, scheduling, evaluation,
checkpoints, MLflow logging and the report, for ``configs/study-smoke.yaml`` with 4, 8 and 16 trials.

Each case runs the real command (``vit-study study --config configs/study-smoke.yaml`` with grid overrides, its own
local Ray with ``--num-cpus``, a fresh MLflow database and Tune directory) and reads back from MLflow what every
training step logged: ``train/step_time_s`` (the optimiser step, from the first batch request to the update) and
``train/data_wait_frac`` (the part of it spent waiting for a batch), each stamped when it was logged. From these:

* stepping = sum over trials of step time minus data wait (compute only), divided by ``slots x wall``, where
  ``slots`` = trials that run at once (``resources.max_concurrent_trials``): the share of the CPU slots that went
  into training steps. Goal: >= 70 % at 8 trials on 2 cores.
* busy = the fraction of wall time during which at least one trial was inside a step (union of step intervals).
* phases: command start -> first trial run opened (Ray, data preparation, MLflow parent run); per trial, run opened
  -> first step started (Ray Train worker group, model build, data pipeline start), last step -> run closed
  (final evaluation, few-shot probe, checkpoint, export, shut-down); last trial closed -> command end (report,
  frontier inspection, Ray shut-down).

    .venv/bin/python benchmarks/study_overhead.py                  # 4, 8 and 16 trials
    .venv/bin/python benchmarks/study_overhead.py --trials 8
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

from mlflow.tracking import MlflowClient

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "study-smoke.yaml"
SLOTS = 2  # study-smoke's resources.max_concurrent_trials
GRIDS = {  # trials -> grid overrides of study-smoke (models x data fractions x budgets)
    4: ["grid.models=[vit-pi/8]"],
    8: [],
    16: ["grid.data_fractions=[0.02, 0.04, 0.06, 0.08]"],
}
STEP_TIME, DATA_WAIT = "train/step_time_s", "train/data_wait_frac"
PARENT_TAG, ROLE_TAG = "mlflow.parentRunId", "vit_study.role"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_study(trials: int, work: Path, num_cpus: int) -> tuple[float, float, str, int]:
    """Run the study; returns (start, end) as epoch seconds, the tracking URI and the exit status (1: some trials
    failed - the finished ones are still measured)."""
    uri = f"sqlite:///{work / 'mlflow.db'}"
    command = [sys.executable, "-m", "pipelines.cli", "study", "--config", str(CONFIG), "--tracking-uri", uri,
               "--num-cpus", str(num_cpus), "--dashboard-port", str(_free_port()),
               f"name=overhead-{trials}", f"storage_path={work / 'runs'}", *GRIDS[trials]]
    start = time.time()
    with open(work / "study.log", "w") as log:
        rc = subprocess.run(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT).returncode
    end = time.time()
    if rc not in (0, 1):
        raise RuntimeError(f"the study exited with {rc}; see {work / 'study.log'}")
    return start, end, uri, rc


def trial_timings(uri: str, experiment: str) -> list[dict]:
    """Per trial child run: opened/closed (epoch s) and its steps' (end time, step time, data wait)."""
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    out = []
    for run in client.search_runs([exp.experiment_id], max_results=1000):
        if run.data.tags.get(ROLE_TAG) == "parent" or PARENT_TAG not in run.data.tags:
            continue
        times = {m.step: m for m in client.get_metric_history(run.info.run_id, STEP_TIME)}
        waits = {m.step: m.value for m in client.get_metric_history(run.info.run_id, DATA_WAIT)}
        steps = [(times[s].timestamp / 1000, times[s].value, times[s].value * waits.get(s, 0.0))
                 for s in sorted(times)]
        closed = run.info.end_time / 1000 if run.info.end_time else (steps[-1][0] if steps else None)  # killed
        out.append({"opened": run.info.start_time / 1000, "closed": closed, "steps": steps,
                    "status": run.info.status})
    return out


def _union(intervals: list[tuple[float, float]]) -> float:
    total, end = 0.0, float("-inf")
    for a, b in sorted(intervals):
        if b > end:
            total += b - max(a, end)
            end = b
    return total


def summarise(trials: list[dict], start: float, end: float, slots: int) -> dict:
    """Shares and phase durations (see the module docstring); trials without a step (failed early) count only in
    ``failed``."""
    failed = sum(not tr["steps"] for tr in trials)
    first_opened = min(tr["opened"] for tr in trials)
    last_closed = max(tr["closed"] or tr["opened"] for tr in trials)
    trials = [tr for tr in trials if tr["steps"]]
    wall = end - start
    step = sum(t for tr in trials for _, t, _ in tr["steps"])
    wait = sum(w for tr in trials for _, _, w in tr["steps"])
    busy = _union([(e - t, e) for tr in trials for e, t, _ in tr["steps"]])
    first_step = [tr["steps"][0][0] - tr["steps"][0][1] for tr in trials]
    return {
        "trials": len(trials), "failed": failed, "wall": wall, "steps": sum(len(tr["steps"]) for tr in trials),
        "compute": step - wait, "wait": wait, "stepping": (step - wait) / (slots * wall), "busy": busy / wall,
        "startup": first_opened - start,
        "to_first_step": statistics.median(f - tr["opened"] for f, tr in zip(first_step, trials, strict=True)),
        "after_last_step": statistics.median(tr["closed"] - tr["steps"][-1][0] for tr in trials),
        "trial_life": statistics.median(tr["closed"] - tr["opened"] for tr in trials),
        "tail": end - last_closed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, nargs="+", default=sorted(GRIDS), choices=sorted(GRIDS))
    parser.add_argument("--num-cpus", type=int, default=2)
    parser.add_argument("--keep", action="store_true", help="keep each study's directory (MLflow, Tune, log)")
    args = parser.parse_args()
    rows = []
    for n in args.trials:
        work = Path(tempfile.mkdtemp(prefix=f"study-overhead-{n}-"))
        load_before = os.getloadavg()[0]
        start, end, uri, _ = run_study(n, work, args.num_cpus)
        row = summarise(trial_timings(uri, f"overhead-{n}"), start, end, SLOTS)
        row["load"] = f"{load_before:.1f} / {os.getloadavg()[0]:.1f}"
        rows.append(row)
        print(f"{n} trials: {row}  ({work})", flush=True)
        if not args.keep:
            subprocess.run(["rm", "-rf", str(work)], check=False)
    print(f"\nstudy-smoke overhead, {args.num_cpus} CPUs, {SLOTS} trials at a time; {date.today()}")
    print("| trials (failed) | steps | wall s | compute s (sum) | data wait s (sum) | stepping share of slots | goal "
          "| busy | start-up s | run opened -> 1st step s (median) | last step -> run closed s (median) | trial life s "
          "(median) | after last trial s | load avg before / after |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['trials']} ({r['failed']}) | {r['steps']} | {r['wall']:.0f} | {r['compute']:.1f} | "
              f"{r['wait']:.1f} | {r['stepping']:.1%} | >= 70% | {r['busy']:.1%} | {r['startup']:.0f} | "
              f"{r['to_first_step']:.1f} | "
              f"{r['after_last_step']:.1f} | {r['trial_life']:.1f} | {r['tail']:.0f} | {r['load']} |")


if __name__ == "__main__":
    main()

"""Training under faults, on a local Ray (2 CPUs) with the smoke config's two FSDP workers on synthetic data.

- Ray Train worker processes are SIGKILLed from outside, several times in one run, at random steps: the run resumes
  from its latest checkpoint every time, ends at the configured step, every step's loss and the final metrics equal
  those of an unkilled run with the same seed, and MLflow holds one run for it.
- The checkpoint storage fills up mid-run (a small tmpfs): the run fails promptly with the system's reason, and its
  MLflow run ends FAILED instead of staying RUNNING.

Each test prints a ``FAULT | ...`` line with its figures (``pytest -s``); RELIABILITY.md quotes them.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from pathlib import Path

import pytest
from cluster_harness import _all_processes

from pipelines.train import load_config, run_training
from pipelines.train.report_log import ReportLog, read_report_log

SMOKE = Path(__file__).resolve().parents[1] / "configs" / "train-smoke.yaml"
TOTAL_STEPS, CHECKPOINT_EVERY, KILLS = 40, 5, 3
WORKER_PREFIX = "ray::RayTrainWorker"

pytestmark = pytest.mark.slow



def _config(uri: str, experiment: str, *extra: str):
    return load_config(SMOKE, [f"tracking.uri={uri}", f"tracking.experiment={experiment}", "eval.fewshot_shots=[]",
                               f"schedule.total={TOTAL_STEPS} steps", f"checkpoint.every={CHECKPOINT_EVERY} steps",
                               "metrics.log_every=1", *extra])


def _train_workers() -> list[int]:
    """Pids of the Ray Train workers of the Ray this process started (its descendants, nobody else's)."""
    table = _all_processes()
    children: dict[int, list[int]] = {}
    for info in table.values():
        children.setdefault(info.ppid, []).append(info.pid)
    stack, found = [os.getpid()], []
    while stack:
        for child in children.get(stack.pop(), ()):
            stack.append(child)
            if table[child].command.startswith(WORKER_PREFIX) and table[child].state != "Z":
                found.append(child)
    return found


def _steps_since_last_failure(log: Path) -> tuple[int, int]:
    """(failures so far, highest step reported since the last of them)."""
    records = read_report_log(log) if log.exists() else []
    failures = [i for i, r in enumerate(records) if "failed_ranks" in r]
    since = records[failures[-1] + 1:] if failures else records
    steps = [r["ranks"][0]["step"] for r in since if "ranks" in r]
    return len(failures), max(steps, default=0)


def _reached(log: Path, failures: int, step: int) -> bool:
    seen, reported = _steps_since_last_failure(log)
    return seen == failures and reported >= step


def _wait(predicate, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _latest_per_step(client, run_id: str, key: str) -> dict[int, float]:
    latest = {}
    for m in sorted(client.get_metric_history(run_id, key), key=lambda m: m.timestamp):
        latest[m.step] = m.value
    return latest


def test_workers_killed_at_random_steps_resume_and_match_an_unkilled_run(ray_cluster, tmp_path):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    started = time.monotonic()
    reference = run_training(_config(uri, "reference"), run_name="reference", storage_path=str(tmp_path / "runs"))
    reference_s = time.monotonic() - started

    seed = int(os.environ.get("FAULT_SEED", random.randrange(10_000)))
    rng = random.Random(seed)
    # kill steps: one in each third of the run after the first checkpoint, so each lands in a resumed attempt
    span = (TOTAL_STEPS - CHECKPOINT_EVERY - 4) // KILLS
    targets = [CHECKPOINT_EVERY + 2 + i * span + rng.randrange(span - 2) for i in range(KILLS)]
    log, outcome = tmp_path / "reports.jsonl", {}

    def train():
        try:
            outcome["result"] = run_training(_config(uri, "killed", "max_failures=-1"), run_name="killed",
                                             storage_path=str(tmp_path / "runs"), callbacks=[ReportLog(log)])
        except BaseException as error:  # noqa: BLE001 - reported by the main thread
            outcome["error"] = error

    started = time.monotonic()
    thread = threading.Thread(target=train, daemon=True)
    thread.start()
    killed_at, victims = [], []
    for kill, target in enumerate(targets):
        _wait(lambda kill=kill, target=target: _reached(log, kill, target), 600, f"step {target}")
        workers = _train_workers()
        assert len(workers) == 2, workers
        victim = rng.choice(workers)
        killed_at.append(_steps_since_last_failure(log)[1])
        os.kill(victim, signal.SIGKILL)
        victims.append(victim)
        _wait(lambda kill=kill: _steps_since_last_failure(log)[0] == kill + 1, 300, f"failure {kill + 1} seen")
    thread.join(timeout=900)
    killed_s = time.monotonic() - started
    assert not thread.is_alive() and "error" not in outcome, outcome.get("error")
    result = outcome["result"]

    records = read_report_log(log)
    failures = [i for i, r in enumerate(records) if "failed_ranks" in r]
    assert len(failures) == KILLS  # every kill seen once, and nothing else failed
    resumed_from = []
    for index in failures:
        before = records[:index]
        checkpoints = [r["ranks"][0]["step"] for r in before if r.get("checkpoint")]
        after = next(r["ranks"][0]["step"] for r in records[index + 1:] if "ranks" in r)
        resumed_from.append(after - 1)
        assert after - 1 in checkpoints[-2:], (after, checkpoints)  # the latest (or, if not yet committed, previous)
    assert result.metrics["step"] == TOTAL_STEPS
    assert result.metrics["train/images_seen"] == TOTAL_STEPS * 32

    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("killed").experiment_id])
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"  # one run, continued by every restart
    reference_run = client.search_runs([client.get_experiment_by_name("reference").experiment_id])[0]
    killed_loss = _latest_per_step(client, runs[0].info.run_id, "train/loss")
    reference_loss = _latest_per_step(client, reference_run.info.run_id, "train/loss")
    assert sorted(killed_loss) == list(range(1, TOTAL_STEPS + 1))
    for step, value in reference_loss.items():
        assert killed_loss[step] == pytest.approx(value, rel=1e-5, abs=1e-7), step
    for key in ("train/loss", "val/top1", "test/top1"):
        assert result.metrics[key] == pytest.approx(reference.metrics[key], rel=1e-5, abs=1e-7), key
    print(f"\nFAULT | worker SIGKILL | seed {seed}: kills at steps {killed_at} (targets {targets}), resumed from "
          f"checkpoints at {resumed_from}; {len(failures)} injected, {len(failures)} survived; final step "
          f"{result.metrics['step']}, loss {result.metrics['train/loss']:.6f} vs unkilled "
          f"{reference.metrics['train/loss']:.6f}; MLflow runs: {len(runs)}; unkilled {reference_s:.0f} s, "
          f"killed {killed_s:.0f} s")


def test_checkpoint_storage_full_mid_run_is_a_prompt_clear_error(ray_cluster, small_storage, tmp_path):
    from mlflow.tracking import MlflowClient
    from ray.train import TrainingFailedError

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    started = time.monotonic()
    with pytest.raises(TrainingFailedError) as info:
        run_training(_config(uri, "full"), run_name="full", storage_path=str(small_storage))
    failed_after = time.monotonic() - started
    assert "No space left on device" in str(info.value)
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("full").experiment_id])
    assert len(runs) == 1 and runs[0].info.status == "FAILED"
    print(f"\nFAULT | checkpoint storage full | failed after {failed_after:.0f} s with 'No space left on device'; "
          f"MLflow run {runs[0].info.status}")

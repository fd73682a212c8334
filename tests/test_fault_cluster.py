"""Faults of the services around a run, on one two-node Ray cluster (token auth) with a real MLflow server, work
submitted with `ray job submit` as users submit it:

1. the MLflow server is killed mid-run and started again: training goes on through the outage (rank 0's metrics
   wait in its background writer), and every step's metrics are in the run afterwards;
2. the worker node is lost mid-study (every process of it SIGKILLed): the trial whose Train worker ran there is
   restarted on the head from its last checkpoint, the study completes, one finished child run per trial.

The order matters (the second leaves one node). Each test prints a ``FAULT | ...`` line with its figures.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from cluster_harness import NodeSpec, ray_cluster_with_mlflow

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(1500)]

REPO = Path(__file__).resolve().parents[1]
RUNTIME_ENV = REPO / "cluster" / "runtime_env.yaml"
SYNTHETIC = ["train.data.source=synthetic", "train.data.num_classes=10", "train.data.synthetic_size=512",
             "train.data.synthetic_eval_size=128", "train.eval.fewshot_shots=[]"]


@pytest.fixture(scope="module")
def cluster():
    started = time.monotonic()
    with ray_cluster_with_mlflow((NodeSpec("head", num_cpus=1), NodeSpec("worker", num_cpus=1))) as (ray, mlflow):
        print(f"\ncluster + MLflow server up in {time.monotonic() - started:.0f} s")
        yield ray, mlflow


def _wait(predicate, timeout_s: float, what: str, poll_s: float = 0.5):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(poll_s)
    raise AssertionError(f"timed out waiting for {what}")


def _runs(client, experiment: str) -> list:
    found = client.get_experiment_by_name(experiment)
    return client.search_runs([found.experiment_id], max_results=1000) if found else []


def _last_step(client, run_id: str) -> int:
    return max((m.step for m in client.get_metric_history(run_id, "train/loss")), default=0)


def test_mlflow_server_restarted_mid_run_loses_no_metric_and_training_goes_on(cluster):
    from mlflow.tracking import MlflowClient

    ray, mlflow = cluster
    steps = 150
    job = ray.submit_job(["vit-study", "train", "--config", "configs/train-smoke.yaml", "--tracking-uri", mlflow.uri,
                          "tracking.experiment=restart", f"schedule.total={steps} steps", "eval.fewshot_shots=[]",
                          "checkpoint.every=50 steps", "metrics.log_every=5"],
                         working_dir=REPO, runtime_env_file=RUNTIME_ENV)
    client = MlflowClient(mlflow.uri)
    run = _wait(lambda: next(iter(_runs(client, "restart")), None), 300, "the run")
    before = _wait(lambda: (s := _last_step(client, run.info.run_id)) >= 20 and s, 300, "20 steps logged")
    mlflow.stop()
    down_at = time.time()
    time.sleep(10)  # down long enough for several flushes to fail (rank 0 flushes every 5 steps)
    mlflow.start()
    up_at = time.time()
    ray.wait_for_job(job, timeout_s=600)

    run = client.get_run(run.info.run_id)
    assert run.info.status == "FINISHED" and len(_runs(client, "restart")) == 1
    history = client.get_metric_history(run.info.run_id, "train/loss")
    assert sorted({m.step for m in history}) == list(range(1, steps + 1))  # nothing lost in the outage
    # each step's metrics carry the time rank 0 measured them: the steps after the outage were measured (and
    # written) after it, without a restart of training (max_failures is 0: a failure would have failed the job)
    times = {m.step: m.timestamp / 1000 for m in history}
    after = [step for step, t in times.items() if t >= up_at]
    assert after and max(after) == steps and min(after) > before
    # training went on while the server was down: steps measured in the outage (their metrics waited on rank 0,
    # and those unwritten at the step-50/100 checkpoints were saved in them)
    during = sum(down_at <= t < up_at for t in times.values())
    assert during > 0
    stall = max(times[s + 1] - times[s] for s in range(1, steps))
    print(f"\nFAULT | MLflow server restarted mid-run | killed after step {before} was logged, down "
          f"{up_at - down_at:.0f} s; {during} steps trained while it was down, longest gap between two steps "
          f"{stall:.1f} s; {len(times)}/{steps} steps in MLflow, run FINISHED, 1 run, job SUCCEEDED")


def test_worker_node_lost_mid_study_trial_resumes_on_the_head_and_study_completes(cluster, tmp_path_factory):
    from mlflow.tracking import MlflowClient

    from pipelines.analysis.contract import ROLE_PARENT, ROLE_TRIAL, TAG_ROLE

    ray, mlflow = cluster
    budgets = ["9600 images", "16000 images"]  # 300 and 500 steps of 32: long enough to be caught running
    storage = tmp_path_factory.mktemp("node-lost")
    job = ray.submit_job(
        ["vit-study", "study", "--config", "configs/study-smoke.yaml", "--tracking-uri", mlflow.uri, *SYNTHETIC,
         "name=node-lost", f"storage_path={storage}", "grid.models=[vit-pi/4]", "grid.data_fractions=[1.0]",
         f"grid.budgets=[{', '.join(budgets)}]", "resources.max_concurrent_trials=2",
         "train.scaling.cpus_per_worker=1", "train.scaling.data_cpus=0", "train.max_failures=3",
         "train.checkpoint.every=50 steps", "train.checkpoint.export=false", "frontier.inspect=false"],
        working_dir=REPO, runtime_env_file=RUNTIME_ENV)
    client = MlflowClient(mlflow.uri)
    worker_node = ray.node_ids["worker"]

    def victim():  # a running trial whose Train worker is on the worker node and has passed a checkpoint
        for run in _runs(client, "node-lost"):
            if (run.data.tags.get(TAG_ROLE) == ROLE_TRIAL and run.info.status == "RUNNING"
                    and run.data.tags.get("node_id") == worker_node and _last_step(client, run.info.run_id) > 60):
                return run
        return None

    run = _wait(victim, 600, "a trial training on the worker node")
    lost_at_step = _last_step(client, run.info.run_id)
    killed = ray.stop_node("worker")
    lost_at = time.monotonic()
    ray.wait_for_job(job, timeout_s=900)
    recovered_s = time.monotonic() - lost_at

    runs = _runs(client, "node-lost")
    parents = [r for r in runs if r.data.tags.get(TAG_ROLE) == ROLE_PARENT]
    children = [r for r in runs if r.data.tags.get(TAG_ROLE) == ROLE_TRIAL]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert len(children) == len(budgets) and all(c.info.status == "FINISHED" for c in children)
    assert len({c.data.tags["vit_study.trial_key"] for c in children}) == len(budgets)  # no duplicate runs
    moved = client.get_run(run.info.run_id)
    assert set(moved.data.tags["node_id"].split(",")) == {worker_node, ray.node_ids["head"]}  # retried elsewhere
    history = client.get_metric_history(run.info.run_id, "train/loss")
    total = int(moved.data.params["budget"]) // 32
    assert sorted({m.step for m in history}) == list(range(1, total + 1))
    print(f"\nFAULT | worker node lost mid-study | {len(killed)} processes of the worker node SIGKILLed at step "
          f"{lost_at_step} of {total}; the trial finished on the head {recovered_s:.0f} s later (study end); "
          f"{len(children)}/{len(budgets)} trials FINISHED, {len(children)} child runs, 1 parent")

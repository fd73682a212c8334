"""Acceptance 3 of the study: the driver is killed (SIGKILL of `vit-study study`) after some trials finished;
`--resume` runs only the unfinished trials, continuing the interrupted trial's MLflow run (and its Train run from
the last checkpoint), and MLflow ends with exactly one child run per trial and none left RUNNING.

The smoke preset on synthetic data (no data pipeline start-up) keeps this short: 3 trials, one at a time.
"""

import time

import pytest
from study_runner import REPO, study_workspace

from pipelines.analysis.contract import ROLE_PARENT, ROLE_TRIAL, TAG_ROLE

pytestmark = pytest.mark.slow

SYNTHETIC = ["train.data.source=synthetic", "train.data.num_classes=10", "train.data.synthetic_size=512",
             "train.data.synthetic_eval_size=128", "train.eval.fewshot_train_size=100",
             "train.eval.fewshot_eval_size=100"]
ARGS = ["--config", str(REPO / "configs" / "study-smoke.yaml"), *SYNTHETIC, "grid.models=[vit-pi/8]",
        "grid.data_fractions=[1.0]", "grid.budgets=[320 images, 3200 images, 640 images]",
        "resources.max_concurrent_trials=1", "train.checkpoint.every=5 steps",
        "train.checkpoint.export=false", "frontier.inspect=false"]  # no frontier figures: not what is tested
TRIALS = 3  # one to finish, one to interrupt, one not yet started when the driver is killed


def _runs(client, experiment_name: str):
    experiment = client.get_experiment_by_name(experiment_name)
    if experiment is None:
        return [], []
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    return ([r for r in runs if r.data.tags.get(TAG_ROLE) == ROLE_PARENT],
            [r for r in runs if r.data.tags.get(TAG_ROLE) == ROLE_TRIAL])


def _checkpoints(ws, child) -> list:
    """The checkpoint directories of the trial's Ray Train run (named after the Tune trial id)."""
    return sorted((ws.storage / "study-smoke" / "train" / child.data.tags["trial_id"]).glob("step-*"))


def test_killed_study_resumes_only_unfinished_trials_in_their_runs():
    from mlflow.tracking import MlflowClient

    with study_workspace() as ws:
        client = MlflowClient(ws.tracking_uri)
        started = time.monotonic()
        process = ws.start(*ARGS, log_name="first.log")
        finished, running = [], []
        while time.monotonic() - started < 900 and process.poll() is None:
            _, children = _runs(client, "study-smoke")
            finished = [c for c in children if c.info.status == "FINISHED"]
            # a trial whose Train run has saved a checkpoint (every 5 steps)
            running = [c for c in children if c.info.status == "RUNNING" and _checkpoints(ws, c)]
            if finished and running:
                break
            time.sleep(0.5)
        assert finished and running and process.poll() is None, \
            f"no trial finished while another ran:\n{ws.log('first.log')[-4000:]}"
        process.kill()  # SIGKILL: no clean-up of any kind
        process.wait()
        killed_ms = time.time() * 1000
        killed_at = time.monotonic() - started
        parents, children = _runs(client, "study-smoke")
        before = {c.data.tags["vit_study.trial_key"]: c for c in children}
        done_before = {k: c for k, c in before.items() if c.info.status == "FINISHED"}
        interrupted = {k: c for k, c in before.items() if c.info.status == "RUNNING"}
        assert len(parents) == 1 and parents[0].info.status == "RUNNING"
        assert 1 <= len(done_before) and len(before) < TRIALS  # one trial had not even started

        resumed = ws.run("--resume", *ARGS, timeout_s=1500, log_name="resume.log")
        assert resumed.returncode == 0, resumed.output[-6000:]
        print(f"killed after {killed_at:.0f} s with {len(done_before)} trial(s) finished, "
              f"{len(interrupted)} running; --resume took {resumed.wall_s:.0f} s")

        parents_after, children_after = _runs(client, "study-smoke")
        assert [p.info.run_id for p in parents_after] == [parents[0].info.run_id]  # one parent, reused
        assert parents_after[0].info.status == "FINISHED"
        keys = [c.data.tags["vit_study.trial_key"] for c in children_after]
        assert len(keys) == len(set(keys)) == TRIALS  # exactly one child run per trial
        assert all(c.info.status == "FINISHED" for c in children_after)
        after = {c.data.tags["vit_study.trial_key"]: c for c in children_after}
        for key, run in done_before.items():  # finished trials did not run again
            assert after[key].info.run_id == run.info.run_id
            assert after[key].info.end_time == run.info.end_time
            assert after[key].data.metrics == run.data.metrics
        assert interrupted
        for key, run in interrupted.items():  # the interrupted trial continued its own run, from its checkpoint
            assert after[key].info.run_id == run.info.run_id
            assert after[key].data.tags["trial_id"] == run.data.tags["trial_id"]  # Tune restored the same trial
            history = client.get_metric_history(run.info.run_id, "train/loss")
            assert max(m.step for m in history) == int(run.data.params["budget"]) // 32
            assert all(m.timestamp < killed_ms for m in history if m.step <= 5), "restarted from scratch"
        assert "Trial status: " in resumed.output
        print(f"\nFAULT | study driver SIGKILLed | 1 kill after {killed_at:.0f} s with {len(done_before)} trial(s) "
              f"finished, {len(interrupted)} running, {TRIALS - len(before)} not started; --resume ran "
              f"{TRIALS - len(done_before)} and re-ran 0 finished; {len(keys)} child runs for {TRIALS} trials, "
              f"0 left RUNNING, 1 parent; resume took {resumed.wall_s:.0f} s")

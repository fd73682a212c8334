"""A worker killed mid-run: Ray Train restarts the group, every rank resumes from the last checkpoint, the run
ends at the configured step, and MLflow holds one run for it, not two."""

from pathlib import Path

import pytest
import ray

from pipelines.train import load_config, ray_logs, run_training
from pipelines.train.report_log import ReportLog, read_report_log

SMOKE = Path(__file__).resolve().parents[1] / "configs" / "train-smoke.yaml"


@pytest.fixture(scope="module")
def ray_cluster():
    ray.init(num_cpus=2, include_dashboard=False, runtime_env=ray_logs.RUNTIME_ENV)
    try:
        yield
    finally:
        ray.shutdown()


@pytest.mark.slow
def test_killed_worker_resumes_from_checkpoint_in_the_same_mlflow_run(ray_cluster, tmp_path):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    # rank 1 SIGKILLs itself when step 15 starts (only on an attempt that did not resume); checkpoints every 10
    cfg = load_config(SMOKE, [f"tracking.uri={uri}", "tracking.experiment=kill", "fault.kill_at_step=15",
                              "fault.kill_rank=1", "max_failures=1", "checkpoint.every=10 steps",
                              "eval.fewshot_shots=[]"])
    log = tmp_path / "reports.jsonl"
    result = run_training(cfg, run_name="killed", storage_path=str(tmp_path / "runs"), callbacks=[ReportLog(log)])

    records = read_report_log(log)
    failures = [r for r in records if "failed_ranks" in r]
    steps = [r["ranks"][0]["step"] for r in records if "ranks" in r]
    assert len(failures) == 1 and 1 in failures[0]["failed_ranks"]  # the kill happened and was seen once
    failed_at = records.index(failures[0])
    assert [r["ranks"][0]["step"] for r in records[:failed_at] if "ranks" in r] == [5, 10]
    assert steps == [5, 10, 15, 20, 25, 30]  # resumed at 10 (a restart from scratch would repeat 5 and 10)
    assert result.metrics["step"] == 30 and result.metrics["train/images_seen"] == 30 * 32

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("kill")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    logged_steps = sorted({m.step for m in client.get_metric_history(runs[0].info.run_id, "train/loss")})
    assert logged_steps == list(range(1, 31))

"""A trial whose loss goes non-finite is FAILED in MLflow with its step, the other trials go on, the report is built
from the rest and the command exits 1 naming the failed trial."""

import json
from pathlib import Path

import pytest
from study_runner import REPO, study_workspace

from pipelines.analysis.contract import ROLE_PARENT, ROLE_TRIAL, TAG_ROLE

pytestmark = pytest.mark.slow

ARGS = ["--config", str(REPO / "configs" / "study-smoke.yaml"), "train.data.source=synthetic",
        "train.data.num_classes=10", "train.data.synthetic_size=512", "train.data.synthetic_eval_size=128",
        "train.eval.fewshot_train_size=100", "train.eval.fewshot_eval_size=100", "train.schedule.warmup=0 steps",
        "grid.models=[vit-pi/8]", "grid.data_fractions=[1.0]", "grid.budgets=[320 images]", "grid.lrs=[1e-3, 1e30]",
        "train.checkpoint.export=false", "frontier.inspect=false"]  # no frontier figures: not what is tested


def test_a_diverging_trial_fails_with_its_step_and_the_study_goes_on():
    from mlflow.tracking import MlflowClient

    with study_workspace() as ws:
        result = ws.run(*ARGS, timeout_s=1200)
        print(f"study with a diverging trial: exit {result.returncode} after {result.wall_s:.0f} s")
        assert result.returncode == 1, result.output[-6000:]
        client = MlflowClient(ws.tracking_uri)
        runs = client.search_runs([client.get_experiment_by_name("study-smoke").experiment_id])
        parent = [r for r in runs if r.data.tags.get(TAG_ROLE) == ROLE_PARENT]
        children = {float(r.data.params["lr"]): r for r in runs if r.data.tags.get(TAG_ROLE) == ROLE_TRIAL}
        assert len(parent) == 1 and parent[0].info.status == "FINISHED"
        assert set(children) == {1e-3, 1e30}

        good, bad = children[1e-3], children[1e30]
        assert good.info.status == "FINISHED" and 0.0 <= good.data.metrics["top1"] <= 1.0
        assert bad.info.status == "FAILED"
        note = bad.data.tags["mlflow.note.content"]
        assert note.startswith("non-finite loss at step ")
        assert "top1" not in bad.data.metrics
        assert bad.data.tags["vit_study.trial_key"] in result.output  # named in the error line

        table = client.download_artifacts(parent[0].info.run_id, "report/results.csv", str(ws.directory / "dl"))
        import pandas as pd

        rows = pd.read_csv(table).set_index("lr")
        assert rows["status"].to_dict() == {1e-3: "finished", 1e30: "failed"}
        assert rows.loc[1e30, "note"] == note  # the report says why the trial is missing from the fits
        fits = json.loads(Path(client.download_artifacts(parent[0].info.run_id, "report/fits.json",
                                                         str(ws.directory / "dl"))).read_text())
        assert (fits["trials"], fits["finished"]) == (2, 1)  # fitted on the finished trial only
        step = int(note.split("non-finite loss at step ")[1].split(":")[0])
        print(f"\nFAULT | non-finite loss | 1 trial of 2 diverged (lr 1e30) and ended FAILED at step {step}; the "
              f"other FINISHED; report: {fits['finished']} of {fits['trials']} trials fitted, the failed one noted; "
              f"study exit {result.returncode} after {result.wall_s:.0f} s")

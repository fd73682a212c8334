"""Acceptance 1 and 4 of the study: `vit-study study --config configs/study-smoke.yaml` on real CIFAR-10 JPEGs, run
once (module fixture) the way a user runs it, checked through MlflowClient; then `vit-study report` in a fresh
directory rebuilds the same table from MLflow alone.

- one parent run, one FINISHED child per planned trial, with the contract's params (checked against vit_model and
  the data's own subset sizes), tags, final metrics (training FLOPs = 3 x forward FLOPs x images seen) and curves;
- the results table, fits and plots (the Pareto plot included) as artifacts of the parent run;
- Tune's experiment directory has each trial's results and TensorBoard event files.
"""

import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from study_runner import REPO, study_workspace

import vit_model
from pipelines.analysis.contract import FINAL_METRICS, PARAM_COLUMNS, ROLE_PARENT, ROLE_TRIAL, TAG_ROLE, TRIAL_TAGS

pytestmark = pytest.mark.slow

CONFIG = REPO / "configs" / "study-smoke.yaml"
DATA = REPO.parent / "shared" / "data" / "cifar10-jpg"
EXPERIMENT = "study-smoke"


@pytest.fixture(scope="module")
def smoke():
    if not DATA.exists():
        pytest.skip("the shared CIFAR-10 data is not on this machine")
    from mlflow.tracking import MlflowClient

    with study_workspace() as ws:
        result = ws.run("--config", str(CONFIG), timeout_s=1800)
        print(f"study-smoke: exit {result.returncode} after {result.wall_s:.0f} s")
        assert result.returncode == 0, result.output[-6000:]
        client = MlflowClient(ws.tracking_uri)
        experiment = client.get_experiment_by_name(EXPERIMENT)
        runs = client.search_runs([experiment.experiment_id], max_results=1000)
        parents = [r for r in runs if r.data.tags.get(TAG_ROLE) == ROLE_PARENT]
        children = [r for r in runs if r.data.tags.get(TAG_ROLE) == ROLE_TRIAL]
        yield {"ws": ws, "client": client, "parents": parents, "children": children, "result": result,
               "experiment_dir": ws.storage / EXPERIMENT}


def _planned(smoke) -> pd.DataFrame:
    path = smoke["client"].download_artifacts(smoke["parents"][0].info.run_id, "trials.csv",
                                              str(smoke["ws"].directory / "dl"))
    return pd.read_csv(path)


def _artifacts(client, run_id, path=None) -> list[str]:
    found = []
    for item in client.list_artifacts(run_id, path):
        found += _artifacts(client, run_id, item.path) if item.is_dir else [item.path]
    return found


def test_one_parent_and_one_finished_child_per_trial(smoke):
    assert len(smoke["parents"]) == 1
    parent = smoke["parents"][0]
    assert parent.info.status == "FINISHED"
    planned = _planned(smoke)
    assert len(planned) >= 8 and planned["family"].nunique() >= 2
    assert planned["data_fraction"].nunique() >= 2 and planned["budget"].nunique() >= 2
    children = smoke["children"]
    assert sorted(c.data.tags["vit_study.trial_key"] for c in children) == sorted(planned["key"])
    assert len({c.data.tags["trial_id"] for c in children}) == len(children)
    for child in children:
        assert child.info.status == "FINISHED", child.data.tags.get("mlflow.note.content")
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id


def test_children_carry_the_contracts_params_tags_and_metrics(smoke):
    from pipelines.data import ensure_prepared, subset_sizes

    prepared = ensure_prepared(str(DATA))
    for child in smoke["children"]:
        params, tags, metrics = child.data.params, child.data.tags, child.data.metrics
        assert set(PARAM_COLUMNS) <= set(params)
        for key in TRIAL_TAGS:
            assert tags[key] == params[key]  # tags repeat params for MLflow's comparison UI
        model = vit_model.create_model(params["variant"], num_classes=10, image_size=int(params["image_size"]),
                                       head="mlp")
        assert int(params["params"]) == sum(p.numel() for p in model.parameters())
        assert float(params["forward_gflops"]) == pytest.approx(vit_model.forward_flops(model) / 1e9)
        assert params["family"] == model.family
        count = subset_sizes(prepared, train_fraction=float(params["data_fraction"]))["train"]
        assert int(params["data_count"]) == count
        assert float(params["budget_epochs"]) == pytest.approx(int(params["budget"]) / count)

        assert set(FINAL_METRICS) <= set(metrics)
        assert 0.0 <= metrics["top1"] <= 1.0 and metrics["top1"] == metrics["val/top1"]  # top1_split: val
        assert metrics["train_flops"] == pytest.approx(
            vit_model.training_flops(vit_model.forward_flops(model), int(params["budget"])))
        assert metrics["train/images_seen"] == int(params["budget"])
        assert metrics["device_hours"] == pytest.approx(metrics["wall_time_s"] / 3600)  # one worker per trial
        assert 0.0 <= metrics["fewshot/cifar10_5shot"] <= 1.0
        assert len(tags["node_id"].split(",")) == 1 and len(tags["node_id"]) == 56  # a Ray node id
        losses = smoke["client"].get_metric_history(child.info.run_id, "train/loss")
        assert len({m.step for m in losses}) == len(losses) >= int(params["budget"]) // 32  # every step, once


def test_report_artifacts_are_on_the_parent_run(smoke):
    client, parent = smoke["client"], smoke["parents"][0]
    artifacts = _artifacts(client, parent.info.run_id)
    for name in ("report/results.csv", "report/results.parquet", "report/frontier.csv", "report/fits.json",
                 "report/plots/accuracy_vs_compute_top1.png", "report/plots/accuracy_vs_compute_top1.svg",
                 "report/plots/accuracy_vs_data_top1.png", "report/plots/training_curves.png", "study_config.yaml"):
        assert name in artifacts, name
    assert "report.top1.compute_exponent_b" in client.get_run(parent.info.run_id).data.metrics
    table = pd.read_parquet(client.download_artifacts(parent.info.run_id, "report/results.parquet",
                                                      str(smoke["ws"].directory / "dl-table")))
    by_id = {c.data.tags["trial_id"]: c for c in smoke["children"]}
    assert sorted(table["trial_id"]) == sorted(by_id)
    for row in table.itertuples():
        metrics = by_id[row.trial_id].data.metrics
        assert row.top1 == metrics["top1"] and row.train_flops == metrics["train_flops"]
        assert row.status == "finished"


def test_tune_experiment_has_results_and_tensorboard_files_per_trial(smoke):
    trial_dirs = [d for d in smoke["experiment_dir"].iterdir() if d.is_dir() and d.name[:3].isdigit()]
    assert len(trial_dirs) == len(smoke["children"])
    for directory in trial_dirs:
        assert (directory / "result.json").stat().st_size > 0
        assert list(directory.glob("events.out.tfevents.*")), directory.name


def test_report_in_a_fresh_directory_reproduces_the_table(smoke, tmp_path):
    out = tmp_path / "report"
    started = time.monotonic()
    done = subprocess.run([str(Path(sys.executable).parent / "vit-study"), "report", "--experiment", EXPERIMENT,
                           "--tracking-uri", smoke["ws"].tracking_uri, "--out", str(out)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    print(f"vit-study report: {time.monotonic() - started:.0f} s")
    rebuilt = pd.read_parquet(out / "results.parquet")
    original = pd.read_parquet(smoke["experiment_dir"] / "report" / "results.parquet")
    pd.testing.assert_frame_equal(rebuilt, original)  # the same numbers, exactly
    assert (out / "plots" / "accuracy_vs_compute_top1.png").stat().st_size > 0


def test_frontier_trials_and_only_they_carry_inspection_figures(smoke):
    client, parent = smoke["client"], smoke["parents"][0]
    frontier = pd.read_csv(client.download_artifacts(parent.info.run_id, "report/frontier.csv",
                                                     str(smoke["ws"].directory / "dl-frontier")))
    on_frontier = set(frontier.loc[(frontier["group"] == "all") & (frontier["metric"] == "top1"), "trial_id"])
    assert on_frontier
    for child in smoke["children"]:
        artifacts = _artifacts(client, child.info.run_id)
        assert "model/model.safetensors" in artifacts  # train.checkpoint.export
        figures = {a for a in artifacts if a.startswith("inspection/")}
        if child.data.tags["trial_id"] in on_frontier:
            assert {"inspection/position_embedding_similarity.png", "inspection/attention_rollout.png",
                    "inspection/attention_distance.png", "inspection/inspection.json"} <= figures
            # filters of a linear patch embedding; T2T-ViT's soft split has none
            assert ("inspection/embedding_filters.png" in figures) == (child.data.params["family"] == "vit")
        else:
            assert not figures, child.data.tags["trial_id"]


def test_resume_with_a_finetune_stage_fine_tunes_the_frontier_models_only(smoke):
    """`--resume frontier.finetune=<config>` on the finished study (last here: it adds to the report): each frontier
    trial's exported model is fine-tuned at 48 px (the position embeddings resampled from 4x4 to 6x6 for ViT), its
    sweep's runs are children of the trial's run, and the report gains transfer_top1 with its own Pareto plot."""
    import yaml

    ws, client = smoke["ws"], smoke["client"]
    config = ws.directory / "finetune-smoke.yaml"
    config.write_text(yaml.safe_dump({
        "name": "ft-smoke", "data": {"source": str(DATA), "name": "cifar10", "image_size": 48, "train_count": 200},
        "schedule": {"global_batch_size": 16, "total": "4 steps", "warmup": "1 steps"},
        "eval": {"batch_size": 250, "fewshot_shots": []}, "scaling": {"num_workers": 1},
        "checkpoint": {"export": False}, "sweep": {"lrs": [0.01]}}))
    result = ws.run("--config", str(CONFIG), "--resume", f"frontier.finetune={config}", timeout_s=1500,
                    log_name="finetune.log")
    print(f"study-smoke --resume with fine-tuning: exit {result.returncode} after {result.wall_s:.0f} s")
    assert result.returncode == 0, result.output[-6000:]

    report = smoke["experiment_dir"] / "report"
    frontier = pd.read_csv(report / "frontier.csv")
    on_frontier = set(frontier.loc[(frontier["group"] == "all") & (frontier["metric"] == "top1"), "trial_id"])
    table = pd.read_parquet(report / "results.parquet")
    tuned = set(table.loc[table["transfer_top1"].notna(), "trial_id"])
    assert tuned == on_frontier
    assert table["transfer_top1"].dropna().between(0, 1).all()
    assert (report / "plots" / "accuracy_vs_compute_transfer_top1.png").stat().st_size > 0
    experiment = client.get_experiment_by_name(EXPERIMENT).experiment_id
    for child in smoke["children"]:
        trial = client.get_run(child.info.run_id)
        sweeps = client.search_runs([experiment], f"tags.`mlflow.parentRunId` = '{child.info.run_id}'")
        if trial.data.tags["trial_id"] in on_frontier:
            assert len(sweeps) == 1 and sweeps[0].info.status == "FINISHED"  # one run per learning rate
            assert sweeps[0].data.tags["vit_study.pretrain_run_id"] == child.info.run_id
            assert trial.data.metrics["finetune/best_test/top1"] == sweeps[0].data.metrics["test/top1"]
        else:
            assert not sweeps and "finetune/best_test/top1" not in trial.data.metrics

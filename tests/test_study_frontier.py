"""The study's frontier stage picks the finished trials on the overall accuracy-compute frontier, and finds the
sample images of a prepared dataset (its test split first)."""

import pandas as pd
import torch

from pipelines.study.frontier import frontier_trial_ids, sample_images


def _table(rows):
    return pd.DataFrame(rows, columns=["trial_id", "family", "status", "top1", "train_flops"])


def test_frontier_ids_are_the_finished_undominated_trials_cheapest_first():
    table = _table([
        ("a", "vit", "finished", 0.30, 1e12),
        ("b", "vit", "finished", 0.25, 2e12),  # dominated by a
        ("c", "t2t", "finished", 0.45, 4e12),
        ("d", "t2t", "failed", 0.90, 1e11),  # would dominate everything, but did not finish
        ("e", "vit", "finished", 0.50, 8e12),
        ("f", "t2t", "finished", 0.50, 9e12),  # ties e's accuracy at more compute
    ])
    assert frontier_trial_ids(table, "top1") == ["a", "c", "e"]


def test_no_finished_trial_means_no_frontier():
    assert frontier_trial_ids(_table([("a", "vit", "failed", None, None)]), "top1") == []


def test_sample_images_prefer_the_test_split(tmp_path):
    (tmp_path / "train").mkdir()
    assert sample_images(str(tmp_path)) == str(tmp_path / "train")
    (tmp_path / "test").mkdir()
    assert sample_images(str(tmp_path)) == str(tmp_path / "test")
    assert sample_images("s3://bucket/prepared") is None
    assert sample_images("synthetic") is None


def test_inspect_frontier_logs_figures_to_the_frontier_runs_once(tmp_path):
    """Against a real (sqlite) MLflow store: child runs holding exported models, as a finished study leaves them."""
    from mlflow.tracking import MlflowClient

    import vit_model
    from pipelines.analysis.contract import ROLE_PARENT, ROLE_TRIAL, TAG_PARENT_RUN_ID, TAG_ROLE, TAG_TRIAL_ID
    from pipelines.study.frontier import inspect_frontier

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    experiment = client.create_experiment("s", artifact_location=str(tmp_path / "artifacts"))
    parent = client.create_run(experiment, tags={TAG_ROLE: ROLE_PARENT}).info.run_id
    model_dir = tmp_path / "model"
    vit_model.save_model(vit_model.create_model("vit-pi/8", num_classes=10, image_size=32, head="mlp"), model_dir)
    runs = {}
    for trial_id in ("a", "b", "c"):
        run = client.create_run(experiment, tags={TAG_ROLE: ROLE_TRIAL, TAG_PARENT_RUN_ID: parent,
                                                  TAG_TRIAL_ID: trial_id}).info.run_id
        client.log_artifacts(run, str(model_dir), "model")
        client.set_terminated(run, "FINISHED")
        runs[trial_id] = run
    table = _table([("a", "vit", "finished", 0.3, 1e12), ("b", "vit", "finished", 0.2, 2e12),
                    ("c", "vit", "finished", 0.4, 3e12)])
    images = tmp_path / "prepared" / "test" / "cat"
    images.mkdir(parents=True)
    from torchvision.io import write_png
    for i in range(2):
        write_png(torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8), str(images / f"{i}.png"))

    lines = []
    written = inspect_frontier(uri, experiment, parent, table, metric="top1", data_source=str(tmp_path / "prepared"),
                               num_images=2, out_dir=tmp_path / "report", log=lines.append)
    assert sorted(written) == ["a", "c"]
    for trial_id, run in runs.items():
        logged = {a.path for a in client.list_artifacts(run, "inspection")}
        assert bool(logged) == (trial_id != "b")
        if logged:
            assert "inspection/attention_rollout.png" in logged
            assert (tmp_path / "report" / "frontier" / trial_id / "attention_rollout.png").stat().st_size > 0
    again = inspect_frontier(uri, experiment, parent, table, metric="top1", data_source=str(tmp_path / "prepared"),
                             num_images=2, out_dir=tmp_path / "report", log=lines.append)
    assert again == {}  # a resumed study does not draw them twice



def test_finetune_frontier_fine_tunes_each_frontier_run_once_into_the_studys_mlflow(tmp_path, monkeypatch):
    """The stage's wiring, with the sweep itself stood in for (it runs for real in test_study_smoke): each frontier
    trial's run is the checkpoint and the parent of its sweep, the config points at the study's MLflow, the Ray
    Train storage is under the study, and a trial that already has its transfer accuracy is not fine-tuned again."""
    import yaml
    from mlflow.tracking import MlflowClient

    from pipelines.analysis.contract import (
        ROLE_TRIAL,
        TAG_PARENT_RUN_ID,
        TAG_ROLE,
        TAG_TRIAL_ID,
        TRANSFER_METRIC,
    )
    from pipelines.study import frontier as stage
    from pipelines.transfer import sweep

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    experiment = client.create_experiment("s", artifact_location=str(tmp_path / "artifacts"))
    runs = {}
    for trial_id in ("a", "b", "c"):
        run = client.create_run(experiment, tags={TAG_ROLE: ROLE_TRIAL, TAG_PARENT_RUN_ID: "parent",
                                                  TAG_TRIAL_ID: trial_id}).info.run_id
        client.set_terminated(run, "FINISHED")
        runs[trial_id] = run
    table = _table([("a", "vit", "finished", 0.3, 1e12), ("b", "vit", "finished", 0.2, 2e12),
                    ("c", "t2t", "finished", 0.4, 3e12)])  # frontier: a, c
    calls = []

    def fake_sweep(config, *, checkpoint, run_name, storage_path, parent_run_id):
        calls.append((config, checkpoint, run_name, storage_path, parent_run_id))
        MlflowClient(config.tracking.uri).log_metric(parent_run_id, TRANSFER_METRIC, 0.7)
        return sweep.SweepSummary("val/top1", [sweep.SweepRun(0.01, {"val/top1": 0.6, "test/top1": 0.7}, None, None)])

    monkeypatch.setattr(sweep, "run_finetune", fake_sweep)
    finetune = tmp_path / "ft.yaml"
    finetune.write_text(yaml.safe_dump({"data": {"source": "synthetic", "num_classes": 4, "image_size": 48}}))
    options = dict(metric="top1", config_path=str(finetune), overrides=["sweep.lrs=[0.01]"],
                   study_path=str(tmp_path / "study"), log=lambda line: None)

    tuned = stage.finetune_frontier(uri, "s", experiment, "parent", table, **options)
    assert tuned == {"a": 0.7, "c": 0.7}
    assert [(c[1], c[2], c[4]) for c in calls] == [(runs["a"], "a-ft", runs["a"]), (runs["c"], "c-ft", runs["c"])]
    config = calls[0][0]
    assert (config.tracking.enabled, config.tracking.uri, config.tracking.experiment) == (True, uri, "s")
    assert config.sweep.lrs == [0.01] and calls[0][3] == str(tmp_path / "study" / stage.FINETUNE_DIR)
    assert stage.finetune_frontier(uri, "s", experiment, "parent", table, **options) == {}  # resumed: nothing left
    assert len(calls) == 2

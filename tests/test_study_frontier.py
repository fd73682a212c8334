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


"""Masked patch pre-training and fine-tuning on a tiny local Ray (2 FSDP workers, synthetic data): the masked-patch
loss falls from ln(512), its export is a plain ViT, and fine-tuning from its MLflow run sweeps two learning rates
into two tagged MLflow runs under a sweep run, at a new resolution with the new head."""

import math

import pytest

import vit_model
from pipelines import tracking
from pipelines.train import load_config, run_training
from pipelines.train.report_log import ReportLog, read_report_log
from pipelines.transfer import load_finetune_config, run_finetune

pytestmark = pytest.mark.slow

SYNTHETIC = ["data.num_classes=4", "data.synthetic_size=256", "data.synthetic_eval_size=64", "model.name=vit-pi/4",
             "schedule.global_batch_size=32", "eval.fewshot_shots=[]", "scaling.num_workers=2", "metrics.log_every=5"]



def test_masked_patch_pretraining_then_finetuning_sweep(ray_cluster, tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    pretrain = load_config(None, [*SYNTHETIC, "data.image_size=16", "objective=masked_patch", "optim.lr=3e-3",
                                  "schedule.total=30 steps", "schedule.warmup=3 steps", "metrics.log_every=1",
                                  f"tracking.uri={uri}"])
    result = run_training(pretrain, run_name="mpp", storage_path=str(tmp_path / "runs"),
                          callbacks=[ReportLog(tmp_path / "mpp.jsonl")])
    losses = [r["ranks"][0]["train/loss"] for r in read_report_log(tmp_path / "mpp.jsonl") if "ranks" in r]
    assert losses[0] == pytest.approx(math.log(512), abs=0.05)  # the zero colour head predicts uniformly
    assert losses[-1] < losses[0] - 1.0
    assert "train/masked_patch_accuracy" in result.metrics and "val/top1" not in result.metrics
    backbone = vit_model.load_model(f"{result.checkpoint.path}/export")  # the colour head is not exported
    assert backbone.model_name == "vit-pi/4" and tuple(backbone.config.image_size) == (16, 16)

    experiment = tracking.get_or_create_experiment(uri, "vit-study")
    mpp_run = tracking.find_run(uri, experiment, "mpp").info.run_id
    finetune = load_finetune_config(None, [*SYNTHETIC, "data.image_size=32", "schedule.total=8 steps",
                                           "sweep.lrs=[0.01, 0.03]", "optim.ema_decay=0.9", f"tracking.uri={uri}"])
    summary = run_finetune(finetune, checkpoint=mpp_run, run_name="ft", storage_path=str(tmp_path / "runs"))

    assert [r.lr for r in summary.runs] == [0.01, 0.03]
    client = tracking.runs.client(uri)
    for run in summary.runs:
        assert "val/top1" in run.metrics and run.metrics["step"] == 8
        mlflow_run = client.get_run(run.mlflow_run_id)
        tags, params = mlflow_run.data.tags, mlflow_run.data.params
        assert tags["vit_study.init_checkpoint"] == mpp_run and tags["vit_study.pretrain_run_id"] == mpp_run
        assert tags["vit_study.kind"] == "finetune" and tags["mlflow.parentRunId"] == summary.mlflow_run_id
        assert (params["optim.name"], float(params["optim.lr"]), params["model.head"]) == ("sgd", run.lr, "linear")
        assert mlflow_run.info.status == "FINISHED"
    sweep = client.get_run(summary.mlflow_run_id)
    assert sweep.data.metrics["finetune/best_lr"] == summary.best.lr and sweep.info.status == "FINISHED"
    tuned = vit_model.load_model(f"{summary.best.checkpoint}/export")
    assert tuple(tuned.config.image_size) == (32, 32) and tuned.config.num_classes == 4
    assert tuned.pos_embed.shape[1] == 1 + 8 * 8  # 4 px patches kept: the 4x4 grid became 8x8

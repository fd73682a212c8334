"""The training function on a tiny local Ray: the smoke preset learns, checkpoints, exports loadable weights whose
accuracy is the reported one; a huge learning rate stops the run with the step in the error."""

import json
import math
from pathlib import Path

import pytest
import torch

import vit_model
from pipelines.train import load_config, run_training
from pipelines.train.optim import split_batch
from pipelines.train.sources import VAL, SyntheticSource, patch_geometry

SMOKE = Path(__file__).resolve().parents[1] / "configs" / "train-smoke.yaml"



def _plain_top1(model, cfg) -> float:
    """Top-1 of an unsharded model on the synthetic validation split, computed here without Ray or FSDP."""
    source = SyntheticSource(geometry=patch_geometry(model.config), num_classes=cfg.data.num_classes,
                             train_size=cfg.data.synthetic_size, eval_size=cfg.data.synthetic_eval_size,
                             seed=cfg.data.seed, split=split_batch(cfg.schedule, 1), rank=0, world_size=1,
                             eval_batch_size=64, fewshot_train_size=1, fewshot_eval_size=1)
    model.eval()
    with torch.no_grad():
        batches = list(source.eval_batches(VAL))
        correct = sum((model(x).argmax(-1) == y).sum().item() for x, y in batches)
    return correct / sum(len(y) for _, y in batches)


def test_smoke_preset_learns_checkpoints_and_exports(ray_cluster, tmp_path):
    cfg = load_config(SMOKE, ["tracking.enabled=false"])
    result = run_training(cfg, run_name="smoke", storage_path=str(tmp_path))
    metrics = result.metrics
    assert metrics["step"] == 30 and metrics["train/images_seen"] == 30 * 32
    assert metrics["train/loss"] < math.log(10) - 0.2  # the zero-initialised head starts at exactly ln(10)
    assert metrics["val/top1"] > 0.3 and "test/top1" in metrics
    assert {f"fewshot/synthetic_{k}shot" for k in (1, 5, 10, 25)} <= metrics.keys()
    plain = vit_model.create_model("vit-pi/4", num_classes=10, image_size=32, head="mlp")
    assert metrics["train/flops"] == pytest.approx(3 * vit_model.forward_flops(plain) * 30 * 32)

    checkpoint = Path(result.checkpoint.path)
    assert json.loads((checkpoint / "train_state.json").read_text())["step"] == 30
    assert (checkpoint / ".metadata").exists() and len(list(checkpoint.glob("*.distcp"))) == 2  # one per rank
    exported = vit_model.load_model(checkpoint / "export")
    assert exported.model_name == "vit-pi/4"
    assert _plain_top1(exported, cfg) == pytest.approx(metrics["val/top1"])  # FSDP eval = plain eval of the export


def test_huge_learning_rate_stops_with_the_step(ray_cluster, tmp_path):
    cfg = load_config(SMOKE, ["tracking.enabled=false", "optim.lr=1e30", "schedule.warmup=0 steps",
                              "scaling.num_workers=1", "checkpoint.every=null", "eval.every=null",
                              "eval.fewshot_shots=[]"])
    with pytest.raises(Exception, match=r"non-finite .* at step 2\b"):
        run_training(cfg, run_name="nan", storage_path=str(tmp_path))

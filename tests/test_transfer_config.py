"""Fine-tuning and masked-patch config: the paper's fine-tuning recipe is what a fine-tuning run builds, and bad
values fail naming their field."""

import math

import pytest
import torch

import vit_model
from pipelines.train.config import ConfigError, load_config
from pipelines.train.optim import build_optimizer, build_scheduler
from pipelines.transfer.config import load_finetune_config

BASE = ["data.num_classes=10"]


@pytest.mark.parametrize(("override", "field"), [
    ("optim.name=lion", "optim.name"),
    ("optim.momentum=1.0", "optim.momentum"),
    ("optim.ema_decay=1.5", "optim.ema_decay"),
    ("sweep.lrs=[0.01, 0.01]", "sweep.lrs"),
    ("sweep.lrs=[]", "sweep.lrs"),
    ("objective=contrastive", "objective"),
    ("init.reset_head=maybe", "init.reset_head"),
])
def test_finetune_config_errors_name_the_field(override, field):
    with pytest.raises(ConfigError, match=f"^{field}: "):
        load_finetune_config(None, [*BASE, override])


@pytest.mark.parametrize(("overrides", "field"), [
    (["objective=masked_patch", "masked_patch.mask=0.95", "masked_patch.random=0.1"], "masked_patch.random"),
    (["objective=masked_patch", "masked_patch.ratio=0"], "masked_patch.ratio"),
    (["objective=masked_patch", "init.checkpoint=/x"], "init.checkpoint"),
    (["objective=masked_patch", "model.name=resnet-50"], "objective"),
])
def test_masked_patch_config_errors_name_the_field(overrides, field):
    with pytest.raises(ConfigError, match=f"^{field}: "):
        load_config(None, [*BASE, *overrides])


def test_masked_patch_defaults_are_the_papers():
    cfg = load_config(None, [*BASE, "objective=masked_patch"])
    assert (cfg.masked_patch.ratio, cfg.masked_patch.mask, cfg.masked_patch.random) == (0.5, 0.8, 0.1)


def test_pretraining_keeps_adamw_and_finetuning_defaults_to_the_papers_recipe():
    assert load_config(None, BASE).optim.name == "adamw"
    cfg = load_finetune_config(None, BASE)
    assert cfg.sweep.lrs == [0.003, 0.01, 0.03, 0.06]
    run = cfg.run_config(0.03)
    assert type(run).__name__ == "TrainConfig" and run.name == "finetune-lr0.03"
    assert (run.optim.name, run.optim.lr, run.optim.momentum, run.optim.weight_decay) == ("sgd", 0.03, 0.9, 0.0)
    assert (run.optim.grad_clip, run.schedule.global_batch_size, run.schedule.decay) == (1.0, 512, "cosine")
    assert run.optim.ema_decay == 0.0  # optional, off by default


def test_the_plan_builds_sgd_without_decay_and_a_cosine_schedule():
    run = load_finetune_config(None, [*BASE, "schedule.warmup=0 steps"]).run_config(0.01)
    model = vit_model.create_model("vit-pi/4", num_classes=10, image_size=32)
    optimizer = build_optimizer(model, run.optim)
    assert type(optimizer) is torch.optim.SGD
    assert all(g["momentum"] == 0.9 and g["weight_decay"] == 0.0 and not g["nesterov"]
               for g in optimizer.param_groups)
    assert sum(len(g["params"]) for g in optimizer.param_groups) == len(list(model.parameters()))
    total = 10
    scheduler = build_scheduler(optimizer, total_steps=total, warmup_steps=0, decay=run.schedule.decay)
    for step in range(total):
        expected = 0.01 * 0.5 * (1 + math.cos(math.pi * step / total))
        assert optimizer.param_groups[0]["lr"] == pytest.approx(expected)
        optimizer.step()
        scheduler.step()

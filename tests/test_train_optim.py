"""The optimisation recipe: decay on weights only, warm-up + decay schedule, global-norm clipping, batch split."""

import math

import pytest
import torch

import vit_model
from pipelines.train.config import load_config
from pipelines.train.optim import build_optimizer, build_scheduler, clip_grad_norm, lr_factor, split_batch


def _model():
    return vit_model.create_model("vit-pi/4", num_classes=10, image_size=32, head="mlp")


def test_weight_decay_only_on_weights():
    model = _model()
    optimizer = build_optimizer(model, load_config(None, ["data.num_classes=10"]).optim)
    decayed, exempt = optimizer.param_groups
    assert decayed["weight_decay"] == 0.1 and exempt["weight_decay"] == 0.0
    names = {id(p): n for n, p in model.named_parameters()}
    decayed_names = {names[id(p)] for p in decayed["params"]}
    exempt_names = {names[id(p)] for p in exempt["params"]}
    assert decayed_names | exempt_names == set(names.values()) and not decayed_names & exempt_names
    assert {"pos_embed", "cls_token", "blocks.0.norm1.weight", "blocks.0.attn.qkv.bias"} <= exempt_names
    weights = {"blocks.0.attn.qkv.weight", "patch_embed.proj.weight", "head.weight", "pre_logits.0.weight"}
    assert weights <= decayed_names
    assert all(model.get_parameter(n).ndim == 2 for n in decayed_names)


def test_adamw_recipe_defaults_and_decoupled_decay():
    model = torch.nn.Linear(4, 4)
    model.no_weight_decay = lambda: {"bias"}
    optim = load_config(None, ["data.num_classes=10"]).optim
    optimizer = build_optimizer(model, optim)
    assert optimizer.defaults["betas"] == (0.9, 0.999)
    before_w, before_b = model.weight.detach().clone(), model.bias.detach().clone()
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    optimizer.step()
    # zero gradient: only decoupled decay moves the weights (by lr * wd), and never the exempt bias
    torch.testing.assert_close(model.weight.detach(), before_w * (1 - optim.lr * optim.weight_decay))
    torch.testing.assert_close(model.bias.detach(), before_b)


@pytest.mark.parametrize("decay", ["linear", "cosine", "constant"])
def test_schedule_warms_up_linearly_then_decays(decay):
    total, warmup = 100, 10
    factors = [lr_factor(s, total_steps=total, warmup_steps=warmup, decay=decay) for s in range(total)]
    assert factors[:warmup] == pytest.approx([(s + 1) / warmup for s in range(warmup)])
    assert factors[warmup] == pytest.approx(1.0)
    if decay == "constant":
        assert factors[-1] == 1.0
        return
    assert all(a >= b for a, b in zip(factors[warmup:], factors[warmup + 1:]))
    assert lr_factor(total, total_steps=total, warmup_steps=warmup, decay=decay) == pytest.approx(0.0)
    middle = lr_factor(55, total_steps=total, warmup_steps=warmup, decay=decay)
    assert middle == pytest.approx(0.5 if decay == "linear" else 0.5 * (1 + math.cos(math.pi * 0.5)))


def test_scheduler_drives_the_optimizer_lr():
    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.5)
    scheduler = build_scheduler(optimizer, total_steps=10, warmup_steps=2, decay="linear")
    seen = []
    for _ in range(10):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert seen == pytest.approx([0.25, 0.5, 0.5, 0.4375, 0.375, 0.3125, 0.25, 0.1875, 0.125, 0.0625])


def test_clip_grad_norm_matches_torch():
    torch.manual_seed(0)
    a, b = [torch.nn.Parameter(torch.randn(5, 3)) for _ in range(2)], [torch.nn.Parameter(torch.randn(5, 3))
                                                                        for _ in range(2)]
    for x, y in zip(a, b):
        y.data.copy_(x.data)
        x.grad = torch.randn(5, 3) * 3
        y.grad = x.grad.clone()
    norm = clip_grad_norm(a, 1.0)
    expected = torch.nn.utils.clip_grad_norm_(b, 1.0)
    torch.testing.assert_close(norm, expected)
    for x, y in zip(a, b):
        torch.testing.assert_close(x.grad, y.grad)
    unclipped = [torch.nn.Parameter(torch.ones(2))]
    unclipped[0].grad = torch.full((2,), 10.0)
    assert clip_grad_norm(unclipped, 0.0).item() == pytest.approx(math.sqrt(200))
    assert unclipped[0].grad.tolist() == [10.0, 10.0]  # 0 disables clipping, the norm is still measured


def test_global_batch_splits_across_workers_and_micro_batches():
    cfg = load_config(None, ["data.num_classes=10", "schedule.global_batch_size=512", "scaling.num_workers=4",
                             "schedule.micro_batch_size=32"])
    split = split_batch(cfg.schedule, cfg.scaling.num_workers)
    assert (split.per_worker, split.micro, split.accumulation) == (128, 32, 4)
    assert split_batch(cfg.replace({"schedule.micro_batch_size": None}).schedule, 4).accumulation == 1

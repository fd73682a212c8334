"""Every registered model of every family: builds on the meta device with consistent accounting, and trains.

The ViT family's own forward/backward test is in test_vit_registry.py; here every other family runs forward and
backward on real tensors (shrunk where the name allows: fewer transformer blocks, at most x2 ResNet width).
"""

import pytest
import torch

import vit_model

ALL = vit_model.list_models()


def test_every_family_lists_models():
    families = {vit_model.family_of(name) for name in ALL}
    assert families == set(vit_model.list_families()) >= {"vit", "bit", "hybrid", "t2t"}


@pytest.mark.parametrize("name", ALL)
def test_builds_on_meta_with_consistent_shapes_and_flops(name):
    with torch.device("meta"):
        model = vit_model.create_model(name, num_classes=1000, image_size=224)
        features = model.forward_features(torch.empty(2, 3, 224, 224))
        pooled = model.forward_head(features, pre_logits=True)
        logits = model.forward_head(features)
    assert model.family == vit_model.family_of(name) and model.model_name == name
    assert pooled.shape == (2, model.num_features) and logits.shape == (2, 1000)
    assert sum(p.numel() for p in model.parameters()) > 1e5
    assert vit_model.forward_flops(model) == 2 * vit_model.forward_macs(model) > 1e8


def _training_case(name: str):
    cfg = vit_model.model_config(name)
    family = vit_model.family_of(name)
    overrides, slow = {}, False
    if family in ("hybrid", "t2t"):
        overrides["depth"] = 1 if family == "hybrid" else 2
    if family == "bit":
        overrides["width_factor"] = min(cfg.width_factor, 2)
        slow = cfg.depth > 50 or cfg.width_factor > 1
    stride = cfg.embed_stride
    size = stride * max(1, -(-32 // stride))  # the smallest multiple of the token stride >= 32 px
    return pytest.param(name, size, overrides, id=name, marks=[pytest.mark.slow] if slow else [])


def _distinct(names):
    """Aliases (``resnet-50`` is ``bit-r50x1``) once."""
    seen = []
    for name in names:
        key = (vit_model.family_of(name), vit_model.model_config(name))
        if key not in seen:
            seen.append(key)
            yield name


@pytest.mark.parametrize("name,size,overrides",
                         [_training_case(n) for n in _distinct(ALL) if vit_model.family_of(n) != "vit"])
def test_forward_backward_every_parameter_gets_a_gradient(name, size, overrides):
    model = vit_model.create_model(name, num_classes=5, image_size=size, **overrides).train()
    with torch.no_grad():
        model.head.weight.normal_(0, 0.02)  # a zero head passes no gradient back
    out = model(torch.randint(0, 256, (2, 3, size, size), dtype=torch.uint8))
    assert out.shape == (2, 5) and torch.isfinite(out).all()
    torch.nn.functional.cross_entropy(out, torch.tensor([0, 3])).backward()
    trained = {n: p for n, p in model.named_parameters() if p.requires_grad}
    no_grad = [n for n, p in trained.items()
               if p.grad is None or not torch.isfinite(p.grad).all() or p.grad.abs().sum() == 0]
    assert not no_grad
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
    assert all(model.get_parameter(n).grad is None for n in frozen)
    if vit_model.family_of(name) == "t2t":  # fixed sinusoid positions and Performer random features
        assert "pos_embed" in frozen


@pytest.mark.parametrize("name,overrides", [("bit-r50x1", {}), ("t2t-vit-7", {"depth": 1}),
                                            ("hybrid-r50+vit-pi/16", {"backbone_layers": (1, 1, 1), "depth": 1})])
def test_save_and_reload_gives_the_same_model(name, overrides, tmp_path):
    model = vit_model.create_model(name, num_classes=3, image_size=32, **overrides).eval()
    with torch.no_grad():
        model.head.weight.normal_(0, 0.02)
    vit_model.save_model(model, tmp_path)
    x = torch.randn(2, 3, 32, 32)
    for again in (vit_model.load_model(tmp_path), vit_model.load_pretrained(name, tmp_path, image_size=32)):
        assert again.config == model.config
        assert [n for n, p in again.named_parameters() if not p.requires_grad] == \
            [n for n, p in model.named_parameters() if not p.requires_grad]
        with torch.no_grad():
            assert torch.equal(again.eval()(x), model(x))

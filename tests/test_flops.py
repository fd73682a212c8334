"""FLOP accounting by formula, checked against torch's FlopCounterMode and timm's published GMACs."""

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import vit_model

# timm's model card figures (GMACs at the given resolution, 1000 classes).
PUBLISHED_GMACS = {
    ("vit-ti/16", 224): 1.26, ("vit-s/16", 224): 4.61, ("vit-b/16", 224): 17.58,
    ("vit-l/16", 224): 61.6, ("vit-h/14", 224): 167.4, ("vit-b/16", 384): 55.54,
}


@pytest.mark.parametrize("name,size", list(PUBLISHED_GMACS))
def test_formula_matches_published_gmacs(name, size):
    with torch.device("meta"):
        model = vit_model.create_model(name, image_size=size)
    gmacs = vit_model.forward_macs(model) / 1e9
    assert gmacs == pytest.approx(PUBLISHED_GMACS[(name, size)], rel=0.01)
    assert vit_model.forward_flops(model) == 2 * vit_model.forward_macs(model)


def _counted_flops(model, x):
    with FlopCounterMode(display=False) as counter:
        model(x)
    return counter.get_total_flops()


@pytest.mark.parametrize("name,size,overrides", [
    ("vit-ti/4", 32, {}),
    ("vit-pi/8", (32, 64), {"head": "mlp", "representation_size": 48}),
    ("vit-mu/4", 32, {"pool": "gap"}),
    ("vit-s/16", 224, {}),
])
def test_formula_matches_flop_counter(name, size, overrides):
    model = vit_model.create_model(name, num_classes=10, image_size=size, **overrides).eval()
    h, w = model.config.image_size
    with torch.no_grad():
        counted = _counted_flops(model, torch.randn(1, 3, h, w))
    assert vit_model.forward_flops(model) == pytest.approx(counted, rel=0.01)


def test_training_flops_is_three_forward_passes():
    assert vit_model.training_flops(2e9, 1000) == 3 * 2e9 * 1000


def test_flops_grow_with_resolution_quadratically_in_attention():
    small = vit_model.create_model("vit-pi/4", image_size=32)
    big = vit_model.create_model("vit-pi/4", image_size=64)
    assert vit_model.forward_macs(big) > 4 * vit_model.forward_macs(small) - 1e6

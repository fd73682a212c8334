"""BiT ResNet-v2: parameter counts and logits against timm's ResNetV2, FLOPs against FlopCounterMode, inputs."""

import copy
from functools import partial

import pytest
import timm
import torch
from timm.layers import StdConv2d
from timm.models.resnetv2 import ResNetV2 as TimmResNetV2
from torch.utils.flop_counter import FlopCounterMode

import vit_model

TIMM_BIT = {"bit-r50x1": "resnetv2_50x1_bit", "bit-r50x3": "resnetv2_50x3_bit", "bit-r101x1": "resnetv2_101x1_bit",
            "bit-r101x3": "resnetv2_101x3_bit", "bit-r152x2": "resnetv2_152x2_bit", "bit-r152x4": "resnetv2_152x4_bit"}
# BiT variants timm registers no name for: its ResNetV2 class with the arguments of its *_bit builders.
TIMM_LAYERS = {50: [3, 4, 6, 3], 101: [3, 4, 23, 3], 152: [3, 8, 36, 3]}


def _timm_bit(name: str, **kwargs) -> torch.nn.Module:
    if name in TIMM_BIT:
        return timm.create_model(TIMM_BIT[name], pretrained=False, **kwargs)
    cfg = vit_model.model_config(name)
    return TimmResNetV2(layers=TIMM_LAYERS[cfg.depth], width_factor=cfg.width_factor, stem_type="fixed",
                        conv_layer=partial(StdConv2d, eps=1e-8), **kwargs)


def _count(model) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name,num_classes", [
    ("bit-r50x1", 1000), ("bit-r50x1", 21843), ("bit-r50x2", 1000), ("bit-r50x3", 1000), ("bit-r101x1", 1000),
    ("bit-r101x3", 1000), ("bit-r152x1", 1000), ("bit-r152x2", 1000), ("bit-r152x4", 1000)])
def test_parameter_counts_equal_timm(name, num_classes):
    with torch.device("meta"):
        ours = vit_model.create_model(name, num_classes=num_classes)
        peer = _timm_bit(name, num_classes=num_classes)
    assert _count(ours) == _count(peer)


def _randomise(model: torch.nn.Module) -> None:
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.05)  # GroupNorm scales/offsets too, and the zero-initialised head


def _port_and_compare(name: str, tmp_path, size: int = 64) -> float:
    peer = _timm_bit(name, num_classes=7).eval()
    _randomise(peer)
    torch.save(peer.state_dict(), tmp_path / "timm.pth")
    ours = vit_model.load_pretrained(name, tmp_path / "timm.pth").eval()
    assert ours.config.num_classes == 7
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        diff = (ours(x) - peer(x)).abs().max().item()
        feats = ours.forward_head(ours.forward_features(x), pre_logits=True)
        peer_feats = peer.forward_head(peer.forward_features(x), pre_logits=True)
    assert (feats - peer_feats).abs().max().item() <= 1e-4
    return diff


def test_r50x1_logits_equal_timm(tmp_path):
    # 50 px: every stride-2 layer meets odd sizes, where padding conventions would show
    assert _port_and_compare("bit-r50x1", tmp_path, size=50) <= 1e-4


@pytest.mark.slow
@pytest.mark.parametrize("name", ["bit-r50x2", "bit-r101x1", "bit-r152x1"])
def test_deeper_and_wider_logits_equal_timm(name, tmp_path):
    assert _port_and_compare(name, tmp_path, size=32) <= 1e-4


def test_resnet_aliases_are_the_x1_bits():
    for depth in (50, 101, 152):
        assert vit_model.model_config(f"resnet-{depth}") == vit_model.model_config(f"bit-r{depth}x1")
    assert vit_model.family_of("resnet-50") == vit_model.family_of("bit-r152x2") == "bit"


def test_unknown_depth_names_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown ResNet depth 34; known: \[26, 50, 101, 152\]"):
        vit_model.create_model("bit-r34x1")


def _counted_macs(model, x) -> float:
    with FlopCounterMode(display=False) as counter:
        model(x)
    return counter.get_total_flops() / 2


@pytest.fixture(scope="module")
def bit_r50():
    """One small-input R50x1 for the tests below (construction dominates their cost)."""
    model = vit_model.create_model("bit-r50x1", num_classes=3, image_size=(50, 66)).eval()
    torch.nn.init.normal_(model.head.weight, std=0.01)
    return model


def test_macs_formula_matches_flop_counter(bit_r50):
    h, w = bit_r50.config.image_size  # non-square, odd sizes along the way
    with torch.no_grad():
        counted = _counted_macs(bit_r50, torch.randn(1, 3, h, w))
    assert vit_model.forward_macs(bit_r50) == pytest.approx(counted, rel=0.01)


@pytest.mark.parametrize("name", ["bit-r50x1", "bit-r152x2"])
def test_macs_formula_matches_flop_counter_at_224_on_meta(name):
    with torch.device("meta"):
        model = vit_model.create_model(name)
        counted = _counted_macs(model, torch.empty(1, 3, 224, 224))
    assert vit_model.forward_macs(model) == pytest.approx(counted, rel=0.01)


def test_uint8_images_and_patches_equal_normalised_images():
    model = vit_model.create_model("bit-r50x1", num_classes=3, image_size=64).eval()
    torch.nn.init.normal_(model.head.weight, std=0.01)
    pixels = torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8)
    normalised = (pixels.float() / 255 - 0.5) / 0.5  # BiT's mean = std = 0.5
    patches = vit_model.patchify(pixels, 32)  # the model's embed_stride
    with torch.no_grad():
        ref = model(normalised)
        torch.testing.assert_close(model(pixels), ref, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(model(patches), ref, atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match=r"expected patches \[B, 4, 3072\]"):
        model(vit_model.patchify(pixels, 16))
    model.reset_head(4)
    assert model.head.out_features == 4 and torch.count_nonzero(model(normalised)) == 0
    assert model.num_features == 2048 and model.config.num_classes == 4


def test_weight_decay_names(bit_r50):
    skip = bit_r50.no_weight_decay()
    assert {"norm.weight", "stages.0.blocks.0.norm1.bias", "head.bias"} <= skip
    assert "stem.conv.weight" not in skip and "head.weight" not in skip


def test_meta_build_then_materialise_and_init():
    with torch.device("meta"):
        meta = vit_model.create_model("bit-r50x1", num_classes=10, image_size=32)
    meta.to_empty(device="cpu")
    meta.init_weights()
    assert all(torch.isfinite(p).all() for p in meta.parameters())
    assert meta.stem.conv.weight.std() > 0 and torch.all(meta.norm.weight == 1)


def test_weight_standardisation_ignores_filter_scale_and_offset(bit_r50):
    model = copy.deepcopy(bit_r50)
    x = torch.randn(1, 3, 50, 66)
    with torch.no_grad():
        ref = model(x)
        model.stem.conv.weight.mul_(3.0).add_(0.7)  # each filter is standardised: the same outputs
        torch.testing.assert_close(model(x), ref, atol=1e-4, rtol=1e-4)

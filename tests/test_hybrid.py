"""Hybrids (ResNet feature map as the ViT's tokens): names, parameter counts and logits against timm, FLOPs."""

from functools import partial

import pytest
import timm
import torch
from timm.layers import HybridEmbed, StdConv2dSame
from timm.layers import resample_abs_pos_embed as timm_resample
from timm.models.resnetv2 import ResNetV2 as TimmResNetV2
from timm.models.vision_transformer import VisionTransformer as TimmViT
from torch.utils.flop_counter import FlopCounterMode

import vit_model

TIMM_HYBRIDS = {
    ("hybrid-r50+vit-b/16", 224): "vit_base_r50_s16_224", ("hybrid-r50+vit-b/16", 384): "vit_base_r50_s16_384",
    ("hybrid-r50+vit-l/32", 224): "vit_large_r50_s32_224", ("hybrid-r50+vit-l/32", 384): "vit_large_r50_s32_384",
    ("hybrid-r26+vit-s/32", 224): "vit_small_r26_s32_224", ("hybrid-r26+vit-b/32", 224): "vit_base_r26_s32_224",
}


def _count(model) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name,size", list(TIMM_HYBRIDS))
def test_parameter_counts_equal_timm(name, size):
    with torch.device("meta"):
        ours = vit_model.create_model(name, num_classes=1000, image_size=size)
        peer = timm.create_model(TIMM_HYBRIDS[(name, size)], pretrained=False, num_classes=1000)
    assert _count(ours) == _count(peer)


def test_names_follow_the_paper():
    b16 = vit_model.model_config("hybrid-r50+vit-b/16")
    assert (b16.width, b16.depth, b16.num_heads, b16.patch_size) == (768, 12, 12, 1)
    assert b16.backbone_layers == (3, 4, 9) and b16.embed_stride == 16 and b16.grid == (14, 14)
    l32 = vit_model.model_config("hybrid-r50x1+vit-l/32", image_size=384)
    assert l32.backbone_layers == (3, 4, 6, 3) and l32.embed_stride == 32 and l32.grid == (12, 12)
    assert vit_model.model_config("hybrid-r26+vit-s/16").backbone_layers == (2, 2, 4)
    with pytest.raises(ValueError, match=r"hybrids exist for ResNet depths \(26, 50\) at strides \(16, 32\)"):
        vit_model.model_config("hybrid-r50+vit-b/8")
    with pytest.raises(ValueError, match="image_size 200x200 is not divisible by the hybrid's stride 16"):
        vit_model.model_config("hybrid-r50+vit-b/16", image_size=200)


def _randomise(model: torch.nn.Module) -> None:
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.05)


def _port(peer, name, tmp_path, **overrides):
    torch.save(peer.state_dict(), tmp_path / "timm.pth")
    return vit_model.load_pretrained(name, tmp_path / "timm.pth", **overrides).eval()


def test_vit_base_r50_s16_logits_equal_timm(tmp_path):
    peer = timm.create_model("vit_base_r50_s16_224", pretrained=False, num_classes=10, img_size=64).eval()
    _randomise(peer)
    ours = _port(peer, "hybrid-r50+vit-b/16", tmp_path)
    assert ours.config.image_size == (64, 64) and ours.patch_embed.grid == (4, 4)  # inferred from the checkpoint
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert (ours(x) - peer(x)).abs().max().item() <= 1e-4


def _small_timm_hybrid(layers, img_size=64, **kwargs):
    """A timm hybrid built the way timm builds vit_*_r50_*: ResNetV2 without pre-activation, SAME padding."""
    backbone = TimmResNetV2(layers=layers, num_classes=0, global_pool="", preact=False, stem_type="same",
                            conv_layer=partial(StdConv2dSame, eps=1e-8))
    return TimmViT(img_size=img_size, patch_size=1, embed_dim=64, depth=2, num_heads=2, num_classes=5,
                   embed_layer=partial(HybridEmbed, backbone=backbone), **kwargs)


SMALL = {"width": 64, "depth": 2, "num_heads": 2, "mlp_dim": 256}


@pytest.mark.parametrize("layers,name,size", [((1, 1, 1), "hybrid-r50+vit-pi/16", 80),
                                               ((1, 1, 1, 1), "hybrid-r26+vit-pi/32", 96)])
def test_small_hybrids_logits_equal_timm(layers, name, size, tmp_path):
    peer = _small_timm_hybrid(layers, img_size=size).eval()
    _randomise(peer)
    ours = _port(peer, name, tmp_path, backbone_layers=layers, **SMALL)
    assert ours.config.image_size == (size, size)
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        assert (ours(x) - peer(x)).abs().max().item() <= 1e-4


def test_other_resolution_resamples_like_timm(tmp_path):
    peer = _small_timm_hybrid((1, 1, 1)).eval()
    _randomise(peer)
    ours = _port(peer, "hybrid-r50+vit-pi/16", tmp_path, image_size=128, backbone_layers=(1, 1, 1), **SMALL)
    assert ours.patch_embed.grid == (8, 8) and ours.pos_embed.shape == (1, 65, 64)
    expected = timm_resample(peer.pos_embed.detach(), (8, 8), num_prefix_tokens=1, interpolation="bicubic",
                             antialias=False)
    assert (ours.pos_embed - expected).abs().max().item() <= 1e-6


def _counted_macs(model, x) -> float:
    with FlopCounterMode(display=False) as counter:
        model(x)
    return counter.get_total_flops() / 2


def test_macs_formula_matches_flop_counter():
    model = vit_model.create_model("hybrid-r50+vit-pi/16", num_classes=10, image_size=(96, 64),
                                   backbone_layers=(1, 1, 1), head="mlp").eval()
    with torch.no_grad():
        counted = _counted_macs(model, torch.randn(1, 3, 96, 64))
    assert vit_model.forward_macs(model) == pytest.approx(counted, rel=0.01)


@pytest.mark.parametrize("name,size", [("hybrid-r50+vit-b/16", 224), ("hybrid-r50+vit-l/32", 384)])
def test_macs_formula_matches_flop_counter_on_meta(name, size):
    with torch.device("meta"):
        model = vit_model.create_model(name, image_size=size)
        counted = _counted_macs(model, torch.empty(1, 3, size, size))
    assert vit_model.forward_macs(model) == pytest.approx(counted, rel=0.01)


def test_inputs_image_size_change_and_meta_init():
    model = vit_model.create_model("hybrid-r50+vit-pi/16", num_classes=3, image_size=32, backbone_layers=(1, 1, 1))
    model.eval()
    torch.nn.init.normal_(model.head.weight, std=0.02)
    pixels = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    with torch.no_grad():
        ref = model(pixels.float() / 127.5 - 1.0)  # mean = std = 0.5
        torch.testing.assert_close(model(pixels), ref, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(model(vit_model.patchify(pixels, 16)), ref, atol=1e-4, rtol=1e-4)
        with pytest.raises(ValueError, match="call set_image_size first"):
            model(torch.randn(1, 3, 64, 64))
        model.set_image_size(64)
        assert model.patch_embed.grid == (4, 4) and model(torch.randn(1, 3, 64, 64)).shape == (1, 3)
    assert "pos_embed" in model.no_weight_decay()
    with torch.device("meta"):
        meta = vit_model.create_model("hybrid-r50+vit-pi/16", image_size=32, backbone_layers=(1, 1, 1))
    meta.to_empty(device="cpu")
    meta.init_weights()
    assert all(torch.isfinite(p).all() for p in meta.parameters())

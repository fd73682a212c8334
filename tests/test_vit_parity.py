"""Acceptance: randomly initialised torchvision and timm ViTs ported into ours give the same logits (fp32)."""

import pytest
import timm
import torch
import torchvision

import vit_model


def _randomise(model: torch.nn.Module) -> None:
    # Peers zero-init heads and some biases; random values everywhere make the comparison meaningful.
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.05)


def _port(peer: torch.nn.Module, name: str, tmp_path, **kwargs):
    path = tmp_path / "peer.pth"
    torch.save(peer.state_dict(), path)
    return vit_model.load_pretrained(name, path, **kwargs).eval()


def test_torchvision_vit_b_16_parity(tmp_path):
    peer = torchvision.models.vit_b_16(num_classes=10).eval()
    _randomise(peer)
    ours = _port(peer, "vit-b/16", tmp_path)
    assert ours.config.num_classes == 10 and ours.config.image_size == (224, 224)
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        diff = (ours(x) - peer(x)).abs().max().item()
    assert diff <= 1e-4


def test_torchvision_pre_logits_head_parity(tmp_path):
    peer = torchvision.models.VisionTransformer(
        image_size=32, patch_size=4, num_layers=12, num_heads=3, hidden_dim=192, mlp_dim=768,
        num_classes=5, representation_size=96,
    ).eval()
    _randomise(peer)
    ours = _port(peer, "vit-ti/4", tmp_path)
    assert ours.config.head == "mlp" and ours.config.representation_size == 96
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        assert (ours(x) - peer(x)).abs().max().item() <= 1e-4


TIMM_CONFIGS = {
    "class-token": ("vit-s/16", dict(img_size=64, patch_size=16, embed_dim=384, depth=12, num_heads=6)),
    "gap-paper": ("vit-ti/8", dict(img_size=64, patch_size=8, embed_dim=192, depth=12, num_heads=3,
                                   global_pool="avg", class_token=False, fc_norm=False)),
    "gap-fc-norm": ("vit-ti/8", dict(img_size=64, patch_size=8, embed_dim=192, depth=12, num_heads=3,
                                     global_pool="avg")),
}


@pytest.mark.parametrize("case", list(TIMM_CONFIGS))
def test_timm_vit_parity(case, tmp_path):
    name, kwargs = TIMM_CONFIGS[case]
    peer = timm.models.vision_transformer.VisionTransformer(num_classes=11, **kwargs).eval()
    _randomise(peer)
    ours = _port(peer, name, tmp_path)
    assert ours.config.pool == ("token" if case == "class-token" else "gap")
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        diff = (ours(x) - peer(x)).abs().max().item()
        feats = ours.forward_head(ours.forward_features(x), pre_logits=True)
        peer_feats = peer.forward_head(peer.forward_features(x), pre_logits=True)
    assert diff <= 1e-4
    assert (feats - peer_feats).abs().max().item() <= 1e-4


def test_timm_checkpoint_at_other_resolution_is_resampled(tmp_path):
    peer = timm.models.vision_transformer.VisionTransformer(
        img_size=32, patch_size=4, embed_dim=192, depth=12, num_heads=3, num_classes=4)
    ours = _port(peer, "vit-ti/4", tmp_path, image_size=64)
    assert ours.pos_embed.shape == (1, 1 + 16 * 16, 192)
    assert torch.equal(ours.pos_embed[:, 0], peer.pos_embed[:, 0].detach())
    assert ours(torch.randn(1, 3, 64, 64)).shape == (1, 4)

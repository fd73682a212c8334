"""The ViT variant table, the registry's errors and every registered model's forward/backward."""

import pytest
import timm
import torch

import vit_model

PUBLISHED_PARAMS = {
    "vit-b/16": 86_567_656, "vit-l/16": 304_326_632, "vit-h/14": 632_045_800,
    "vit-s/16": 22_050_664, "vit-ti/16": 5_717_416,
}
TIMM_NAMES = {"vit-ti/16": "vit_tiny_patch16_224", "vit-s/16": "vit_small_patch16_224",
              "vit-b/16": "vit_base_patch16_224", "vit-l/16": "vit_large_patch16_224",
              "vit-h/14": "vit_huge_patch14_224"}


def _count(model):
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", list(PUBLISHED_PARAMS))
def test_parameter_counts(name):
    with torch.device("meta"):
        ours = vit_model.create_model(name, num_classes=1000, image_size=224)
        peer = timm.create_model(TIMM_NAMES[name], pretrained=False, num_classes=1000)
    assert _count(ours) == PUBLISHED_PARAMS[name] == _count(peer)


def test_variant_table_matches_paper():
    expected = {"ti": (192, 12, 768, 3), "s": (384, 12, 1536, 6), "b": (768, 12, 3072, 12),
                "l": (1024, 24, 4096, 16), "h": (1280, 32, 5120, 16)}
    for size, (width, depth, mlp, heads) in expected.items():
        cfg = vit_model.model_config(f"vit-{size}/16")
        assert (cfg.width, cfg.depth, cfg.mlp_dim, cfg.num_heads) == (width, depth, mlp, heads)


def test_any_patch_size_and_case_insensitive():
    cfg = vit_model.model_config("ViT-B/7", image_size=28)
    assert cfg.patch_size == 7 and cfg.grid == (4, 4)


def test_unknown_name_lists_known_models():
    with pytest.raises(ValueError, match=r"unknown model 'vit-xl/16'.*vit-b/16"):
        vit_model.create_model("vit-xl/16")


def test_inconsistent_shapes_name_the_values():
    with pytest.raises(ValueError, match="image_size 30x30 is not divisible by patch_size 4"):
        vit_model.create_model("vit-ti/4", image_size=30)
    with pytest.raises(ValueError, match="width 100 is not divisible by num_heads 3"):
        vit_model.create_model("vit-ti/4", image_size=32, width=100)
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['depht'\]"):
        vit_model.create_model("vit-ti/4", image_size=32, depht=3)


def _small_size(name):
    cfg = vit_model.model_config(name)
    p = getattr(cfg, "patch_size", 16) or 16
    return p * max(2, -(-32 // p))  # the smallest multiple of the patch size that is >= 32 (and >= 2 patches)


@pytest.mark.parametrize("name", [n for n in vit_model.list_models() if vit_model.family_of(n) == "vit"])
def test_every_registered_vit_trains(name):
    overrides = {}
    if vit_model.model_config(name).width >= 1024:
        overrides = {"depth": 2}  # L and H: same blocks, fewer of them, to keep the test fast
    model = vit_model.create_model(name, num_classes=5, image_size=_small_size(name), head="mlp", **overrides)
    model.train()
    with torch.no_grad():
        model.head.weight.normal_(0, 0.02)  # zero heads pass no gradient back
    size = model.config.image_size
    out = model(torch.randint(0, 256, (2, 3, *size), dtype=torch.uint8))
    assert out.shape == (2, 5) and torch.isfinite(out).all()
    torch.nn.functional.cross_entropy(out, torch.tensor([0, 3])).backward()
    no_grad = [n for n, p in model.named_parameters()
               if p.grad is None or not torch.isfinite(p.grad).all() or p.grad.abs().sum() == 0]
    assert not no_grad


def test_no_weight_decay_names():
    model = vit_model.create_model("vit-pi/4", image_size=32, num_classes=3)
    skip = model.no_weight_decay()
    assert {"pos_embed", "cls_token", "norm.weight", "blocks.0.attn.qkv.bias"} <= skip
    assert "blocks.0.attn.qkv.weight" not in skip and "head.weight" not in skip


def test_reset_head_is_zero_linear_and_logits_start_at_zero():
    model = vit_model.create_model("vit-pi/4", image_size=32, num_classes=100, head="mlp")
    model.reset_head(7)
    assert isinstance(model.pre_logits, torch.nn.Identity)
    out = model(torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8))
    assert out.shape == (2, 7) and torch.count_nonzero(out) == 0


def test_meta_build_then_materialise_and_init():
    with torch.device("meta"):
        model = vit_model.create_model("vit-pi/4", image_size=32, num_classes=3)
    model.to_empty(device="cpu")
    model.init_weights()
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert model.pos_embed.std().item() == pytest.approx(0.02, rel=0.2)


def test_stochastic_depth_and_dropout_only_in_training():
    model = vit_model.create_model("vit-pi/4", image_size=32, num_classes=3, drop_path=0.5, dropout=0.3)
    torch.nn.init.normal_(model.head.weight)
    x = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    model.eval()
    assert torch.equal(model(x), model(x))
    model.train()
    assert not torch.equal(model(x), model(x))

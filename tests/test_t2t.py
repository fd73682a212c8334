"""T2T-ViT: published sizes and MACs, FLOPs against FlopCounterMode, and the official checkpoint layout.

No package ships T2T-ViT, so the official checkpoint test computes the authors' forward pass functionally from
their raw state-dict keys (yitu-opensource/T2T-ViT: models/t2t_vit.py, token_performer.py, token_transformer.py,
transformer_block.py) and compares it with our model loaded through ``load_pretrained``.
"""

import math

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

import vit_model

# The official README's #params (M) and MACs (G) at 224 px, 1000 classes. Published figures are rounded to 0.1; for
# the three lite models we match the rounding interval (+-0.05 G), for the others within 2%.
PUBLISHED = {
    "t2t-vit-7": (4.3, 1.1), "t2t-vit-10": (5.9, 1.5), "t2t-vit-12": (6.9, 1.8),
    "t2t-vit-14": (21.5, 4.8), "t2t-vit-19": (39.2, 8.5), "t2t-vit-24": (64.1, 13.8),
    "t2t-vit_t-14": (21.5, 6.1), "t2t-vit_t-19": (39.2, 9.8), "t2t-vit_t-24": (64.1, 15.0),
}
LITE = ("t2t-vit-7", "t2t-vit-10", "t2t-vit-12")


def _counted_macs(model, x) -> float:
    with FlopCounterMode(display=False) as counter:
        model(x)
    return counter.get_total_flops() / 2


@pytest.mark.parametrize("name", list(PUBLISHED))
def test_published_parameters_and_macs(name):
    params, gmacs = PUBLISHED[name]
    with torch.device("meta"):
        model = vit_model.create_model(name, num_classes=1000, image_size=224)
        counted = _counted_macs(model, torch.empty(1, 3, 224, 224))
    count = sum(p.numel() for p in model.parameters())  # incl. the fixed position embedding, as published
    assert abs(count / 1e6 - params) <= 0.1
    macs = vit_model.forward_macs(model)
    if name in LITE:
        assert abs(macs / 1e9 - gmacs) < 0.05
    else:
        assert macs / 1e9 == pytest.approx(gmacs, rel=0.02)
    assert macs == pytest.approx(counted, rel=0.01)


@pytest.mark.parametrize("name", ["t2t-vit-7", "t2t-vit_t-7"])
def test_macs_formula_matches_flop_counter_on_cpu(name):
    model = vit_model.create_model(name, num_classes=10, image_size=(64, 48), depth=2).eval()
    with torch.no_grad():
        counted = _counted_macs(model, torch.randn(1, 3, 64, 48))
    assert vit_model.forward_macs(model) == pytest.approx(counted, rel=0.01)


def test_names_and_configuration():
    cfg = vit_model.model_config("t2t-vit-14")
    assert (cfg.width, cfg.depth, cfg.num_heads, cfg.mlp_dim, cfg.tokens_type) == (384, 14, 6, 1152, "performer")
    assert not cfg.qkv_bias and cfg.token_dim == 64 and cfg.embed_stride == 16
    assert vit_model.model_config("t2t-vit_t-24").tokens_type == "transformer"
    with pytest.raises(ValueError, match=r"unknown T2T-ViT depth 13; known: \[7, 10, 12, 14, 19, 24\]"):
        vit_model.create_model("t2t-vit-13")
    with pytest.raises(ValueError, match="fix patch_size"):
        vit_model.create_model("t2t-vit-7", patch_size=8)


def test_position_embedding_is_the_fixed_sinusoid():
    model = vit_model.create_model("t2t-vit-7", image_size=32, num_classes=3, depth=1)
    pe = model.pos_embed[0]
    assert pe.shape == (1 + 4, 256) and not model.pos_embed.requires_grad
    for pos, i in [(0, 0), (3, 10), (4, 255), (2, 101)]:
        angle = pos / 10000 ** (2 * (i // 2) / 256)
        assert pe[pos, i].item() == pytest.approx(math.sin(angle) if i % 2 == 0 else math.cos(angle), abs=1e-6)


def test_token_counts_follow_the_soft_splits():
    model = vit_model.create_model("t2t-vit_t-7", image_size=(64, 96), num_classes=3, depth=1)
    tokens = model.patch_embed(torch.randn(2, 3, 64, 96))
    assert tokens.shape == (2, 4 * 6, 256) and model.pos_embed.shape == (1, 1 + 24, 256)
    model.set_image_size(32)
    assert model.patch_embed.grid == (2, 2) and not model.pos_embed.requires_grad
    assert model(torch.randint(0, 256, (1, 3, 32, 32), dtype=torch.uint8)).shape == (1, 3)


# --- the official checkpoint layout -----------------------------------------------------------------------------

def _official_state(tokens_type: str, width: int, depth: int, mlp: int, classes: int, grid: int) -> dict:
    """Random weights under the authors' parameter names (T2T_ViT with token_dim 64)."""
    g = torch.Generator().manual_seed(1)
    sd = {}

    def linear(name, fan_in, fan_out, bias=True):
        sd[f"{name}.weight"] = torch.randn(fan_out, fan_in, generator=g) * fan_in ** -0.5
        if bias:
            sd[f"{name}.bias"] = torch.randn(fan_out, generator=g) * 0.02

    def norm(name, dim):
        sd[f"{name}.weight"] = 1 + 0.1 * torch.randn(dim, generator=g)
        sd[f"{name}.bias"] = 0.1 * torch.randn(dim, generator=g)

    for index, in_dim in ((1, 3 * 7 * 7), (2, 64 * 3 * 3)):
        p = f"tokens_to_token.attention{index}"
        norm(f"{p}.norm1", in_dim)
        norm(f"{p}.norm2", 64)
        if tokens_type == "transformer":
            linear(f"{p}.attn.qkv", in_dim, 3 * 64, bias=False)
            linear(f"{p}.attn.proj", 64, 64)
            linear(f"{p}.mlp.fc1", 64, 64)
            linear(f"{p}.mlp.fc2", 64, 64)
        else:
            linear(f"{p}.kqv", in_dim, 3 * 64)
            linear(f"{p}.proj", 64, 64)
            linear(f"{p}.mlp.0", 64, 64)
            linear(f"{p}.mlp.2", 64, 64)
            sd[f"{p}.w"] = torch.linalg.qr(torch.randn(64, 32, generator=g))[0].t() * math.sqrt(32)
    linear("tokens_to_token.project", 64 * 9, width)
    sd["cls_token"] = torch.randn(1, 1, width, generator=g) * 0.02
    sd["pos_embed"] = torch.randn(1, 1 + grid * grid, width, generator=g) * 0.1
    for i in range(depth):
        norm(f"blocks.{i}.norm1", width)
        linear(f"blocks.{i}.attn.qkv", width, 3 * width, bias=False)
        linear(f"blocks.{i}.attn.proj", width, width)
        norm(f"blocks.{i}.norm2", width)
        linear(f"blocks.{i}.mlp.fc1", width, mlp)
        linear(f"blocks.{i}.mlp.fc2", mlp, width)
    norm("norm", width)
    linear("head", width, classes)
    return sd


def _official_forward(sd: dict, x: torch.Tensor, tokens_type: str, heads: int, depth: int) -> torch.Tensor:
    """The authors' T2T_ViT.forward written out with plain tensor operations on their state dict."""
    def ln(t, p):
        return F.layer_norm(t, t.shape[-1:], sd[f"{p}.weight"], sd[f"{p}.bias"], eps=1e-5)

    def lin(t, p):
        return F.linear(t, sd[f"{p}.weight"], sd.get(f"{p}.bias"))

    def token_layer(t, p):
        y = ln(t, f"{p}.norm1")
        if tokens_type == "transformer":  # Token_transformer: scale from the input width, skip through v
            q, k, v = lin(y, f"{p}.attn.qkv").chunk(3, dim=-1)
            attn = ((q * y.shape[-1] ** -0.5) @ k.transpose(-2, -1)).softmax(dim=-1)
            t = v + lin(attn @ v, f"{p}.attn.proj")
            return t + lin(F.gelu(lin(ln(t, f"{p}.norm2"), f"{p}.mlp.fc1")), f"{p}.mlp.fc2")
        k, q, v = lin(y, f"{p}.kqv").chunk(3, dim=-1)  # Token_performer: k, q, v in this order
        w = sd[f"{p}.w"]

        def prm_exp(z):
            return torch.exp(torch.einsum("bti,mi->btm", z, w) - (z * z).sum(-1, keepdim=True) / 2) / math.sqrt(
                w.shape[0])

        kp, qp = prm_exp(k), prm_exp(q)
        d = torch.einsum("bti,bi->bt", qp, kp.sum(dim=1)).unsqueeze(2)
        kptv = torch.einsum("bin,bim->bnm", v, kp)
        t = v + lin(torch.einsum("bti,bni->btn", qp, kptv) / (d + 1e-8), f"{p}.proj")
        return t + lin(F.gelu(lin(ln(t, f"{p}.norm2"), f"{p}.mlp.0")), f"{p}.mlp.2")

    b = x.shape[0]
    t = token_layer(F.unfold(x, 7, stride=4, padding=2).transpose(1, 2), "tokens_to_token.attention1")
    side = math.isqrt(t.shape[1])
    t = F.unfold(t.transpose(1, 2).reshape(b, -1, side, side), 3, stride=2, padding=1).transpose(1, 2)
    t = token_layer(t, "tokens_to_token.attention2")
    side = math.isqrt(t.shape[1])
    t = F.unfold(t.transpose(1, 2).reshape(b, -1, side, side), 3, stride=2, padding=1).transpose(1, 2)
    t = lin(t, "tokens_to_token.project")
    t = torch.cat([sd["cls_token"].expand(b, -1, -1), t], dim=1) + sd["pos_embed"]
    for i in range(depth):
        y = ln(t, f"blocks.{i}.norm1")
        n, c = y.shape[1], y.shape[2]
        q, k, v = lin(y, f"blocks.{i}.attn.qkv").reshape(b, n, 3, heads, c // heads).permute(2, 0, 3, 1, 4)
        attn = ((q @ k.transpose(-2, -1)) * (c // heads) ** -0.5).softmax(dim=-1)
        t = t + lin((attn @ v).transpose(1, 2).reshape(b, n, c), f"blocks.{i}.attn.proj")
        t = t + lin(F.gelu(lin(ln(t, f"blocks.{i}.norm2"), f"blocks.{i}.mlp.fc1")), f"blocks.{i}.mlp.fc2")
    return lin(ln(t, "norm")[:, 0], "head")


@pytest.mark.parametrize("name,tokens_type", [("t2t-vit-7", "performer"), ("t2t-vit_t-7", "transformer")])
def test_official_checkpoint_gives_the_authors_logits(name, tokens_type, tmp_path):
    sd = _official_state(tokens_type, width=256, depth=2, mlp=512, classes=6, grid=3)
    # a training checkpoint as the authors' timm scripts save it; the EMA weights are the ones released
    zeros = {k: torch.zeros_like(v) for k, v in sd.items()}
    torch.save({"epoch": 300, "state_dict": zeros, "state_dict_ema": sd}, tmp_path / "T2T_ViT_7.pth.tar")
    model = vit_model.load_pretrained(name, tmp_path / "T2T_ViT_7.pth.tar", depth=2).eval()
    assert model.config.image_size == (48, 48) and model.config.num_classes == 6
    x = torch.randn(2, 3, 48, 48)
    with torch.no_grad():
        expected = _official_forward(sd, x, tokens_type, heads=4, depth=2)
        assert (model(x) - expected).abs().max().item() <= 1e-4


def test_performer_checkpoint_into_transformer_name_names_the_keys(tmp_path):
    torch.save(_official_state("performer", 256, 1, 512, 3, 2), tmp_path / "performer.pth")
    with pytest.raises(vit_model.CheckpointError, match=r"missing keys \[.*patch_embed\.attention1\.qkv\.weight"):
        vit_model.load_pretrained("t2t-vit_t-7", tmp_path / "performer.pth", depth=1)

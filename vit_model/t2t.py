"""Tokens-to-Token ViT (Yuan et al., 2021), as in the authors' code (yitu-opensource/T2T-ViT).

The T2T module soft-splits the image into overlapping 7x7 patches (stride 4), then twice re-structures the tokens
into an image and soft-splits again (3x3, stride 2), with a small token layer of width 64 before each re-structuring;
a linear layer projects the final tokens (stride 16) to the backbone's width. The backbone is a deep-narrow ViT
(pre-norm blocks without qkv bias, MLP ratio 2-3) with a class token and a fixed sinusoidal position embedding.

Names: ``t2t-vit-7`` ... ``t2t-vit-24`` use the Performer token layer (the paper's T2T-ViT); ``t2t-vit_t-14`` ...
use the Transformer token layer (the paper's T2T-ViT_t), exactly the two ``tokens_type`` of the official code.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .flops import attention_macs, linear_macs
from .image_input import images_from_input
from .layers import Mlp
from .loading.formats import IMAGENET_MEAN, IMAGENET_STD
from .registry import register_family
from .vit import VisionTransformer, ViTConfig

# depth: (width, depth, mlp_dim, num_heads) of the official t2t_vit_<depth> (and t2t_vit_t_<depth>)
T2T_SIZES: dict[int, tuple[int, int, int, int]] = {
    7: (256, 7, 512, 4), 10: (256, 10, 512, 4), 12: (256, 12, 512, 4),
    14: (384, 14, 1152, 6), 19: (448, 19, 1344, 7), 24: (512, 24, 1536, 8),
}
TOKENS_TYPES = ("performer", "transformer")
T2T_STRIDE = 16  # soft splits of stride 4, 2 and 2
PERFORMER_KERNEL_RATIO = 0.5  # random features per token-layer width


@dataclass
class T2TConfig(ViTConfig):
    """A ViT config plus the T2T module's settings; the defaults are the official code's."""

    patch_size: int = T2T_STRIDE  # not a patch: the stride of one token, fixed by the soft splits
    qkv_bias: bool = False
    norm_eps: float = 1e-5  # torch's LayerNorm default, as the official code uses
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    tokens_type: str = "performer"  # the T2T token layer: "performer" (T2T-ViT) or "transformer" (T2T-ViT_t)
    token_dim: int = 64
    performer_dropout: float = 0.1  # the official Token_performer's dropouts (dp1, dp2); training only

    def validate(self) -> None:
        super().validate()
        if self.patch_size != T2T_STRIDE:
            raise ValueError(f"T2T-ViT's soft splits fix patch_size (token stride) at {T2T_STRIDE}, "
                             f"got {self.patch_size}")
        if self.tokens_type not in TOKENS_TYPES:
            raise ValueError(f"tokens_type must be one of {TOKENS_TYPES}, got {self.tokens_type!r}")
        if not self.class_token:
            raise ValueError("T2T-ViT needs its class token (pool='token')")
        if not 0.0 <= self.performer_dropout < 1.0:
            raise ValueError(f"performer_dropout must be in [0, 1), got {self.performer_dropout}")

    @property
    def embed_stride(self) -> int:
        return T2T_STRIDE


def sinusoid_table(positions: int, dim: int) -> torch.Tensor:
    """The fixed position embedding ``[1, positions, dim]``: sin on even, cos on odd channels (float64 maths)."""
    pos = np.arange(positions, dtype=np.float64)[:, None]
    angle = pos / np.power(10000.0, 2 * (np.arange(dim) // 2) / dim)[None, :]
    angle[:, 0::2], angle[:, 1::2] = np.sin(angle[:, 0::2]), np.cos(angle[:, 1::2])
    return torch.from_numpy(angle).float().unsqueeze(0)


class TokenTransformer(nn.Module):
    """One-head attention that changes the width from ``in_dim`` to ``dim``; its skip connection is ``v``.

    As in the official code, the query-key scale is ``in_dim ** -0.5`` (the input width, not the head width).
    """

    def __init__(self, in_dim: int, dim: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(in_dim)
        self.qkv = nn.Linear(in_dim, 3 * dim, bias=False)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, dim)
        self.scale = in_dim ** -0.5

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv(self.norm1(x)).unsqueeze(1).chunk(3, dim=-1)  # [B, 1 head, N, dim] each
        x = (v + self.proj(F.scaled_dot_product_attention(q, k, v, scale=self.scale))).squeeze(1)
        return x + self.mlp(self.norm2(x))

    def macs(self, tokens: int) -> int:
        in_dim, dim = self.qkv.in_features, self.proj.out_features
        return (linear_macs(tokens, in_dim, 3 * dim) + attention_macs(tokens, dim) + linear_macs(tokens, dim, dim)
                + 2 * linear_macs(tokens, dim, dim))


class TokenPerformer(nn.Module):
    """Performer attention (positive random features of the softmax kernel), linear in the number of tokens.

    ``kqv`` keeps the official order (keys, queries, values); the random projection ``random_features`` is fixed
    (not trained). The kernel features are computed in float32 for stability under reduced precision.
    """

    def __init__(self, in_dim: int, dim: int, dropout: float = 0.1):
        super().__init__()
        self.dim = dim
        self.num_features = int(dim * PERFORMER_KERNEL_RATIO)
        self.norm1 = nn.LayerNorm(in_dim)
        self.kqv = nn.Linear(in_dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.attn_drop = nn.Dropout(dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, dim)
        self.mlp_drop = nn.Dropout(dropout)
        self.random_features = nn.Parameter(torch.empty(self.num_features, dim), requires_grad=False)
        self.eps = 1e-8

    def _kernel(self, x: torch.Tensor) -> torch.Tensor:
        """exp(w.x - |x|^2 / 2) / sqrt(m): ``[B, N, dim]`` -> ``[B, N, m]``."""
        x = x.float()
        wx = x @ self.random_features.float().t()
        return torch.exp(wx - (x * x).sum(dim=-1, keepdim=True) / 2) / math.sqrt(self.num_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k, q, v = self.kqv(self.norm1(x)).split(self.dim, dim=-1)
        kp, qp = self._kernel(k), self._kernel(q)
        normaliser = qp @ kp.sum(dim=1).unsqueeze(-1)  # [B, N, 1]
        kv = v.float().transpose(1, 2) @ kp  # [B, dim, m]
        y = (qp @ kv.transpose(1, 2)) / (normaliser + self.eps)
        x = v + self.attn_drop(self.proj(y.to(v.dtype)))
        return x + self.mlp_drop(self.mlp(self.norm2(x)))

    def macs(self, tokens: int) -> int:
        in_dim, dim, m = self.kqv.in_features, self.dim, self.num_features
        kernel = 2 * linear_macs(tokens, dim, m)  # keys and queries through the random features
        attention = tokens * m + 2 * linear_macs(tokens, dim, m)  # normaliser, K'^T V and Q'(K'^T V)
        return (linear_macs(tokens, in_dim, 3 * dim) + kernel + attention + linear_macs(tokens, dim, dim)
                + 2 * linear_macs(tokens, dim, dim))

    @torch.no_grad()
    def init_random_features(self) -> None:
        """Orthogonal random features scaled by sqrt(m), as in the official code."""
        if self.random_features.is_meta:
            return
        nn.init.orthogonal_(self.random_features)
        self.random_features.mul_(math.sqrt(self.num_features))


class TokensToToken(nn.Module):
    """The T2T module: soft split (7/4), token layer, re-structure, soft split (3/2), twice, then project."""

    def __init__(self, cfg: T2TConfig):
        super().__init__()
        self.in_chans, self.mean, self.std = cfg.in_chans, cfg.mean, cfg.std
        self.soft_split0 = nn.Unfold(kernel_size=7, stride=4, padding=2)
        self.soft_split1 = nn.Unfold(kernel_size=3, stride=2, padding=1)
        self.soft_split2 = nn.Unfold(kernel_size=3, stride=2, padding=1)
        if cfg.tokens_type == "performer":
            self.attention1 = TokenPerformer(cfg.in_chans * 7 * 7, cfg.token_dim, cfg.performer_dropout)
            self.attention2 = TokenPerformer(cfg.token_dim * 3 * 3, cfg.token_dim, cfg.performer_dropout)
        else:
            self.attention1 = TokenTransformer(cfg.in_chans * 7 * 7, cfg.token_dim)
            self.attention2 = TokenTransformer(cfg.token_dim * 3 * 3, cfg.token_dim)
        self.project = nn.Linear(cfg.token_dim * 3 * 3, cfg.width)
        self.grid = cfg.grid

    @property
    def num_patches(self) -> int:
        return self.grid[0] * self.grid[1]

    def set_image_size(self, image_size: tuple[int, int]) -> None:
        self.grid = (image_size[0] // T2T_STRIDE, image_size[1] // T2T_STRIDE)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = images_from_input(x, in_chans=self.in_chans, mean=self.mean, std=self.std, patch_size=T2T_STRIDE,
                              grid=self.grid, dtype=self.project.weight.dtype)
        h, w = self.grid
        if tuple(x.shape[2:]) != (h * T2T_STRIDE, w * T2T_STRIDE):
            raise ValueError(f"images of {x.shape[2]}x{x.shape[3]} do not match the model's "
                             f"{h * T2T_STRIDE}x{w * T2T_STRIDE}; call set_image_size first")
        x = self.attention1(self.soft_split0(x).transpose(1, 2))  # [B, (H/4)(W/4), token_dim]
        x = self.soft_split1(x.transpose(1, 2).reshape(x.shape[0], -1, 4 * h, 4 * w)).transpose(1, 2)
        x = self.attention2(x)  # [B, (H/8)(W/8), token_dim]
        x = self.soft_split2(x.transpose(1, 2).reshape(x.shape[0], -1, 2 * h, 2 * w)).transpose(1, 2)
        return self.project(x)

    def forward_macs(self) -> int:
        n = self.num_patches
        return (self.attention1.macs(16 * n) + self.attention2.macs(4 * n)
                + linear_macs(n, self.project.in_features, self.project.out_features))

    @torch.no_grad()
    def init_weights(self) -> None:
        _trunc_normal_linears(self)
        for layer in (self.attention1, self.attention2):
            if isinstance(layer, TokenPerformer):
                layer.init_random_features()


def _trunc_normal_linears(module: nn.Module) -> None:
    """The official initialisation: linears truncated-normal(0.02) with zero bias, LayerNorms at identity."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class T2TViT(VisionTransformer):
    """T2T-ViT: a :class:`VisionTransformer` whose tokens come from :class:`TokensToToken`, with fixed sinusoidal
    position embeddings (a parameter that is not trained, as in the official code)."""

    def __init__(self, config: T2TConfig):
        super().__init__(config, patch_embed=TokensToToken(config))
        self.pos_embed.requires_grad_(False)

    @torch.no_grad()
    def init_weights(self) -> None:
        """The official initialisation (truncated normal 0.02 everywhere, sinusoidal positions)."""
        _trunc_normal_linears(self)
        self.patch_embed.init_weights()
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        if not self.pos_embed.is_meta:
            self.pos_embed.copy_(sinusoid_table(self.pos_embed.shape[1], self.config.width))


def _t2t_defaults(match) -> dict:
    depth = int(match["depth"])
    if depth not in T2T_SIZES:
        raise ValueError(f"unknown T2T-ViT depth {depth}; known: {sorted(T2T_SIZES)}")
    width, depth, mlp_dim, num_heads = T2T_SIZES[depth]
    return {"width": width, "depth": depth, "mlp_dim": mlp_dim, "num_heads": num_heads,
            "tokens_type": "transformer" if match["t"] else "performer"}


register_family(
    "t2t",
    r"t2t-vit(?P<t>[_-]t)?-(?P<depth>\d+)",
    T2TConfig,
    T2TViT,
    _t2t_defaults,
    tuple(f"t2t-vit-{d}" for d in T2T_SIZES) + ("t2t-vit_t-14", "t2t-vit_t-19", "t2t-vit_t-24"),
)

"""Transformer building blocks shared by every model in the family (ViT, hybrids, T2T-ViT)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class DropPath(nn.Module):
    """Stochastic depth: drops a residual branch per sample during training."""

    def __init__(self, prob: float = 0.0):
        super().__init__()
        self.prob = prob

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.prob == 0.0 or not self.training:
            return x
        keep = 1.0 - self.prob
        mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
        return x * mask / keep


class Attention(nn.Module):
    """Multi-head self-attention over ``[B, N, D]`` with one fused qkv projection.

    ``capture_attention = True`` makes the module compute the softmax explicitly and keep it in
    ``self.attention`` (``[B, heads, N, N]``) for inspection; otherwise it uses the fused SDPA kernel.
    """

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True, attn_dropout: float = 0.0,
                 proj_dropout: float = 0.0, in_dim: int | None = None):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"width {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.attn_dropout = attn_dropout
        self.qkv = nn.Linear(in_dim or dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_dropout)
        self.capture_attention = False
        self.attention: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        dropout = self.attn_dropout if self.training else 0.0
        if self.capture_attention:
            attn = (q @ k.transpose(-2, -1) * self.head_dim**-0.5).softmax(dim=-1)
            self.attention = attn.detach()
            x = F.dropout(attn, dropout, self.training) @ v
        else:
            x = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout)
        x = x.transpose(1, 2).reshape(b, n, -1)
        return self.proj_drop(self.proj(x))


class Mlp(nn.Module):
    """Two dense layers with a GELU between them, dropout after each (as in the paper)."""

    def __init__(self, dim: int, hidden_dim: int, dropout: float = 0.0, out_dim: int | None = None):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dim, out_dim or dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class Block(nn.Module):
    """Pre-norm Transformer encoder block: ``x + attn(norm(x))``, then ``x + mlp(norm(x))``."""

    def __init__(self, dim: int, num_heads: int, mlp_dim: int, qkv_bias: bool = True, dropout: float = 0.0,
                 attn_dropout: float = 0.0, drop_path: float = 0.0, norm_eps: float = 1e-6):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = Attention(dim, num_heads, qkv_bias, attn_dropout, dropout)
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = Mlp(dim, mlp_dim, dropout)
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


def lecun_normal_(weight: torch.Tensor) -> torch.Tensor:
    """LeCun normal (truncated, fan-in) as in Flax's default Dense/Conv initialiser."""
    fan_in = weight[0].numel()
    std = (1.0 / fan_in) ** 0.5 / 0.87962566103423978  # correct for truncation at 2 std
    return nn.init.trunc_normal_(weight, std=std, a=-2 * std, b=2 * std)


def init_transformer_(module: nn.Module) -> None:
    """Paper/Flax initialisation of a transformer stack: xavier-uniform linears, tiny MLP biases, unit norms."""
    for name, m in module.named_modules():
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                if name.endswith(("fc1", "fc2")):
                    nn.init.normal_(m.bias, std=1e-6)
                else:
                    nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

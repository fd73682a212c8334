"""Attention rollout (Abnar & Zuidema, 2020): how much each output token draws on each input token.

Per layer the heads are averaged, the residual connection is accounted for by adding the identity, and rows are
re-normalised (``(A + I) / 2`` for a row-stochastic ``A``); the layers are then multiplied, last layer on the left:
``R = Â_L ... Â_2 Â_1``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def attention_rollout(attentions: Sequence[torch.Tensor]) -> torch.Tensor:
    """Rollout ``[B, N, N]`` of per-layer attention ``[B, heads, N, N]`` (first layer first)."""
    if not attentions:
        raise ValueError("attention rollout needs at least one layer")
    result = None
    for attention in attentions:
        if attention.dim() != 4 or attention.shape[-1] != attention.shape[-2]:
            raise ValueError(f"attention must be [B, heads, N, N], got {tuple(attention.shape)}")
        fused = attention.float().mean(dim=1)
        fused = fused + torch.eye(fused.shape[-1], device=fused.device)
        fused = fused / fused.sum(dim=-1, keepdim=True)
        result = fused if result is None else fused @ result
    return result


def class_token_map(rollout: torch.Tensor, num_prefix_tokens: int, grid: tuple[int, int]) -> torch.Tensor:
    """What the pooled representation draws from each patch, as ``[B, gh, gw]``.

    With a class token this is the class token's row of the rollout; without prefix tokens (global average pooling)
    it is the mean of the patch tokens' rows. Columns of prefix tokens are dropped, so a map sums to at most 1.
    """
    gh, gw = grid
    if rollout.shape[-1] != num_prefix_tokens + gh * gw:
        raise ValueError(f"rollout over {rollout.shape[-1]} tokens does not fit {num_prefix_tokens} prefix tokens "
                         f"+ a {gh}x{gw} grid")
    rows = rollout[:, 0] if num_prefix_tokens else rollout.mean(dim=1)
    return rows[:, num_prefix_tokens:].reshape(-1, gh, gw)


def upsample_map(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Grid maps ``[B, gh, gw]`` to image size ``[B, H, W]`` (bilinear), each scaled to [0, 1] for display."""
    up = F.interpolate(maps[:, None].float(), size=tuple(size), mode="bilinear", align_corners=False)[:, 0]
    low = up.amin(dim=(1, 2), keepdim=True)
    span = (up.amax(dim=(1, 2), keepdim=True) - low).clamp_min(1e-12)
    return (up - low) / span

"""Resampling learned position embeddings to a new patch grid (the paper's "2D interpolation")."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def resample_pos_embed(
    pos_embed: torch.Tensor,
    new_grid: tuple[int, int],
    old_grid: tuple[int, int] | None = None,
    num_prefix_tokens: int = 1,
    interpolation: str = "bicubic",
    antialias: bool = False,
) -> torch.Tensor:
    """Resample ``[1, prefix + gh*gw, D]`` position embeddings to ``new_grid``.

    Prefix (class) tokens are kept as they are; the grid part is interpolated in 2D in float32 and the result is
    returned in the input's dtype. ``old_grid`` defaults to a square grid. Same size in, same tensor out.
    """
    if pos_embed.dim() != 3 or pos_embed.shape[0] != 1:
        raise ValueError(f"position embeddings must be [1, tokens, dim], got {tuple(pos_embed.shape)}")
    if interpolation not in ("bilinear", "bicubic", "nearest"):
        raise ValueError(f"interpolation must be bilinear, bicubic or nearest, got {interpolation!r}")
    num_grid = pos_embed.shape[1] - num_prefix_tokens
    if old_grid is None:
        side = math.isqrt(num_grid)
        if side * side != num_grid:
            raise ValueError(f"{num_grid} grid tokens are not a square grid; pass old_grid")
        old_grid = (side, side)
    if old_grid[0] * old_grid[1] != num_grid:
        raise ValueError(f"old_grid {old_grid} does not hold {num_grid} tokens")
    new_grid = (int(new_grid[0]), int(new_grid[1]))
    if tuple(old_grid) == new_grid:
        return pos_embed
    prefix, grid = pos_embed[:, :num_prefix_tokens], pos_embed[:, num_prefix_tokens:]
    dim = pos_embed.shape[-1]
    grid = grid.float().reshape(1, old_grid[0], old_grid[1], dim).permute(0, 3, 1, 2)
    kwargs = {} if interpolation == "nearest" else {"align_corners": False, "antialias": antialias}
    grid = F.interpolate(grid, size=new_grid, mode=interpolation, **kwargs)
    grid = grid.permute(0, 2, 3, 1).reshape(1, new_grid[0] * new_grid[1], dim).to(pos_embed.dtype)
    return torch.cat([prefix, grid], dim=1)

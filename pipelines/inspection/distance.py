"""Mean attention distance (the paper's Figure 7, right): how far, in pixels, each head looks.

For one head and one image: for every patch query, the attention-weighted mean of the distances between the
centres of the query's patch and each key's patch; then the mean over queries. Prefix (class) tokens are excluded
explicitly, as queries and as keys, because they have no position in the image: the weights a patch query puts on
patch keys are re-normalised to sum to one, so mass given to the class token neither counts as distance 0 nor as
any other distance. Distances are in input pixels (grid steps x token stride).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def patch_center_distances(grid: tuple[int, int], stride: tuple[int, int]) -> torch.Tensor:
    """Euclidean distances ``[N, N]`` in pixels between the centres of a row-major ``gh x gw`` grid of patches."""
    gh, gw = grid
    rows, cols = torch.meshgrid(torch.arange(gh, dtype=torch.float64), torch.arange(gw, dtype=torch.float64),
                                indexing="ij")
    centres = torch.stack([rows.flatten() * stride[0], cols.flatten() * stride[1]], dim=1)
    return torch.cdist(centres, centres)


def mean_attention_distance(attention: torch.Tensor, grid: tuple[int, int], stride: tuple[int, int],
                            num_prefix_tokens: int) -> torch.Tensor:
    """Mean attention distance per head ``[heads]`` of one layer's attention ``[B, heads, N, N]``, averaged over B."""
    gh, gw = grid
    n = num_prefix_tokens + gh * gw
    if attention.dim() != 4 or attention.shape[-2:] != (n, n):
        raise ValueError(f"attention must be [B, heads, {n}, {n}] for {num_prefix_tokens} prefix tokens + a "
                         f"{gh}x{gw} grid, got {tuple(attention.shape)}")
    patches = attention[..., num_prefix_tokens:, num_prefix_tokens:].double()
    patches = patches / patches.sum(dim=-1, keepdim=True).clamp_min(1e-30)
    distances = patch_center_distances(grid, stride).to(patches.device)
    per_query = (patches * distances).sum(dim=-1)  # [B, heads, queries]
    return per_query.mean(dim=(0, 2)).float()


def attention_distances(attentions: Sequence[torch.Tensor], grid: tuple[int, int], stride: tuple[int, int],
                        num_prefix_tokens: int) -> torch.Tensor:
    """Mean attention distance ``[layers, heads]`` for the attention of every layer."""
    return torch.stack([mean_attention_distance(a, grid, stride, num_prefix_tokens) for a in attentions])

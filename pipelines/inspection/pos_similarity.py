"""Similarity of learned position embeddings (the paper's Figure 7, centre)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def position_similarity(pos_embed: torch.Tensor, grid: tuple[int, int], num_prefix_tokens: int) -> torch.Tensor:
    """Cosine similarity of every patch position's embedding with every other, as ``[gh, gw, gh, gw]``.

    ``result[r, c]`` is the map of position (r, c) against the whole grid. ``pos_embed`` is ``[1, prefix + N, D]``
    (or ``[prefix + N, D]``); prefix (class) token embeddings are left out.
    """
    gh, gw = grid
    table = pos_embed.detach().float()
    table = table[0] if table.dim() == 3 else table
    if table.dim() != 2 or table.shape[0] != num_prefix_tokens + gh * gw:
        raise ValueError(f"position embeddings of shape {tuple(pos_embed.shape)} do not hold {num_prefix_tokens} "
                         f"prefix tokens + a {gh}x{gw} grid")
    unit = F.normalize(table[num_prefix_tokens:], dim=-1)
    return (unit @ unit.T).reshape(gh, gw, gh, gw)

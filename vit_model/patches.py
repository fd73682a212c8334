"""Cutting images into patches and back.

The flattening order of one patch is defined here and nowhere else: rows, then columns, then channels
(``[P, P, C]`` flattened to ``P*P*C``), the layout of Google's ``embedding/kernel``. Patches are ordered
row-major over the grid. Ray Data calls the numpy version on CPU workers; the model calls the torch version
when it is given whole images, so both input forms meet the same weights in the same order.
"""

from __future__ import annotations

import numpy as np
import torch


def _grid(height: int, width: int, patch_size: int) -> tuple[int, int]:
    if height % patch_size or width % patch_size:
        raise ValueError(
            f"image size {height}x{width} is not divisible by patch size {patch_size}"
        )
    return height // patch_size, width // patch_size


def patchify(images: torch.Tensor, patch_size: int) -> torch.Tensor:
    """``[B, C, H, W]`` (or ``[C, H, W]``) images to ``[B, N, P*P*C]`` patches, any dtype."""
    squeeze = images.dim() == 3
    if squeeze:
        images = images.unsqueeze(0)
    b, c, h, w = images.shape
    gh, gw = _grid(h, w, patch_size)
    x = images.reshape(b, c, gh, patch_size, gw, patch_size)
    x = x.permute(0, 2, 4, 3, 5, 1).reshape(b, gh * gw, patch_size * patch_size * c)
    return x[0] if squeeze else x


def unpatchify(patches: torch.Tensor, patch_size: int, grid: tuple[int, int], channels: int = 3) -> torch.Tensor:
    """Inverse of :func:`patchify`: ``[B, N, P*P*C]`` to ``[B, C, H, W]``."""
    squeeze = patches.dim() == 2
    if squeeze:
        patches = patches.unsqueeze(0)
    gh, gw = grid
    b, n, d = patches.shape
    if n != gh * gw or d != patch_size * patch_size * channels:
        raise ValueError(
            f"patches of shape {tuple(patches.shape[1:])} do not fit grid {gh}x{gw}, "
            f"patch size {patch_size}, {channels} channels"
        )
    x = patches.reshape(b, gh, gw, patch_size, patch_size, channels)
    x = x.permute(0, 5, 1, 3, 2, 4).reshape(b, channels, gh * patch_size, gw * patch_size)
    return x[0] if squeeze else x


def patchify_numpy(images: np.ndarray, patch_size: int, channels_last: bool = False) -> np.ndarray:
    """numpy twin of :func:`patchify` for CPU data workers.

    ``images`` is ``[B, C, H, W]`` (or ``[B, H, W, C]`` with ``channels_last``), or the same without the batch axis.
    """
    squeeze = images.ndim == 3
    if squeeze:
        images = images[None]
    if not channels_last:
        images = images.transpose(0, 2, 3, 1)
    b, h, w, c = images.shape
    gh, gw = _grid(h, w, patch_size)
    x = images.reshape(b, gh, patch_size, gw, patch_size, c).transpose(0, 1, 3, 2, 4, 5)
    x = np.ascontiguousarray(x).reshape(b, gh * gw, patch_size * patch_size * c)
    return x[0] if squeeze else x


def unpatchify_numpy(patches: np.ndarray, patch_size: int, grid: tuple[int, int], channels: int = 3) -> np.ndarray:
    """numpy twin of :func:`unpatchify`, returning ``[B, C, H, W]``."""
    return unpatchify(torch.from_numpy(np.ascontiguousarray(patches)), patch_size, grid, channels).numpy()

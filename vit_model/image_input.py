"""The input forms every model of the family accepts, turned into normalised images for a convolutional stem.

A ViT embeds patches directly; the convolutional models (BiT ResNets, hybrids, T2T-ViT) need whole images. They
accept the same inputs a ViT does, so the data pipeline can treat every model alike:

* float images ``[B, C, H, W]``, already normalised;
* uint8 images ``[B, C, H, W]``, normalised here with the model's mean/std;
* patches ``[B, N, P*P*C]`` (uint8 or normalised float) in the layout of :mod:`vit_model.patches`, where ``P`` is
  the model's ``embed_stride`` and the ``N`` patches tile its configured image size.
"""

from __future__ import annotations

import torch

from .patches import unpatchify
from .vit import normalize_uint8


def images_from_input(x: torch.Tensor, *, in_chans: int, mean, std, patch_size: int, grid: tuple[int, int],
                      dtype: torch.dtype) -> torch.Tensor:
    """Normalised ``[B, C, H, W]`` images in ``dtype`` from images or patches (see the module docstring)."""
    if x.dim() == 3:
        features = patch_size * patch_size * in_chans
        if x.shape[1] != grid[0] * grid[1] or x.shape[2] != features:
            raise ValueError(f"expected patches [B, {grid[0] * grid[1]}, {features}] ({patch_size}px patches over a "
                             f"{grid[0]}x{grid[1]} grid), got {tuple(x.shape)}")
        if x.dtype == torch.uint8:
            b, n, _ = x.shape
            x = normalize_uint8(x.reshape(b, n, -1, in_chans), mean, std, dtype).reshape(b, n, features)
        return unpatchify(x.to(dtype), patch_size, grid, in_chans)
    if x.dim() == 4:
        if x.shape[1] != in_chans:
            raise ValueError(f"expected {in_chans}-channel images [B, C, H, W], got {tuple(x.shape)}")
        if x.dtype == torch.uint8:
            return normalize_uint8(x.permute(0, 2, 3, 1), mean, std, dtype).permute(0, 3, 1, 2)
        return x.to(dtype)
    raise ValueError(f"expected images [B, C, H, W] or patches [B, N, P*P*C], got {tuple(x.shape)}")

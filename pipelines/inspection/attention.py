"""Reading attention weights out of a model through its ``capture_attention`` option (no copy of attention code)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from vit_model.layers import Attention


def encoder_attention_modules(model: nn.Module) -> list[Attention]:
    """The self-attention module of every encoder block, first to last.

    Only ``model.blocks`` counts: attention inside a token stem (T2T-ViT) works on other token sets.
    """
    blocks = getattr(model, "blocks", None)
    modules = [getattr(block, "attn", None) for block in blocks] if blocks is not None else []
    if not modules or not all(isinstance(m, Attention) for m in modules):
        raise ValueError(f"{type(model).__name__} has no encoder blocks with vit_model.layers.Attention (model.blocks)")
    return modules


@contextmanager
def capture_attention(model: nn.Module) -> Iterator[list[Attention]]:
    """Switch attention capture on in every encoder block; restore the previous flags and free the maps on exit."""
    modules = encoder_attention_modules(model)
    previous = [m.capture_attention for m in modules]
    for m in modules:
        m.capture_attention, m.attention = True, None
    try:
        yield modules
    finally:
        for m, flag in zip(modules, previous):
            m.capture_attention, m.attention = flag, None


@torch.no_grad()
def attention_maps(model: nn.Module, images: torch.Tensor) -> list[torch.Tensor]:
    """Attention weights of every encoder layer for ``images`` (any input the model takes), in eval mode.

    Returns one float32 tensor ``[B, heads, N, N]`` per layer (N counts prefix tokens first, then patches
    row-major); each row is a query's softmax over keys. The model's train/eval mode is restored afterwards.
    """
    was_training = model.training
    model.eval()
    try:
        with capture_attention(model) as modules:
            model.forward_features(images)
            maps = [m.attention.float() for m in modules]
    finally:
        model.train(was_training)
    return maps

"""Compute is counted, not guessed: forward MACs per image from a model's configuration, by formula.

Only matrix products are counted (dense layers, convolutions, attention's Q.K^T and A.V), which is the convention
of the published GMAC figures and of torch's FlopCounterMode. FLOPs = 2 x MACs; training FLOPs = 3 x forward FLOPs
x images seen (backward costs about twice the forward pass).
"""

from __future__ import annotations

from torch import nn


def linear_macs(tokens: int, in_features: int, out_features: int) -> int:
    return tokens * in_features * out_features


def attention_macs(tokens: int, width: int) -> int:
    """Q.K^T and A.V for all heads together (each is tokens x tokens x width)."""
    return 2 * tokens * tokens * width


def transformer_block_macs(tokens: int, width: int, mlp_dim: int, in_dim: int | None = None) -> int:
    """One pre-norm block: qkv, attention, output projection and the two MLP layers."""
    return (
        linear_macs(tokens, in_dim or width, 3 * width)
        + attention_macs(tokens, width)
        + linear_macs(tokens, width, width)
        + 2 * linear_macs(tokens, width, mlp_dim)
    )


def conv2d_macs(out_h: int, out_w: int, in_ch: int, out_ch: int, kernel: int, groups: int = 1) -> int:
    return out_h * out_w * out_ch * (in_ch // groups) * kernel * kernel


def head_macs(model: nn.Module) -> int:
    """The pre-logits layer (if any) and the classifier."""
    total = 0
    for module in (getattr(model, "pre_logits", None), getattr(model, "head", None)):
        for m in module.modules() if module is not None else ():
            if isinstance(m, nn.Linear):
                total += m.in_features * m.out_features
    return total


def vit_forward_macs(model) -> int:
    """A ViT (or hybrid: its token source counts itself) for one image at its configured size."""
    cfg = model.config
    tokens = model.patch_embed.num_patches + model.num_prefix_tokens
    embed = getattr(model.patch_embed, "forward_macs", None)
    if embed is None:
        total = linear_macs(model.patch_embed.num_patches, model.patch_embed.proj.in_features, cfg.width)
    else:
        total = embed()
    total += cfg.depth * transformer_block_macs(tokens, cfg.width, cfg.mlp_dim)
    return total + head_macs(model)


def forward_macs(model: nn.Module) -> int:
    """Forward MACs for one image; every model in the family implements ``forward_macs()``."""
    return int(model.forward_macs())


def forward_flops(model: nn.Module) -> int:
    """Forward FLOPs for one image (2 x MACs)."""
    return 2 * forward_macs(model)


def training_flops(forward_flops_per_image: float, images: float) -> float:
    """Training FLOPs for ``images`` examples: forward + backward = 3 x forward."""
    return 3.0 * forward_flops_per_image * images

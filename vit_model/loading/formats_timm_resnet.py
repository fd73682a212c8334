"""timm state dicts of BiT ResNet-v2 (``resnetv2_50x1_bit`` ...) and ViT hybrids (``vit_base_r50_s16_224`` ...).

Our parameter names follow timm's, so BiT needs only its 1x1-convolution classifier (``head.fc``) turned into a
linear layer, and a hybrid only its convolutional patch projection; everything else is checked key by key by
the loader. (torchvision has neither BiT nor hybrids; its ResNets are BatchNorm v1 models, a different family.)
"""

from __future__ import annotations

from .formats import Converted, Format, _convert_timm, head_config, register_format


def _convert_timm_bit(state: dict) -> Converted:
    out = dict(state)
    for kind in ("weight", "bias"):
        if f"head.fc.{kind}" in out:
            value = out.pop(f"head.fc.{kind}")
            out[f"head.{kind}"] = value.flatten(1) if kind == "weight" else value
    return Converted(out, head_config(out))


register_format(Format(
    "timm-bit", ("bit",),
    lambda s: "stem.conv.weight" in s and "stages.0.blocks.0.conv1.weight" in s,
    _convert_timm_bit,
))

# A timm hybrid is a timm VisionTransformer whose patch embedding holds the backbone: the ViT conversion applies.
register_format(Format(
    "timm-hybrid", ("hybrid",),
    lambda s: "patch_embed.backbone.stem.conv.weight" in s and "patch_embed.proj.weight" in s,
    _convert_timm,
))

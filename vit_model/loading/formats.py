"""Checkpoint formats: each recognises a state dict by its keys and converts it to our parameter names.

A converter returns the state dict in our names plus the config values the checkpoint fixes (number of classes,
head type, pooling ...). Formats for more families register themselves with :func:`register_format`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@dataclass
class Converted:
    state: dict[str, torch.Tensor]
    config: dict = field(default_factory=dict)  # config values the checkpoint implies


@dataclass(frozen=True)
class Format:
    name: str
    families: tuple[str, ...]
    detect: Callable[[dict], bool]
    convert: Callable[[dict], Converted]


FORMATS: list[Format] = []


def register_format(fmt: Format) -> None:
    FORMATS[:] = [f for f in FORMATS if f.name != fmt.name] + [fmt]


def conv_to_linear(weight: torch.Tensor) -> torch.Tensor:
    """Conv2d patch kernel ``[D, C, P, P]`` to our linear layout ``[D, P*P*C]`` (see vit_model.patches)."""
    return weight.permute(0, 2, 3, 1).reshape(weight.shape[0], -1)


def rename(state: dict, rules: list[tuple[str, str]]) -> dict:
    """Apply regex renames in order; the first rule that matches a key wins, keys no rule matches stay as they are."""
    out = {}
    for key, value in state.items():
        for pattern, repl in rules:
            new, hits = re.subn(pattern, repl, key)
            if hits:
                key = new
                break
        out[key] = value
    return out


def head_config(state: dict, head: str = "head.weight", pre_logits: str = "pre_logits.0.weight") -> dict:
    """num_classes from the classifier's rows; an mlp head when a pre-logits layer is present."""
    config = {"num_classes": state[head].shape[0] if head in state else 0}
    if pre_logits in state:
        config.update(head="mlp", representation_size=state[pre_logits].shape[0])
    return config


# torchvision's vit_b_16 family --------------------------------------------------------------------------------

_TORCHVISION_RULES = [
    (r"^class_token$", "cls_token"),
    (r"^conv_proj\.", "patch_embed.proj."),
    (r"^encoder\.pos_embedding$", "pos_embed"),
    (r"^encoder\.ln\.", "norm."),
    (r"^encoder\.layers\.encoder_layer_(\d+)\.ln_1\.", r"blocks.\1.norm1."),
    (r"^encoder\.layers\.encoder_layer_(\d+)\.ln_2\.", r"blocks.\1.norm2."),
    (r"^encoder\.layers\.encoder_layer_(\d+)\.self_attention\.in_proj_(weight|bias)$", r"blocks.\1.attn.qkv.\2"),
    (r"^encoder\.layers\.encoder_layer_(\d+)\.self_attention\.out_proj\.", r"blocks.\1.attn.proj."),
    (r"^encoder\.layers\.encoder_layer_(\d+)\.mlp\.0\.", r"blocks.\1.mlp.fc1."),
    (r"^encoder\.layers\.encoder_layer_(\d+)\.mlp\.3\.", r"blocks.\1.mlp.fc2."),
    (r"^heads\.head\.", "head."),
    (r"^heads\.pre_logits\.", "pre_logits.0."),
]


def _convert_torchvision(state: dict) -> Converted:
    out = rename(state, _TORCHVISION_RULES)
    out["patch_embed.proj.weight"] = conv_to_linear(out["patch_embed.proj.weight"])
    # torchvision's weights expect ImageNet mean/std normalisation
    config = {**head_config(out), "pool": "token", "mean": IMAGENET_MEAN, "std": IMAGENET_STD}
    return Converted(out, config)


register_format(Format(
    "torchvision-vit", ("vit",),
    lambda s: "conv_proj.weight" in s and "encoder.pos_embedding" in s,
    _convert_torchvision,
))


# timm's VisionTransformer ------------------------------------------------------------------------------------

def _convert_timm(state: dict) -> Converted:
    out = dict(state)
    if out["patch_embed.proj.weight"].dim() == 4:
        out["patch_embed.proj.weight"] = conv_to_linear(out["patch_embed.proj.weight"])
    config = head_config(out, pre_logits="pre_logits.fc.weight")
    if "pre_logits.fc.weight" in out:  # old timm representation layer
        out["pre_logits.0.weight"] = out.pop("pre_logits.fc.weight")
        out["pre_logits.0.bias"] = out.pop("pre_logits.fc.bias")
    has_cls = "cls_token" in out
    if "fc_norm.weight" in out:
        config.update(pool="gap", fc_norm=True, class_token=has_cls)
    else:
        config.update(pool="token" if has_cls else "gap", class_token=has_cls)
    return Converted(out, config)


register_format(Format(
    "timm-vit", ("vit",),
    lambda s: "patch_embed.proj.weight" in s and "blocks.0.attn.qkv.weight" in s and "pos_embed" in s,
    _convert_timm,
))

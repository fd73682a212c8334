"""Hugging Face ``ViTForImageClassification`` / ``ViTModel`` state dicts (``model.safetensors``, ``pytorch_model.bin``).

Files on the Hub use the transformers 4 names (``vit.encoder.layer.0.attention.attention.query.weight``);
transformers 5 renames them in memory (``vit.layers.0.attention.q_proj.weight``): both are read, with or without
the ``vit.`` prefix of the classification model. A ``ViTModel``'s pooler (dense + tanh on the class token, how
the ImageNet-21k checkpoints carry their pre-logits layer) becomes our MLP head. Hugging Face ViTs use LayerNorm
epsilon 1e-12 and a class token.
"""

from __future__ import annotations

import re

import torch

from .formats import Converted, Format, conv_to_linear, head_config, register_format, rename

HF_LAYER_NORM_EPS = 1e-12

_LAYER = r"^(?:vit\.)?(?:encoder\.layer|layers)\.(\d+)\."
_RULES = [
    (r"^(?:vit\.)?embeddings\.cls_token$", "cls_token"),
    (r"^(?:vit\.)?embeddings\.position_embeddings$", "pos_embed"),
    (r"^(?:vit\.)?embeddings\.patch_embeddings\.projection\.", "patch_embed.proj."),
    (_LAYER + r"layernorm_before\.", r"blocks.\1.norm1."),
    (_LAYER + r"layernorm_after\.", r"blocks.\1.norm2."),
    (_LAYER + r"attention\.(?:output\.dense|o_proj)\.", r"blocks.\1.attn.proj."),
    (_LAYER + r"(?:intermediate\.dense|mlp\.fc1)\.", r"blocks.\1.mlp.fc1."),
    (_LAYER + r"(?:output\.dense|mlp\.fc2)\.", r"blocks.\1.mlp.fc2."),
    (r"^(?:vit\.)?layernorm\.", "norm."),
    (r"^(?:vit\.)?pooler\.dense\.", "pre_logits.0."),
    (r"^classifier\.", "head."),
]
_QKV = re.compile(_LAYER + r"attention\.(?:attention\.(query|key|value)|(q|k|v)_proj)\.(weight|bias)$")
_SHORT = {"q": "query", "k": "key", "v": "value"}


def _fuse_qkv(state: dict) -> dict:
    parts: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
    rest = {}
    for key, value in state.items():
        match = _QKV.match(key)
        if match:
            block, long, short, kind = match.groups()
            parts.setdefault((block, kind), {})[long or _SHORT[short]] = value
        else:
            rest[key] = value
    for (block, kind), qkv in parts.items():
        for which in ("query", "key", "value"):
            if which not in qkv:
                raise KeyError(f"vit.encoder.layer.{block}.attention.attention.{which}.{kind}")
        rest[f"blocks.{block}.attn.qkv.{kind}"] = torch.cat([qkv[w] for w in ("query", "key", "value")])
    return rest


def _convert_hf(state: dict) -> Converted:
    out = rename(_fuse_qkv(state), _RULES)
    out["patch_embed.proj.weight"] = conv_to_linear(out["patch_embed.proj.weight"])
    config = {**head_config(out), "pool": "token", "class_token": True, "norm_eps": HF_LAYER_NORM_EPS}
    return Converted({k: v.contiguous() for k, v in out.items()}, config)


register_format(Format(
    "huggingface-vit", ("vit",),
    lambda s: any(k.endswith("embeddings.patch_embeddings.projection.weight") for k in s),
    _convert_hf,
))

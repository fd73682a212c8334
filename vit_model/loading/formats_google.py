"""Google's ``.npz`` checkpoints: ViT and hybrids (google-research/vision_transformer, big_vision) and BiT.

Flax names are paths such as ``Transformer/encoderblock_0/MultiHeadDotProductAttention_1/query/kernel``; dense
kernels are ``[in, out]``, attention kernels ``[width, heads, head_dim]``, convolution kernels ``[H, W, in, out]``.
Both namings are read: the original repository's (``LayerNorm_2``, ``MultiHeadDotProductAttention_1``,
``MlpBlock_3``, ``Transformer/posembed_input/pos_embedding``) and big_vision's (``LayerNorm_1``,
``MultiHeadDotProductAttention_0``, ``MlpBlock_0``, ``pos_embedding``, optionally scanned blocks stacked in
``Transformer/encoderblock/``). ImageNet-21k checkpoints carry a ``pre_logits`` layer, which becomes the model's
tanh MLP head. Training checkpoints keep the weights under ``opt/target/`` or ``params/``; only that subtree is
model weights (the rest is optimiser state) and only it is read. Any other key is passed on unchanged, so the
loader reports it by name.
"""

from __future__ import annotations

import re

import torch

from .formats import Converted, Format, head_config, register_format

_PREFIXES = ("", "opt/target/", "params/img/", "params/")


def _weights_prefix(state: dict) -> str | None:
    for prefix in _PREFIXES:
        if f"{prefix}embedding/kernel" in state:
            return prefix
    return None


def _dense(kernel: torch.Tensor) -> torch.Tensor:
    """Flax ``[in..., out]`` to torch ``[out, in]`` (attention kernels flatten their head axes first)."""
    return kernel.reshape(-1, kernel.shape[-1]).t()


def _conv(kernel: torch.Tensor) -> torch.Tensor:
    return kernel.permute(3, 2, 0, 1)  # HWIO -> OIHW


def _vector(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(-1)  # some checkpoints store norm parameters as [1, 1, 1, C]


def _unscan(weights: dict) -> dict:
    """big_vision's scanned encoder (one stacked ``Transformer/encoderblock/...`` per parameter) to per-block keys."""
    out = {}
    for key, value in weights.items():
        if key.startswith("Transformer/encoderblock/"):
            rest = key.removeprefix("Transformer/encoderblock/")
            for i in range(value.shape[0]):
                out[f"Transformer/encoderblock_{i}/{rest}"] = value[i]
        else:
            out[key] = value
    return out


_PARAM = {"scale": "weight", "bias": "bias", "gamma": "weight", "beta": "bias"}

# (pattern, our name, how the value is converted); the attention's query/key/value are fused separately
_VIT_RULES = [
    (r"embedding/kernel", "patch_embed.proj.weight", _dense),  # [P, P, C, D]: our patch layout is [P, P, C]
    (r"embedding/bias", "patch_embed.proj.bias", None),
    (r"cls", "cls_token", None),
    (r"(?:Transformer/posembed_input/)?pos_embedding", "pos_embed", lambda x: x.reshape(1, -1, x.shape[-1])),
    (r"Transformer/encoder_norm/(scale|bias)", r"norm.{0}", _vector),
    (r"head/kernel", "head.weight", _dense),
    (r"head/bias", "head.bias", None),
    (r"pre_logits/kernel", "pre_logits.0.weight", _dense),
    (r"pre_logits/bias", "pre_logits.0.bias", None),
    (r"Transformer/encoderblock_(\d+)/LayerNorm_0/(scale|bias)", "blocks.{0}.norm1.{1}", _vector),
    (r"Transformer/encoderblock_(\d+)/LayerNorm_[12]/(scale|bias)", "blocks.{0}.norm2.{1}", _vector),
    (r"Transformer/encoderblock_(\d+)/MultiHeadDotProductAttention_[01]/out/kernel", "blocks.{0}.attn.proj.weight",
     _dense),
    (r"Transformer/encoderblock_(\d+)/MultiHeadDotProductAttention_[01]/out/bias", "blocks.{0}.attn.proj.bias",
     None),
    (r"Transformer/encoderblock_(\d+)/MlpBlock_[03]/Dense_0/kernel", "blocks.{0}.mlp.fc1.weight", _dense),
    (r"Transformer/encoderblock_(\d+)/MlpBlock_[03]/Dense_0/bias", "blocks.{0}.mlp.fc1.bias", None),
    (r"Transformer/encoderblock_(\d+)/MlpBlock_[03]/Dense_1/kernel", "blocks.{0}.mlp.fc2.weight", _dense),
    (r"Transformer/encoderblock_(\d+)/MlpBlock_[03]/Dense_1/bias", "blocks.{0}.mlp.fc2.bias", None),
    # the hybrids' ResNet (units are 1-based in Flax)
    (r"conv_root/kernel", "patch_embed.backbone.stem.conv.weight", _conv),
    (r"gn_root/(scale|bias)", "patch_embed.backbone.stem.norm.{0}", _vector),
    (r"block(\d+)/unit(\d+)/conv([123])/kernel", "patch_embed.backbone.stages.{0-}.blocks.{1-}.conv{2}.weight",
     _conv),
    (r"block(\d+)/unit(\d+)/gn([123])/(scale|bias)", "patch_embed.backbone.stages.{0-}.blocks.{1-}.norm{2}.{3}",
     _vector),
    (r"block(\d+)/unit(\d+)/conv_proj/kernel", "patch_embed.backbone.stages.{0-}.blocks.{1-}.downsample.conv.weight",
     _conv),
    (r"block(\d+)/unit(\d+)/gn_proj/(scale|bias)",
     "patch_embed.backbone.stages.{0-}.blocks.{1-}.downsample.norm.{2}", _vector),
]

_BIT_RULES = [
    (r"root_block/standardized_conv2d/kernel", "stem.conv.weight", _conv),
    (r"group_norm/(gamma|beta)", "norm.{0}", _vector),
    (r"head/conv2d/kernel", "head.weight", _dense),  # [1, 1, features, classes]
    (r"head/conv2d/bias", "head.bias", None),
    (r"block(\d+)/unit(\d+)/a/proj/standardized_conv2d/kernel", "stages.{0-}.blocks.{1-}.downsample.conv.weight",
     _conv),
    (r"block(\d+)/unit(\d+)/([abc])/standardized_conv2d/kernel", "stages.{0-}.blocks.{1-}.conv{2}.weight", _conv),
    (r"block(\d+)/unit(\d+)/([abc])/group_norm/(gamma|beta)", "stages.{0-}.blocks.{1-}.norm{2}.{3}", _vector),
]
_UNIT_LETTER = {"a": "1", "b": "2", "c": "3"}


def _fill(template: str, groups: tuple[str, ...]) -> str:
    """``{i}`` is group i as written, ``{i-}`` is group i minus one (Flax's 1-based stages and units)."""
    def value(match: re.Match) -> str:
        group = groups[int(match[1])]
        if match[2]:
            return str(int(group) - 1)
        return _PARAM.get(group, _UNIT_LETTER.get(group, group))

    return re.sub(r"\{(\d+)(-?)\}", value, template)


def _apply_rules(weights: dict, rules: list) -> dict:
    out = {}
    for key, value in weights.items():
        for pattern, template, convert in rules:
            match = re.fullmatch(pattern, key)
            if match:
                key, value = _fill(template, match.groups()), (convert(value) if convert else value)
                break
        out[key] = value.contiguous()
    return out


_QKV = re.compile(r"Transformer/encoderblock_(\d+)/MultiHeadDotProductAttention_[01]/(query|key|value)/(kernel|bias)")


def _fuse_qkv(weights: dict) -> dict:
    """Separate query/key/value projections to one ``qkv`` linear (rows: q, then k, then v)."""
    parts: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
    rest = {}
    for key, value in weights.items():
        match = _QKV.fullmatch(key)
        if match:
            block, which, kind = match.groups()
            parts.setdefault((block, kind), {})[which] = value
        else:
            rest[key] = value
    for (block, kind), qkv in parts.items():
        for which in ("query", "key", "value"):
            if which not in qkv:
                raise KeyError(f"Transformer/encoderblock_{block}/MultiHeadDotProductAttention/{which}/{kind}")
        pieces = [qkv[which] for which in ("query", "key", "value")]
        if kind == "kernel":  # [width, heads, head_dim] -> [heads * head_dim, width]
            rest[f"blocks.{block}.attn.qkv.weight"] = torch.cat([p.reshape(p.shape[0], -1).t() for p in pieces])
        else:
            rest[f"blocks.{block}.attn.qkv.bias"] = torch.cat([p.reshape(-1) for p in pieces])
    return rest


def _convert_google_vit(state: dict) -> Converted:
    prefix = _weights_prefix(state)
    weights = {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)}
    out = _apply_rules(_fuse_qkv(_unscan(weights)), _VIT_RULES)
    has_cls = "cls_token" in out
    config = {**head_config(out), "pool": "token" if has_cls else "gap", "class_token": has_cls}
    return Converted(out, config)


def _convert_google_bit(state: dict) -> Converted:
    weights = {k.removeprefix("resnet/"): v for k, v in state.items() if k.startswith("resnet/")}
    out = _apply_rules(weights, _BIT_RULES)
    return Converted(out, head_config(out))


register_format(Format(
    "google-npz-vit", ("vit", "hybrid"),
    lambda s: _weights_prefix(s) is not None,
    _convert_google_vit,
))

register_format(Format(
    "google-npz-bit", ("bit",),
    lambda s: "resnet/root_block/standardized_conv2d/kernel" in s,
    _convert_google_bit,
))

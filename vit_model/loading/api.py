"""The one entry point for weights from elsewhere: detect the format, convert, check every key, load."""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn

from ..pos_embed import resample_pos_embed
from ..registry import model_config, resolve
from .formats import FORMATS, Converted
from .read import CheckpointError, read_state_dict


def _native(path: Path) -> Converted | None:
    """Our own safetensors + config.json: the keys are already ours."""
    from ..weights import read_record

    try:
        record = read_record(path)
    except Exception:
        return None
    if "config" not in record or "family" not in record:
        return None  # e.g. a Hugging Face config.json beside the weights
    config = {k: v for k, v in record["config"].items() if k != "image_size"}
    return Converted(read_state_dict(path), config)


def _convert(path: Path, family: str) -> Converted:
    native = _native(path) if path.suffix == ".safetensors" or path.is_dir() else None
    if native is not None:
        return native
    state = read_state_dict(path)
    for fmt in FORMATS:
        if family in fmt.families and fmt.detect(state):
            try:
                return fmt.convert(state)
            except KeyError as exc:
                raise CheckpointError(f"{path}: looks like {fmt.name} but has no key {exc}") from exc
    known = [f.name for f in FORMATS if family in f.families]
    sample = ", ".join(list(state)[:5])
    raise CheckpointError(f"{path}: not a known {family} checkpoint format (tried {known}); first keys: {sample}")


def _grid_of(pos_embed: torch.Tensor, prefix: int, path: Path, hint: tuple[int, int] | None) -> tuple[int, int]:
    """The checkpoint's patch grid: square, or the configured grid when that is what it holds."""
    n = pos_embed.shape[1] - prefix
    if hint is not None and hint[0] * hint[1] == n:
        return tuple(hint)
    side = math.isqrt(n)
    if side * side != n:
        raise CheckpointError(f"{path}: pos_embed holds {n} patch positions, not a square grid; "
                              "pass the checkpoint's image_size")
    return side, side


def _check_keys(model: nn.Module, state: dict, path: Path) -> None:
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    shapes = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items() if k in state and state[k].shape != v.shape
    ]
    problems = []
    if missing:
        problems.append(f"missing keys {missing}")
    if extra:
        problems.append(f"unexpected keys {extra}")
    if shapes:
        problems.append("wrong shapes: " + "; ".join(shapes))
    if problems:
        name = getattr(model, "model_name", "the model")
        raise CheckpointError(f"{path} does not fit {name}: " + " | ".join(problems))


def load_pretrained(model_name: str, path, image_size=None, **overrides) -> nn.Module:
    """Build ``model_name`` and load the checkpoint at ``path`` into it.

    The format is detected from the keys; the number of classes and head come from the checkpoint. ``image_size``
    defaults to the checkpoint's own resolution; a different one resamples the position embeddings in 2D. A
    missing, extra or mis-shaped key is an error that names it; nothing is silently ignored.
    """
    path = Path(path)
    family, _ = resolve(model_name)
    converted = _convert(path, family.name)
    state = {k: v.float() if v.is_floating_point() else v for k, v in converted.state.items()}
    values = {**converted.config, **overrides}
    probe = model_config(model_name, **{k: v for k, v in values.items() if k != "image_size"})
    patch = getattr(probe, "patch_size", None)
    prefix = int(bool(getattr(probe, "class_token", False)))
    hint = getattr(probe, "grid", None) if image_size is None else None
    ckpt_grid = _grid_of(state["pos_embed"], prefix, path, hint) if "pos_embed" in state else None
    if image_size is None:
        stride = getattr(probe, "embed_stride", patch)
        image_size = (ckpt_grid[0] * stride, ckpt_grid[1] * stride) if ckpt_grid and stride else probe.image_size
    with torch.device("meta"):
        model = family.build(model_config(model_name, image_size=image_size, **values))
    model.model_name, model.family = model_name, family.name
    if ckpt_grid is not None and tuple(model.patch_embed.grid) != ckpt_grid:
        state["pos_embed"] = resample_pos_embed(state["pos_embed"], model.patch_embed.grid, ckpt_grid, prefix)
    _check_keys(model, state, path)
    model.load_state_dict(state, strict=True, assign=True)
    return model

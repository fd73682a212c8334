"""Reading a checkpoint file into a flat ``{name: tensor}`` dict without executing pickled code."""

from __future__ import annotations

import argparse
import zipfile
from pathlib import Path

import numpy as np
import torch


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not fit the model; the message names the file or key."""


def _flatten(tree, prefix: str = "") -> dict[str, torch.Tensor]:
    out = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, f"{name}."))
        elif isinstance(value, torch.Tensor):
            out[name] = value
        elif isinstance(value, np.ndarray):
            out[name] = torch.from_numpy(value)
    return out


def _unwrap(obj, path: Path) -> dict[str, torch.Tensor]:
    """Training checkpoints nest the weights under 'model', 'state_dict', 'model_ema' ...; take the weights."""
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: holds a {type(obj).__name__}, not a state dict")
    for key in ("state_dict_ema", "model_ema", "state_dict", "model", "module"):
        if isinstance(obj.get(key), dict) and any(isinstance(v, torch.Tensor) for v in obj[key].values()):
            obj = obj[key]
            break
    state = _flatten(obj)
    if not state:
        raise CheckpointError(f"{path}: no tensors found")
    return {k.removeprefix("module."): v for k, v in state.items()}


def read_state_dict(path) -> dict[str, torch.Tensor]:
    """safetensors, ``torch.save`` files (``weights_only=True``) and ``.npz`` (no pickle) to a flat dict."""
    path = Path(path)
    if path.is_dir():
        candidates = sorted(path.glob("*.safetensors")) + sorted(path.glob("*.bin")) + sorted(path.glob("*.pt*"))
        if not candidates:
            raise CheckpointError(f"{path}: directory holds no .safetensors/.bin/.pt checkpoint")
        path = candidates[0]
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint file")
    with open(path, "rb") as f:
        head = f.read(8)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        if path.suffix == ".npz" or (head.startswith(b"PK") and _is_npz(path)):
            with np.load(path, allow_pickle=False) as data:
                return {k: torch.from_numpy(np.asarray(data[k])) for k in data.files}
        # training checkpoints (timm, the T2T authors') carry their argparse.Namespace: plain data, allowed
        with torch.serialization.safe_globals([argparse.Namespace]):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except CheckpointError:
        raise
    except Exception as exc:  # unpickling refused, corrupt zip, not a checkpoint at all ...
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(exc).__name__}: {exc})") from exc
    return _unwrap(obj, path)


def _is_npz(path: Path) -> bool:
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
    return bool(names) and all(n.endswith(".npy") for n in names)

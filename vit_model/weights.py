"""Our own weight format: ``model.safetensors`` plus ``config.json`` (model name, family, full config)."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from safetensors.torch import load_file, save_file
from torch import nn

from .registry import build_from_config, family_of

CONFIG_FILE, WEIGHTS_FILE = "config.json", "model.safetensors"


def model_record(model: nn.Module) -> dict:
    """What rebuilds the model: its registered name, family and every config value."""
    name = getattr(model, "model_name", None)
    family = getattr(model, "family", None) or (family_of(name) if name else None)
    if family is None:
        raise ValueError("model has no model_name/family; build it with vit_model.create_model")
    return {"model": name, "family": family, "config": asdict(model.config)}


def save_model(model: nn.Module, directory) -> Path:
    """Write consolidated weights and config to ``directory``; returns the weights path."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    record = model_record(model)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    path = directory / WEIGHTS_FILE
    save_file(state, str(path), metadata={"vit_model": json.dumps(record)})
    (directory / CONFIG_FILE).write_text(json.dumps(record, indent=2))
    return path


def read_record(path) -> dict:
    """The config record of a saved model: from ``config.json`` beside it, else the safetensors metadata."""
    path = Path(path)
    directory = path if path.is_dir() else path.parent
    if (directory / CONFIG_FILE).exists():
        return json.loads((directory / CONFIG_FILE).read_text())
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        meta = f.metadata() or {}
    if "vit_model" not in meta:
        raise ValueError(f"{path}: no config.json beside it and no vit_model metadata inside")
    return json.loads(meta["vit_model"])


def load_model(path) -> nn.Module:
    """Rebuild a model saved by :func:`save_model` (a directory or its ``model.safetensors``)."""
    path = Path(path)
    weights = path / WEIGHTS_FILE if path.is_dir() else path
    if not weights.exists():
        raise FileNotFoundError(f"{weights}: no such weights file")
    record = read_record(path)
    config = dict(record["config"])
    config["image_size"] = tuple(config["image_size"])
    model = build_from_config(record["family"], config)
    model.model_name, model.family = record.get("model"), record["family"]
    model.load_state_dict(load_file(str(weights)), strict=True)
    return model

"""The fine-tuning set-up applied to a pre-trained model: a zero-initialised linear head for the new classes and
the new resolution (same patch size, position embeddings resampled in 2D)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from torch import nn

from pipelines.train.config import TrainConfig, model_options

from .checkpoints import fetch, load_source_model


def adapt_for_finetuning(model: nn.Module, *, num_classes: int, image_size: int, reset_head: bool = True) -> nn.Module:
    """``model`` with a zero linear head for ``num_classes`` (or its own head, which must then fit) at
    ``image_size``; changed in place and returned."""
    if reset_head:
        model.reset_head(num_classes)
    elif model.config.num_classes != num_classes:
        raise ValueError(f"init.reset_head: false keeps the checkpoint's head of {model.config.num_classes} classes, "
                         f"but the data has {num_classes}")
    if tuple(model.config.image_size) != (image_size, image_size):
        model.set_image_size(image_size)
    return model


def initial_state(cfg: TrainConfig, *, num_classes: int, tracking_uri: str | None) -> dict:
    """Full (unsharded) state dict of the model a run starts from: ``cfg.init.checkpoint`` adapted to the run's
    classes and resolution. Called on rank 0, which broadcasts it to the others."""
    with tempfile.TemporaryDirectory(prefix="vit-init-") as scratch:
        path = fetch(cfg.init.checkpoint, tracking_uri, Path(scratch))
        options = {k: v for k, v in model_options(cfg).items() if k != "head"}
        model = load_source_model(path, model_name=cfg.model.name, options=options)
    adapt_for_finetuning(model, num_classes=num_classes, image_size=cfg.data.image_size,
                         reset_head=cfg.init.reset_head)
    return model.state_dict()

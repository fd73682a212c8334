"""What a run optimises: ``classification`` (cross-entropy on the labels) or ``masked_patch`` (the paper's
self-supervised masked patch prediction, :mod:`vit_model.masked_patch`: labels are not used).

Masked patch prediction wraps the ViT in :class:`~vit_model.masked_patch.MaskedPatchPredictor` before sharding, so
FSDP gathers the backbone's and the colour head's parameters together; its export is the backbone alone.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from vit_model.masked_patch import Corruption, MaskedPatchPredictor

from .config import TrainConfig

CLASSIFICATION, MASKED_PATCH = "classification", "masked_patch"
MASKED_PATCH_ACCURACY = "train/masked_patch_accuracy"  # share of corrupted patches whose colour is predicted


def model_wrapper(cfg: TrainConfig) -> Callable[[nn.Module], nn.Module] | None:
    """What turns the plain model into the trained module (None: it is trained as it is)."""
    if cfg.objective != MASKED_PATCH:
        return None
    spec = Corruption(ratio=cfg.masked_patch.ratio, mask=cfg.masked_patch.mask, random=cfg.masked_patch.random)
    return lambda backbone: MaskedPatchPredictor(backbone, spec)


def unwrap(model: nn.Module) -> nn.Module:
    """The classifier inside a trained module (the backbone of a masked patch predictor)."""
    return model.backbone if isinstance(model, MaskedPatchPredictor) else model


def loss_and_metrics(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor,
                     objective: str) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The loss to minimise for one micro-batch and the objective's own metrics (detached)."""
    if objective == MASKED_PATCH:
        loss, accuracy = model(inputs)
        return loss, {MASKED_PATCH_ACCURACY: accuracy.detach()}
    return F.cross_entropy(model(inputs).float(), labels), {}


def classifies(cfg: TrainConfig) -> bool:
    """Whether the run's model classifies (top-1 and few-shot evaluation apply)."""
    return cfg.objective == CLASSIFICATION

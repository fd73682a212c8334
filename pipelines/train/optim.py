"""The paper's optimisation recipes: AdamW (pre-training) or SGD with momentum (fine-tuning) with decay on weights
only, warm-up then decay, global-norm clipping, Polyak (EMA) weight averaging, and the split of a global batch into
per-worker micro-batches with gradient accumulation."""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import torch
from torch import nn

from .config import OptimSection, ScheduleSection


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two groups: weights (decayed) and what ``model.no_weight_decay()`` names (biases, norms, embeddings)."""
    exempt = set(model.no_weight_decay()) if hasattr(model, "no_weight_decay") else set()
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (no_decay if name in exempt else decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(model: nn.Module, optim: OptimSection) -> torch.optim.Optimizer:
    """``optim.name``: AdamW (decoupled decay) or SGD with (heavy-ball) momentum."""
    groups = param_groups(model, optim.weight_decay)
    if optim.name == "sgd":
        return torch.optim.SGD(groups, lr=optim.lr, momentum=optim.momentum)
    if optim.name == "adamw":
        return torch.optim.AdamW(groups, lr=optim.lr, betas=tuple(optim.betas), eps=optim.eps)
    raise ValueError(f"optim.name: unknown optimiser {optim.name!r}")


class WeightAverage:
    """Polyak averaging: ``average <- decay * average + (1 - decay) * weights`` after every optimiser step.

    Works on FSDP2 shards as they are (each rank averages its own shards). :meth:`applied` swaps the averaged
    weights into the model for evaluation or export; :meth:`state_dict` is what a checkpoint keeps.
    """

    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.names = [name for name, p in model.named_parameters() if p.requires_grad]
        self.averages = [p.detach().clone() for p in self._params(model)]

    def _params(self, model: nn.Module) -> list[torch.Tensor]:
        params = dict(model.named_parameters())
        return [params[name] for name in self.names]

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        for average, param in zip(self.averages, self._params(model)):
            average.lerp_(param.detach(), 1.0 - self.decay)

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        """Put the averaged weights into the model (for good: at the end of training)."""
        for param, average in zip(self._params(model), self.averages):
            param.copy_(average)

    @contextlib.contextmanager
    def applied(self, model: nn.Module):
        """The model holds the averaged weights inside the block and its own weights again after it."""
        saved = [p.detach().clone() for p in self._params(model)]
        self.copy_to(model)
        try:
            yield model
        finally:
            with torch.no_grad():
                for param, own in zip(self._params(model), saved):
                    param.copy_(own)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return dict(zip(self.names, self.averages))

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        with torch.no_grad():
            for name, average in zip(self.names, self.averages):
                average.copy_(state[name])


def lr_factor(step: int, *, total_steps: int, warmup_steps: int, decay: str) -> float:
    """Multiplier of the peak learning rate for the update with 0-based index ``step``.

    Linear warm-up reaches the peak at update ``warmup_steps``; then linear or cosine decay to 0 at ``total_steps``.
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if decay == "constant":
        return 1.0
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    if decay == "linear":
        return 1.0 - progress
    if decay == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    raise ValueError(f"schedule.decay: unknown decay {decay!r}")


def build_scheduler(optimizer: torch.optim.Optimizer, *, total_steps: int, warmup_steps: int,
                    decay: str) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, total_steps=total_steps, warmup_steps=warmup_steps, decay=decay)
    )


def clip_grad_norm(parameters, max_norm: float) -> torch.Tensor:
    """Global L2 norm of all gradients (across shards), clipped to ``max_norm`` when it is > 0; returns the norm."""
    parameters = [p for p in parameters if p.grad is not None]
    norm = torch.nn.utils.get_total_norm([p.grad for p in parameters], 2.0)
    if hasattr(norm, "full_tensor"):  # DTensor (FSDP2 shards): materialise the reduced norm on every rank
        norm = norm.full_tensor()
    if max_norm > 0:
        torch.nn.utils.clip_grads_with_norm_(parameters, max_norm, norm)
    return norm


@dataclass(frozen=True)
class BatchSplit:
    global_batch: int
    per_worker: int  # examples one worker processes per optimiser step
    micro: int  # examples per forward/backward pass
    accumulation: int  # forward/backward passes per optimiser step


def split_batch(schedule: ScheduleSection, num_workers: int) -> BatchSplit:
    """Global batch -> per-worker batch -> micro-batches (validated by the config already)."""
    per_worker = schedule.global_batch_size // num_workers
    micro = schedule.micro_batch_size or per_worker
    return BatchSplit(schedule.global_batch_size, per_worker, micro, per_worker // micro)

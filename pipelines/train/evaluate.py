"""Evaluation under FSDP: every rank runs the same number of forward passes (sharded parameters are gathered
collectively), and counts are summed across ranks, so the result is exact for uneven shards too."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import torch
import torch.distributed as dist
from torch import nn

from .parallelize import sharded_methods


def lockstep(batches: Iterable, device: torch.device) -> Iterator:
    """This rank's batches while any rank still has one; ``None`` when this rank ran out before the others."""
    iterator = iter(batches)
    while True:
        batch = next(iterator, None)
        more = torch.tensor([0 if batch is None else 1], device=device)
        dist.all_reduce(more, op=dist.ReduceOp.MAX)
        if not more.item():
            return
        yield batch


@torch.no_grad()
def top1_accuracy(model: nn.Module, batches: Iterable, *, device: torch.device, dummy: torch.Tensor) -> float:
    """Top-1 over all ranks' ``(inputs, labels)`` batches; ``dummy`` is one input that idle ranks forward."""
    was_training = model.training
    model.eval()
    totals = torch.zeros(2, dtype=torch.float64, device=device)
    for batch in lockstep(batches, device):
        inputs, labels = batch if batch is not None else (dummy, None)
        logits = model(inputs.to(device, non_blocking=True))
        if labels is not None:
            labels = labels.to(device, non_blocking=True)
            totals[0] += (logits.argmax(-1) == labels).sum()
            totals[1] += labels.numel()
    model.train(was_training)
    dist.all_reduce(totals)
    if totals[1] == 0:
        raise ValueError("evaluation split is empty")
    return (totals[0] / totals[1]).item()


@torch.no_grad()
def pre_logit_features(model: nn.Module, batches: Iterable, *, device: torch.device,
                       dummy: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Frozen pre-logit features and labels of every rank's batches, gathered on every rank (float32, CPU)."""
    was_training = model.training
    model.eval()
    features, labels = [], []
    with sharded_methods(model):
        for batch in lockstep(batches, device):
            inputs, batch_labels = batch if batch is not None else (dummy, None)
            out = model.forward_head(model.forward_features(inputs.to(device, non_blocking=True)), pre_logits=True)
            if batch_labels is not None:
                features.append(out.float().cpu())
                labels.append(batch_labels.cpu())
    model.train(was_training)
    local = (torch.cat(features) if features else torch.zeros(0), torch.cat(labels) if labels else torch.zeros(0))
    gathered = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, local)
    parts = [(f, y) for f, y in gathered if len(y)]
    return torch.cat([f for f, _ in parts]), torch.cat([y for _, y in parts]).long()

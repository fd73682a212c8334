"""Sharded checkpoints through ``torch.distributed.checkpoint`` and ``ray.train.Checkpoint``, resume, and the
consolidated safetensors export.

Every rank writes its shards (and rank 0 the metadata) into its own temporary directory and reports it; Ray Train
merges the directories into one checkpoint in run storage. A checkpoint holds the model and optimiser (sharded),
the scheduler, step, images seen, each rank's RNG state and the run config, so a run can be rebuilt from it alone.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed.checkpoint as dcp
import yaml
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_state_dict,
    set_state_dict,
)
from torch.distributed.checkpoint.stateful import Stateful

import vit_model

STATE_FILE, CONFIG_FILE, RNG_DIR, EXPORT_DIR = "train_state.json", "run_config.yaml", "rng", "export"


class ModelAndOptimizer(Stateful):
    """What DCP saves and loads sharded: model and optimiser state in FSDP2's DTensor form."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer):
        self.model, self.optimizer = model, optimizer

    def state_dict(self):
        model_state, optim_state = get_state_dict(self.model, self.optimizer)
        return {"model": model_state, "optim": optim_state}

    def load_state_dict(self, state_dict):
        set_state_dict(self.model, self.optimizer, model_state_dict=state_dict["model"],
                       optim_state_dict=state_dict["optim"])


@dataclass
class Progress:
    step: int = 0  # optimiser steps done
    images_seen: int = 0


def _rng_state() -> dict:
    state = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["cpu"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def write_checkpoint(directory: Path, *, model, optimizer, scheduler, progress: Progress, run_config: dict,
                     rank: int) -> None:
    """Collective: every rank writes its part of the checkpoint into ``directory`` (its own local directory)."""
    dcp.save({"train": ModelAndOptimizer(model, optimizer)}, checkpoint_id=str(directory))
    (directory / RNG_DIR).mkdir(exist_ok=True)
    torch.save(_rng_state(), directory / RNG_DIR / f"rank-{rank}.pt")
    if rank == 0:
        state = {"step": progress.step, "images_seen": progress.images_seen, "scheduler": scheduler.state_dict(),
                 "world_size": torch.distributed.get_world_size()}
        (directory / STATE_FILE).write_text(json.dumps(state, indent=2))
        (directory / CONFIG_FILE).write_text(yaml.safe_dump(run_config, sort_keys=False))


def read_checkpoint(directory: Path, *, model, optimizer, scheduler, rank: int) -> Progress:
    """Collective: load a checkpoint written by :func:`write_checkpoint` (any worker count) into the live objects."""
    directory = Path(directory)
    state_path = directory / STATE_FILE
    if not state_path.exists():
        raise FileNotFoundError(f"{directory}: not a training checkpoint (no {STATE_FILE})")
    dcp.load({"train": ModelAndOptimizer(model, optimizer)}, checkpoint_id=str(directory))
    state = json.loads(state_path.read_text())
    scheduler.load_state_dict(state["scheduler"])
    rng_path = directory / RNG_DIR / f"rank-{rank}.pt"
    if rng_path.exists():  # absent when the run restarts with more workers than were saved
        _set_rng_state(torch.load(rng_path, weights_only=True))
    return Progress(step=state["step"], images_seen=state["images_seen"])


def read_run_config(directory) -> dict:
    """The run config stored inside a checkpoint."""
    return yaml.safe_load((Path(directory) / CONFIG_FILE).read_text())


def export_consolidated(model: nn.Module, directory: Path, rank: int) -> Path | None:
    """Collective: gather the full weights onto rank 0's CPU and write ``model.safetensors`` + ``config.json``
    with :func:`vit_model.save_model` (loadable by :func:`vit_model.load_model`). Returns the directory on rank 0."""
    full = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if rank != 0:
        return None
    with torch.device("meta"):
        plain = vit_model.create_model(model.model_name, **_model_kwargs(model.config))
    plain.load_state_dict(full, assign=True, strict=True)
    vit_model.save_model(plain, directory)
    return directory


def _model_kwargs(config) -> dict:
    from dataclasses import asdict

    return asdict(config)


def new_checkpoint_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="vit-ckpt-"))


def remove(directory: Path) -> None:
    shutil.rmtree(directory, ignore_errors=True)

"""Sharded checkpoints through ``torch.distributed.checkpoint`` and ``ray.train.Checkpoint``, resume, and the
consolidated safetensors export.

Every rank writes its shards (and rank 0 the metadata) into its own temporary directory and reports it; Ray Train
merges the directories into one checkpoint in run storage. A checkpoint holds the model and optimiser (sharded),
the scheduler, step, images seen, each rank's RNG state and the run config, so a run can be rebuilt from it alone.

Reading one never unpickles arbitrary objects: DCP's metadata is read with an unpickler that knows only DCP's own
metadata classes, its non-tensor items and the RNG states with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import pickle
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed.checkpoint as dcp
import yaml
from torch import nn
from torch.distributed.checkpoint.default_planner import DefaultLoadPlanner
from torch.distributed.checkpoint.filesystem import FileSystemReader
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_state_dict,
    set_state_dict,
)
from torch.distributed.checkpoint.stateful import Stateful

import vit_model

STATE_FILE, CONFIG_FILE, RNG_DIR, EXPORT_DIR = "train_state.json", "run_config.yaml", "rng", "export"
UNLOGGED_FILE = "unlogged_metrics.json"  # metrics MLflow did not have yet when the checkpoint was written


class UnsafeCheckpointError(pickle.UnpicklingError):
    """A checkpoint file asks to build an object that no checkpoint of ours contains (possibly planted code)."""


# Everything a DCP metadata file of ours refers to; anything else (os.system, builtins.eval, ...) is refused.
_METADATA_GLOBALS = {("pathlib", "PosixPath"), ("pathlib", "WindowsPath"), ("pathlib", "PurePosixPath"),
                     ("torch", "Size"), ("torch.serialization", "_get_layout"), ("collections", "OrderedDict")}
_METADATA_MODULES = ("torch.distributed.checkpoint.metadata", "torch.distributed.checkpoint.filesystem")


class _MetadataUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        allowed = (module, name) in _METADATA_GLOBALS or (module in _METADATA_MODULES and not name.startswith("__"))
        if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
            allowed = True
        if not allowed:
            raise UnsafeCheckpointError(f"checkpoint metadata refers to {module}.{name}, which is not part of a "
                                        "checkpoint; refusing to load it")
        return super().find_class(module, name)


class SafeFileSystemReader(FileSystemReader):
    """DCP's file reader with the metadata read by a restricted unpickler (DCP itself uses ``pickle.load``)."""

    def read_metadata(self, *args, **kwargs):
        path = self._get_metadata_path(kwargs.get("rank"))
        with self.fs.create_stream(path, "rb") as stream:
            data = stream.read()
        try:
            metadata = _MetadataUnpickler(io.BytesIO(data)).load()
        except UnsafeCheckpointError as exc:
            raise UnsafeCheckpointError(f"{path}: {exc}") from None
        if getattr(metadata, "storage_meta", None) is None:
            from torch.distributed.checkpoint.metadata import StorageMeta

            metadata.storage_meta = StorageMeta()
        metadata.storage_meta.load_id = self.load_id
        return metadata


class SafeLoadPlanner(DefaultLoadPlanner):
    """DCP's load planner with non-tensor items read by ``torch.load(weights_only=True)`` (DCP's: ``False``)."""

    def load_bytes(self, read_item, value) -> None:
        try:
            loaded = torch.load(value, weights_only=True)
        except pickle.UnpicklingError as exc:
            why = next((line.strip() for line in str(exc).splitlines() if "GLOBAL" in line), "not plain data")
            raise UnsafeCheckpointError(f"checkpoint item {read_item.dest_index.fqn!r}: {why}; refusing to load "
                                        "it") from None
        if self.flatten_state_dict:
            from torch.distributed.checkpoint._traverse import set_element

            set_element(self.original_state_dict, self.mappings[read_item.dest_index.fqn], loaded)
        else:
            self.state_dict[read_item.dest_index.fqn] = loaded


def load_sharded(state: dict, directory) -> None:
    """Collective: ``dcp.load`` of ``state`` from ``directory`` through the safe reader and planner; a planted
    object is an :class:`UnsafeCheckpointError` (not buried in DCP's per-rank exception)."""
    from torch.distributed.checkpoint.api import CheckpointException

    reader = SafeFileSystemReader(str(directory))
    reader.read_metadata()  # refused here, by name, before DCP folds the error into its own message
    try:
        dcp.load(state, storage_reader=reader, planner=SafeLoadPlanner())
    except CheckpointException as exc:
        unsafe = [error for error, _ in exc.failures.values() if isinstance(error, UnsafeCheckpointError)]
        if unsafe:
            raise unsafe[0] from None
        raise


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
                     rank: int, extra: dict | None = None, unlogged: list[dict] | None = None) -> None:
    """Collective: every rank writes its part of the checkpoint into ``directory`` (its own local directory).
    ``extra``: more sharded tensors saved beside the model (``{"ema": averaged weights}``); ``unlogged``: rank 0's
    metrics not yet in MLflow (a tracking server that is down), logged again on resume."""
    dcp.save({"train": ModelAndOptimizer(model, optimizer), **(extra or {})}, checkpoint_id=str(directory))
    (directory / RNG_DIR).mkdir(exist_ok=True)
    torch.save(_rng_state(), directory / RNG_DIR / f"rank-{rank}.pt")
    if rank == 0:
        state = {"step": progress.step, "images_seen": progress.images_seen, "scheduler": scheduler.state_dict(),
                 "world_size": torch.distributed.get_world_size()}
        (directory / STATE_FILE).write_text(json.dumps(state, indent=2))
        (directory / CONFIG_FILE).write_text(yaml.safe_dump(run_config, sort_keys=False))
        if unlogged:
            (directory / UNLOGGED_FILE).write_text(json.dumps(unlogged))


def read_checkpoint(directory: Path, *, model, optimizer, scheduler, rank: int, extra: dict | None = None) -> Progress:
    """Collective: load a checkpoint written by :func:`write_checkpoint` (any worker count) into the live objects
    (``extra``'s tensors in place)."""
    directory = Path(directory)
    state = _read_state(directory)
    load_sharded({"train": ModelAndOptimizer(model, optimizer), **(extra or {})}, directory)
    scheduler.load_state_dict(state["scheduler"])
    rng_path = directory / RNG_DIR / f"rank-{rank}.pt"
    if rng_path.exists():  # absent when the run restarts with more workers than were saved
        _set_rng_state(torch.load(rng_path, weights_only=True))
    return Progress(step=state["step"], images_seen=state["images_seen"])


def read_progress(directory) -> Progress:
    """Where a checkpoint stopped, without loading its tensors (the data can start before the model exists)."""
    state = _read_state(Path(directory))
    return Progress(step=state["step"], images_seen=state["images_seen"])


def _read_state(directory: Path) -> dict:
    state_path = directory / STATE_FILE
    if not state_path.exists():
        raise FileNotFoundError(f"{directory}: not a training checkpoint (no {STATE_FILE})")
    return json.loads(state_path.read_text())


def read_unlogged(directory) -> list[dict]:
    """The metrics a checkpoint holds because MLflow did not have them when it was written (usually none)."""
    path = Path(directory) / UNLOGGED_FILE
    return json.loads(path.read_text()) if path.exists() else []


def read_run_config(directory) -> dict:
    """The run config stored inside a checkpoint."""
    return yaml.safe_load((Path(directory) / CONFIG_FILE).read_text())


def export_consolidated(model: nn.Module, directory: Path, rank: int) -> Path | None:
    """Collective: gather the full weights onto rank 0's CPU and write ``model.safetensors`` + ``config.json``
    with :func:`vit_model.save_model` (loadable by :func:`vit_model.load_model`). Returns the directory on rank 0.
    A pre-training wrapper with a ``backbone`` (masked patch prediction) exports the backbone alone."""
    full = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if rank != 0:
        return None
    if hasattr(model, "backbone"):
        full = {k[len("backbone."):]: v for k, v in full.items() if k.startswith("backbone.")}
        model = model.backbone
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


class StorageUnwritableError(OSError):
    """Checkpoints cannot be written to the run's storage (read-only, full, not a directory, ...)."""


PROBE_BYTES = 64 * 1024  # a checkpoint is bigger; storage that cannot take this cannot take one


def check_storage_writable(storage: str) -> None:
    """Raise :class:`StorageUnwritableError` naming ``storage`` unless a file can be written and removed there:
    storage that is read-only, full or not a directory fails here, before any training, not at the first checkpoint.
    """
    from pipelines.data.storage import resolve

    probe = f".vit-study-write-probe-{uuid.uuid4().hex}"
    filesystem, root = resolve(storage)
    path = f"{root.rstrip('/')}/{probe}"
    try:
        filesystem.create_dir(root, recursive=True)
        with filesystem.open_output_stream(path) as stream:
            stream.write(b"\0" * PROBE_BYTES)
    except OSError as exc:
        reason = os.strerror(exc.errno) if exc.errno else str(exc)  # "Read-only file system", "No space left ..."
        raise StorageUnwritableError(f"{storage}: cannot write checkpoints there ({reason})") from exc
    finally:
        with contextlib.suppress(OSError):
            filesystem.delete_file(path)

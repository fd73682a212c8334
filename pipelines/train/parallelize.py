"""FSDP2 for any model of the family, applied from outside: the model never knows it is sharded.

Order (as in torchtitan): build on the meta device -> activation checkpointing -> torch.compile per block ->
``fully_shard`` per block / stage, then the root -> allocate the local shards -> initialise the weights.
"""

from __future__ import annotations

import contextlib
import warnings

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard, register_fsdp_forward_method
from torch.utils.checkpoint import checkpoint

import vit_model

from .config import ParallelSection

UNIT_CONTAINERS = ("blocks", "stages")  # lists whose items are the sharding units (ViT blocks, ResNet stages)
FORWARD_METHODS = ("forward_features", "forward_head")  # called directly by few-shot evaluation


def shard_units(model: nn.Module) -> list[nn.Module]:
    """Items of the outermost ``blocks``/``stages`` lists (ViT blocks, ResNet stages - not the blocks inside a
    stage; a hybrid has both its backbone's stages and its transformer blocks)."""
    units, unit_names = [], []
    for name, module in model.named_modules():
        if any(name.startswith(prefix + ".") for prefix in unit_names):
            continue  # inside a unit already taken
        if name.rsplit(".", 1)[-1] in UNIT_CONTAINERS and isinstance(module, (nn.ModuleList, nn.Sequential)):
            for child_name, child in module.named_children():
                units.append(child)
                unit_names.append(f"{name}.{child_name}")
    return units


def mixed_precision(mode: str, device_type: str) -> MixedPrecisionPolicy:
    """bf16 compute with fp32 master weights and fp32 gradient reduction on GPU ("auto"); fp32 on CPU."""
    if mode == "bf16" or (mode == "auto" and device_type == "cuda"):
        return MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
    return MixedPrecisionPolicy()


def _checkpointed(forward):
    def run(*args, **kwargs):
        return checkpoint(forward, *args, use_reentrant=False, **kwargs)

    return run


def parallelize(model: nn.Module, mesh, parallel: ParallelSection) -> nn.Module:
    """Apply activation checkpointing, compile and FSDP2 in place; parameter names are unchanged."""
    units = shard_units(model)
    if parallel.activation_checkpointing:
        for unit in units:
            unit.forward = _checkpointed(unit.forward)  # keeps state-dict keys, unlike a wrapper module
    if parallel.compile:
        for unit in units:
            unit.compile()
    policy = mixed_precision(parallel.mixed_precision, mesh.device_type)
    for unit in units:
        fully_shard(unit, mesh=mesh, mp_policy=policy, reshard_after_forward=parallel.reshard_after_forward)
    fully_shard(model, mesh=mesh, mp_policy=policy, reshard_after_forward=parallel.reshard_after_forward)
    return model


@contextlib.contextmanager
def sharded_methods(model: nn.Module, names=FORWARD_METHODS):
    """Make methods other than ``forward`` gather the root's shards while the block runs (few-shot features call
    ``forward_features``/``forward_head`` directly). Scoped, so training's ``forward`` never nests them."""
    patched = [name for name in names if hasattr(model, name) and name not in vars(model)]
    for name in patched:
        register_fsdp_forward_method(model, name)
    try:
        yield model
    finally:
        for name in patched:
            vars(model).pop(name, None)


def build_model(model_name: str, *, num_classes: int, image_size: int, options: dict, seed: int,
                parallel: ParallelSection, mesh, device: torch.device, wrap=None) -> nn.Module:
    """A sharded, initialised model. Nothing is ever materialised whole except, with init="broadcast", once on
    rank 0's CPU to draw the initial weights, which makes them the same for any number of workers.
    ``wrap`` (optional) turns the plain model into the trained module (e.g. a masked patch predictor)."""
    kwargs = dict(num_classes=num_classes, image_size=image_size, **options)

    def create():
        model = vit_model.create_model(model_name, **kwargs)
        return wrap(model) if wrap is not None else model

    with torch.device("meta"):
        model = create()
    parallelize(model, mesh, parallel)
    model.to_empty(device=device)
    rank = dist.get_rank()
    if parallel.init == "broadcast":
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

        full = {}
        if rank == 0:
            torch.manual_seed(seed)
            full = create().state_dict()
        set_model_state_dict(model, full, options=StateDictOptions(full_state_dict=True, broadcast_from_rank0=True))
    else:
        # DTensor's offset-based RNG keeps shards distinct on CUDA; on CPU each rank needs its own stream.
        torch.manual_seed(seed if device.type == "cuda" else seed + 1000 * rank)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="DTensor random operators")
            model.init_weights()
    return model


def local_parameter_count(model: nn.Module) -> int:
    """Elements of the parameters this rank holds (its shards)."""
    return sum((p.to_local() if hasattr(p, "to_local") else p).numel() for p in model.parameters())

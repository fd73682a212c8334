"""Resuming from a training checkpoint never unpickles arbitrary objects: a malicious pickle planted in a checkpoint
(as DCP's ``.metadata`` file, or as one of its non-tensor items) is refused and its code never runs, while a real
checkpoint still restores exactly. (PyTorch's DCP reader itself would run both: it uses ``pickle.load`` and
``torch.load(weights_only=False)``.)"""

from __future__ import annotations

import os
import pickle

import pytest
import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp

import vit_model
from pipelines.train import checkpointing


class Planted:
    """Unpickling this runs a shell command (it touches ``marker``): what an attacker would plant."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.fixture(scope="module")
def process_group(tmp_path_factory):
    """A one-process gloo group: what ``write_checkpoint``'s collectives need."""
    store = tmp_path_factory.mktemp("pg") / "store"
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=0, world_size=1)
    try:
        yield
    finally:
        dist.destroy_process_group()


def _objects(seed: int):
    torch.manual_seed(seed)
    model = vit_model.create_model("vit-pi/4", num_classes=10, image_size=32)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    return model, optimizer, scheduler


@pytest.fixture
def checkpoint(process_group, tmp_path):
    model, optimizer, scheduler = _objects(0)
    model(torch.randn(2, 3, 32, 32)).sum().backward()
    optimizer.step()
    directory = tmp_path / "ckpt"
    directory.mkdir()
    checkpointing.write_checkpoint(directory, model=model, optimizer=optimizer, scheduler=scheduler,
                                   progress=checkpointing.Progress(step=7, images_seen=224), run_config={}, rank=0)
    return directory, model


def test_a_real_checkpoint_restores_exactly(checkpoint):
    directory, saved = checkpoint
    model, optimizer, scheduler = _objects(1)
    progress = checkpointing.read_checkpoint(directory, model=model, optimizer=optimizer, scheduler=scheduler, rank=0)
    assert (progress.step, progress.images_seen) == (7, 224)
    for (name, a), (_, b) in zip(saved.state_dict().items(), model.state_dict().items()):
        assert torch.equal(a, b), name
    assert optimizer.state_dict()["param_groups"][0]["lr"] == 1e-3


def test_planted_metadata_pickle_is_refused_and_never_run(checkpoint, tmp_path):
    directory, _ = checkpoint
    marker = tmp_path / "pwned"
    (directory / ".metadata").write_bytes(pickle.dumps(Planted(marker)))
    model, optimizer, scheduler = _objects(1)
    with pytest.raises(checkpointing.UnsafeCheckpointError, match=r"\.metadata: .*posix\.system.*refusing"):
        checkpointing.read_checkpoint(directory, model=model, optimizer=optimizer, scheduler=scheduler, rank=0)
    assert not marker.exists()


def test_planted_non_tensor_item_is_refused_and_never_run(process_group, tmp_path):
    marker, directory = tmp_path / "pwned", tmp_path / "ckpt"
    dcp.save({"item": Planted(marker), "weight": torch.ones(3)}, checkpoint_id=str(directory))
    assert not marker.exists()  # saving runs nothing
    state = {"item": None, "weight": torch.zeros(3)}
    with pytest.raises(checkpointing.UnsafeCheckpointError, match="checkpoint item 'item'"):
        checkpointing.load_sharded(state, directory)
    assert not marker.exists()

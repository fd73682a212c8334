"""Where a worker's batches come from: Ray Data shards (real data) or a deterministic synthetic source.

Both yield ``(patches uint8 [B, N, P*P*C], labels int64 [B])`` on the CPU; the model normalises on the device.
The synthetic source makes the global batch of step ``s`` a function of ``(seed, s)`` alone and hands rank ``r``
its slice, so any number of workers sees the same global batches (the FSDP equivalence test relies on it) and a
resumed run continues with exactly the batches it would have seen.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from .optim import BatchSplit
from .prefetch import Prefetcher

TRAIN, VAL, TEST, FEWSHOT_TRAIN, FEWSHOT_EVAL = "train", "val", "test", "fewshot_train", "fewshot_eval"


@dataclass(frozen=True)
class PatchGeometry:
    num_patches: int
    patch_dim: int  # P * P * C

    def dummy(self) -> torch.Tensor:
        """One blank input, forwarded by ranks that have run out of evaluation batches."""
        return torch.zeros(1, self.num_patches, self.patch_dim, dtype=torch.uint8)


def input_patch_size(model_config) -> int:
    """Pixels per side of the patches a model takes: ``embed_stride`` for models with a convolutional stem
    (BiT ResNets, hybrids), else ``patch_size``. The data pipeline patchifies with it."""
    size = getattr(model_config, "embed_stride", None) or getattr(model_config, "patch_size", None)
    if not size:
        raise ValueError(f"{type(model_config).__name__} has neither embed_stride nor patch_size: the data pipeline "
                         "needs the patch size the model takes")
    return int(size)


def patch_geometry(model_config) -> PatchGeometry:
    patch = input_patch_size(model_config)
    grid_h, grid_w = model_config.grid
    return PatchGeometry(grid_h * grid_w, patch * patch * getattr(model_config, "in_chans", 3))


class SyntheticSource:
    """Class prototypes plus per-example noise: learnable, deterministic, no I/O.

    Example ``i`` of a split has label ``i % num_classes`` and pixels fixed by ``(seed, split, i)``.
    """

    def __init__(self, *, geometry: PatchGeometry, num_classes: int, train_size: int, eval_size: int, seed: int,
                 split: BatchSplit, rank: int, world_size: int, eval_batch_size: int, fewshot_train_size: int,
                 fewshot_eval_size: int):
        self.geometry, self.num_classes, self.seed = geometry, num_classes, seed
        self.sizes = {TRAIN: train_size, VAL: eval_size, TEST: eval_size}
        # evaluation views: (split, how many of its first examples)
        self.views = {TRAIN: (TRAIN, train_size), VAL: (VAL, eval_size), TEST: (TEST, eval_size),
                      FEWSHOT_TRAIN: (VAL, fewshot_train_size), FEWSHOT_EVAL: (TEST, fewshot_eval_size)}
        self.split, self.rank, self.world_size, self.eval_batch_size = split, rank, world_size, eval_batch_size
        shape = (geometry.num_patches, geometry.patch_dim)
        self.prototypes = np.random.default_rng([seed, 7]).integers(0, 256, (num_classes, *shape), dtype=np.uint8)
        self._cache: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def _split(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        if name not in self._cache:
            key = {TRAIN: 0, VAL: 1, TEST: 2}[name]
            n = self.sizes[name]
            labels = np.arange(n) % self.num_classes
            noise = np.random.default_rng([self.seed, key]).integers(0, 256, (n, *self.prototypes.shape[1:]))
            images = (self.prototypes[labels].astype(np.int32) + noise) // 2
            self._cache[name] = (images.astype(np.uint8), labels.astype(np.int64))
        return self._cache[name]

    def global_batch_indices(self, step: int) -> np.ndarray:
        """Training example indices of the global batch of 0-based step ``step`` (a fresh permutation per epoch)."""
        size, batch = self.sizes[TRAIN], self.split.global_batch
        per_epoch = size // batch
        epoch, within = divmod(step, per_epoch)
        order = np.random.default_rng([self.seed, 11, epoch]).permutation(size)
        return order[within * batch:(within + 1) * batch]

    def train_microbatches(self, start_step: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        images, labels = self._split(TRAIN)
        step = start_step
        while True:
            mine = self.global_batch_indices(step).reshape(self.world_size, -1)[self.rank]
            for micro in mine.reshape(self.split.accumulation, self.split.micro):
                yield torch.from_numpy(images[micro]), torch.from_numpy(labels[micro])
            step += 1

    def eval_batches(self, name: str) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        split, limit = self.views[name]
        images, labels = self._split(split)
        indices = np.array_split(np.arange(min(limit, len(labels))), self.world_size)[self.rank]
        for start in range(0, len(indices), self.eval_batch_size):
            chunk = indices[start:start + self.eval_batch_size]
            yield torch.from_numpy(images[chunk]), torch.from_numpy(labels[chunk])


class RayDataSource:
    """This worker's shards of the Ray datasets handed to the trainer (``train``, ``val``, ``test``, ...)."""

    def __init__(self, *, split: BatchSplit, eval_batch_size: int, seed: int, first_epoch: int = 0,
                 prefetch: int = 0):
        self.split, self.eval_batch_size, self.seed, self.first_epoch = split, eval_batch_size, seed, first_epoch
        self.prefetch = prefetch

    @staticmethod
    def _shard(name: str):
        import ray.train

        return ray.train.get_dataset_shard(name)

    def train_microbatches(self, start_step: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Endless micro-batches, epoch after epoch (a resumed run starts a fresh pass over its shard, in the epoch
        it stopped in), pulled ``prefetch`` ahead by a background thread when ``prefetch > 0``. Close it when done."""
        batches = self._epochs(self._shard(TRAIN))  # the shard is looked up here, in Ray Train's thread
        return Prefetcher(batches, self.prefetch) if self.prefetch else batches

    def _epochs(self, shard) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        from pipelines.data import train_iter_kwargs

        epoch = self.first_epoch
        while True:
            count = 0
            kwargs = train_iter_kwargs(self.split.micro, self.seed, epoch)  # seeded local shuffle per epoch
            for batch in shard.iter_torch_batches(drop_last=True, **kwargs):
                count += 1
                yield batch["patches"], batch["label"]
            if count == 0:
                raise ValueError(f"this worker's training shard holds fewer than one micro-batch "
                                 f"({self.split.micro} examples); use more data or a smaller batch")
            epoch += 1

    def eval_batches(self, name: str) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for batch in self._shard(name).iter_torch_batches(batch_size=self.eval_batch_size):
            yield batch["patches"], batch["label"]

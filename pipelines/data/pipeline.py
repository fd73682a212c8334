"""Ray Data datasets for training: ``read_parquet`` -> subset -> decode -> augment -> patchify.

Typical use (the driver prepares once and passes the datasets to a ``TorchTrainer``)::

    prepared = ensure_prepared("../shared/data/cifar10-jpg")
    datasets = build_datasets(prepared, image_size=32, patch_size=4, train_fraction=0.3, seed=0)
    train_rows = subset_sizes(prepared, train_fraction=0.3)["train"]  # without executing anything
    trainer = TorchTrainer(train_func, datasets=datasets, ...)

    # in train_func, on every worker:
    shard = ray.train.get_dataset_shard("train")
    for epoch in range(epochs):
        for batch in shard.iter_torch_batches(**train_iter_kwargs(batch_size, seed, epoch)):
            patches, labels = batch["patches"], batch["label"]  # uint8 [B, N, P*P*3], int64 [B]

Ray Train hands each worker ``floor(rows / workers)`` rows of a split (``equal=True`` splitting), so
``steps_per_epoch = subset_sizes(...)["train"] // workers // per_worker_batch`` (with ``drop_last=True``).

Shuffling without holding the dataset: ``prepare`` stores every shard in a random order, the train dataset
reads its files in a seeded order that changes every epoch (``FileShuffleConfig(reseed_after_execution=True)``)
and ``train_iter_kwargs`` adds a seeded local shuffle buffer of a few batches.

Augmentation draws are a hash of ``(seed, n, id)`` where ``n`` counts the executions of the dataset (its
epochs): the same rows get the same crops for the same seed and epoch on any number of workers or nodes, and
new crops every epoch. ``n`` restarts at 0 when a new process builds the datasets (e.g. after a restore).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import ray
from ray.data import DataContext, FileShuffleConfig

from .manifest import load_manifest, shard_paths
from .subsets import DEFAULT_VAL_FRACTION, Plan, Selection, plan_selections
from .transforms import TRAIN_CROP_SCALE, augment_key, binary_views, images_to_patches

READ_TASKS_PER_CPU = 2
SHUFFLE_BUFFER_BATCHES = 4  # local shuffle buffer, in batches: the shards are already in random order
DECODED_BATCH_BYTES = 32 << 20  # decoded pixels per decode call: bounds a task's memory at 384 px
OUTPUT_BLOCK_BYTES = 8 << 20  # blocks leaving a decode task (see _read_shards)


def decoded_batch_rows(image_size: int) -> int:
    """Rows decoded at a time: about ``DECODED_BATCH_BYTES`` of decoded pixels, between 16 and 1024."""
    return int(min(1024, max(16, DECODED_BATCH_BYTES // (3 * image_size * image_size))))


def decode_batch(batch: pa.Table, *, selection: Selection | None, train: bool, image_size: int, patch_size: int,
                 seed: int, crop_scale: tuple[float, float], with_ids: bool) -> dict[str, np.ndarray] | None:
    """Keep the selected rows of ``batch``, decode, augment (train) or resize + centre-crop, patchify.

    Returns ``{"patches", "label"[, "id"]}``, or ``None`` when no row is selected.
    """
    ids = batch.column("id").to_numpy()
    labels = batch.column("label").to_numpy()
    if selection is not None:
        keep = selection.mask(ids, labels)
        if not keep.all():
            batch, ids, labels = batch.filter(pa.array(keep)), ids[keep], labels[keep]
    if not len(ids):
        return None
    # The execution index counts executions of this dataset in this process (epochs; Ray Data's own seeded
    # random ops use it): augmentations are a function of (seed, execution index, id).
    epoch = DataContext.get_current()._execution_idx if train else 0
    patches = images_to_patches(binary_views(batch.column("image")), image_size=image_size, patch_size=patch_size,
                                train=train, ids=ids, key=augment_key(seed, epoch), crop_scale=crop_scale)
    out = {"patches": patches, "label": labels.astype(np.int64)}
    if with_ids:
        out["id"] = ids
    return out


def decode_block(block: pa.Table, **kwargs) -> Iterator[dict[str, np.ndarray]]:
    """The ``map_batches`` function: a whole read block in, decoded batches of :func:`decoded_batch_rows` rows
    out, one at a time.

    Taking whole blocks (``batch_size=None``) lets Ray fuse the read and the decode into one task (a fixed
    ``batch_size`` kept them apart: twice the tasks, and the encoded bytes through the object store); yielding
    bounds the memory of a task to one decoded batch.
    """
    rows = decoded_batch_rows(kwargs["image_size"])
    for start in range(0, block.num_rows, rows):
        out = decode_batch(block.slice(start, rows), **kwargs)
        if out is not None:  # empty outputs are skipped: Ray pickles an empty tensor column instead of typing it
            yield out


def default_read_tasks(num_files: int) -> int:
    """Read (and fused decode) tasks per epoch: ``READ_TASKS_PER_CPU`` per CPU of the cluster, at most one per
    shard. Each Ray task costs a fixed scheduling overhead (measured at 0.1-0.2 s on a loaded 2-CPU machine), so
    fewer, longer tasks than shards pay off while there are still enough to keep every CPU busy."""
    cpus = ray.cluster_resources().get("CPU", 1) if ray.is_initialized() else (os.cpu_count() or 1)
    return max(1, min(num_files, int(READ_TASKS_PER_CPU * cpus)))


def _read_shards(files: list[str], shuffle: FileShuffleConfig | None, progress_bars: bool,
                 read_tasks: int) -> ray.data.Dataset:
    """``read_parquet`` split into ``read_tasks`` tasks of whole shards, so the first batch waits for one task's
    first shard, not for all of them.

    Ray 2.60's default Parquet reader (datasource V2) ignores ``override_num_blocks`` and packs row groups into
    128 MiB read units: all of CIFAR-10 became one read task and one decode task, and the first batch came
    after the whole epoch. The V1 reader honours ``override_num_blocks``; it is chosen for this call only, and
    the progress-bar setting applies to its file-sampling bar too.
    """
    context = DataContext.get_current()
    saved = {"use_datasource_v2": getattr(context, "use_datasource_v2", None),
             "enable_progress_bars": context.enable_progress_bars}
    try:
        if saved["use_datasource_v2"] is not None:
            context.use_datasource_v2 = False
        context.enable_progress_bars = progress_bars
        ds = ray.data.read_parquet(files, shuffle=shuffle, override_num_blocks=read_tasks)
    finally:
        for key, value in saved.items():
            if value is not None:
                setattr(context, key, value)
    ds.context.enable_progress_bars = progress_bars
    # A task's yielded batches are merged into blocks of up to this size before the consumer sees them: keep
    # it small so the first batch leaves a task after a few decoded batches, not after the whole task.
    ds.context.target_max_block_size = OUTPUT_BLOCK_BYTES
    return ds


def build_datasets(prepared_dir: str | Path, *, image_size: int, patch_size: int, train_fraction: float = 1.0,
                   train_count: int | None = None, val_fraction: float = DEFAULT_VAL_FRACTION, seed: int = 0,
                   splits: Sequence[str] = ("train", "val", "test"), progress_bars: bool = False,
                   crop_scale: tuple[float, float] = TRAIN_CROP_SCALE, with_ids: bool = False,
                   read_tasks: int | None = None) -> dict[str, ray.data.Dataset]:
    """Datasets of rows ``{"patches": uint8 [N, P*P*3], "label": int64}`` for Ray Train.

    Args:
        prepared_dir: a directory made by ``vit-study prepare`` / :func:`ensure_prepared` (path or URI).
        image_size, patch_size: output resolution (square) and patch size; ``N = (image_size / patch_size)**2``.
        train_fraction: class-balanced nested subset of the training pool (see ``subsets.py``), in ``(0, 1]``.
        train_count: an absolute number of training examples instead of ``train_fraction``.
        val_fraction: per-class share of the prepared ``train`` split held out as ``val`` (default 0.02); the
            carve-out is the same for every fraction, count and seed, and disjoint from every training subset.
        seed: augmentation and file-order seed (subsets do not depend on it).
        splits: which of ``train`` (augmented: Inception crop + flip), ``val`` and ``test`` (resize + centre
            crop) to build. ``test`` is the prepared ``test`` split and is left out if there is none; ``val`` is
            left out when it is empty (``val_fraction=0``).
        progress_bars: Ray Data progress bars for these datasets (off: inside trials they flood the logs).
        crop_scale: area range of the training crop (Inception: ``(0.08, 1.0)``).
        with_ids: also return each row's ``id`` (for tests and analysis).
        read_tasks: Ray tasks per epoch and split, each reading and decoding whole shards (default:
            :func:`default_read_tasks`, two per cluster CPU).

    Rows per split without executing anything: :func:`pipelines.data.subset_sizes` with the same arguments.
    """
    if image_size % patch_size:
        raise ValueError(f"image_size {image_size} is not a multiple of patch_size {patch_size}")
    unknown = set(splits) - {"train", "val", "test"}
    if unknown:
        raise ValueError(f"unknown split(s) {sorted(unknown)}: choose from train, val, test")
    manifest = load_manifest(prepared_dir)
    plan = Plan.from_manifest(manifest, train_fraction=train_fraction, train_count=train_count,
                              val_fraction=val_fraction)
    selections = plan_selections(prepared_dir, manifest, plan) if {"train", "val"} & set(splits) else {}
    common = dict(image_size=image_size, patch_size=patch_size, seed=seed, crop_scale=crop_scale, with_ids=with_ids)
    datasets = {}
    for name in splits:
        if name == "test" and "test" not in manifest["splits"] or name == "val" and not plan.val.sum():
            continue
        files = shard_paths(prepared_dir, manifest, "test" if name == "test" else "train")
        shuffle = FileShuffleConfig(seed=seed, reseed_after_execution=True) if name == "train" else None
        ds = _read_shards(files, shuffle, progress_bars, read_tasks or default_read_tasks(len(files)))
        datasets[name] = ds.select_columns(["id", "label", "image"]).map_batches(
            functools.partial(decode_block, selection=selections.get(name), train=name == "train", **common),
            batch_format="pyarrow", batch_size=None, zero_copy_batch=True,
        )
    return datasets


def train_iter_kwargs(batch_size: int, seed: int, epoch: int) -> dict:
    """Keyword arguments for ``DataIterator.iter_torch_batches`` in epoch ``epoch`` of training:
    ``batch_size``, a local shuffle buffer of ``SHUFFLE_BUFFER_BATCHES`` batches and its per-epoch seed."""
    return {
        "batch_size": batch_size,
        "local_shuffle_buffer_size": SHUFFLE_BUFFER_BATCHES * batch_size,
        "local_shuffle_seed": augment_key(seed, epoch) % (1 << 31),
    }

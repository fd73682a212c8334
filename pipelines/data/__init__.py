"""Data: ``vit-study prepare`` (any image source -> Parquet shards + manifest) and the Ray Data pipeline.

Interface (see each function's docstring)::

    ensure_prepared(source, out_dir=None, strict=False) -> Path      prepare once, reuse afterwards
    load_manifest(prepared_dir) -> dict                               classes, counts, source, checksum, rejected
    build_datasets(prepared_dir, *, image_size, patch_size, train_fraction=1.0, train_count=None,
                   val_fraction=0.02, seed=0, splits=("train", "val", "test")) -> {split: ray.data.Dataset}
    subset_sizes(prepared_dir, *, train_fraction=1.0, train_count=None, val_fraction=0.02) -> {split: rows}
    train_iter_kwargs(batch_size, seed, epoch) -> kwargs for iter_torch_batches
    prepare_dataset(source, out_dir, *, split_names=None, strict=False, ...) -> manifest

Ray is imported only when ``build_datasets``/``train_iter_kwargs`` are first used, so ``vit-study prepare`` stays
light.
"""

from __future__ import annotations

import importlib

from .cache import ensure_prepared
from .manifest import ManifestError, load_manifest
from .prepare import PrepareError, prepare_dataset
from .subsets import DEFAULT_VAL_FRACTION, subset_sizes

_LAZY = {"build_datasets": "pipeline", "train_iter_kwargs": "pipeline"}

__all__ = [
    "DEFAULT_VAL_FRACTION", "ManifestError", "PrepareError", "build_datasets", "ensure_prepared", "load_manifest",
    "prepare_dataset", "subset_sizes", "train_iter_kwargs",
]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""The data-size axis: deterministic, class-balanced, nested subsets chosen by example id.

Within each class, examples are ordered by ``id`` (a hash of the path: a fixed random order). The validation
carve-out is the first ``round(val_fraction * n_c)`` examples of class ``c`` of the prepared ``train`` split; the
training pool is the rest, and a training subset is a prefix of the pool's order:

* ``fraction=f``: ``round(f * pool_c)`` per class, so per-class counts are within 1/2 of the fraction;
* ``count=n``: the first ``n`` examples of one global order that interleaves the classes in proportion to their
  pool sizes (sort by ``(rank + 1/2) / pool_c``, then class), so the total is exactly ``n`` and classes stay
  balanced (within 1 of ``n * pool_c / pool`` for balanced classes).

Every subset is a per-class prefix of the same order, so smaller subsets are contained in larger ones and
none meets the validation carve-out. Membership is a per-row test of ``id`` against per-class bounds, so it
does not depend on how rows are split into files, blocks, workers or nodes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from .manifest import load_manifest, shard_paths
from .storage import resolve

DEFAULT_VAL_FRACTION = 0.02  # big_vision's CIFAR minival: the last 2% of train


def round_half_up(x: np.ndarray) -> np.ndarray:
    """Round to nearest, halves up; the epsilon keeps ``0.1 * 50`` (= 5.000000000000001) and ``0.5 * 3`` stable."""
    return np.floor(np.asarray(x, dtype=np.float64) + 0.5 + 1e-9).astype(np.int64)


def val_counts(class_counts: Sequence[int], val_fraction: float) -> np.ndarray:
    """Per-class size of the validation carve-out."""
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    counts = np.asarray(class_counts, dtype=np.int64)
    return np.minimum(round_half_up(val_fraction * counts), counts)


def train_counts(pool_counts: Sequence[int], *, fraction: float = 1.0, count: int | None = None) -> np.ndarray:
    """Per-class size of the training subset, from a fraction of each class's pool or an absolute count."""
    pool = np.asarray(pool_counts, dtype=np.int64)
    if count is not None:
        if not 0 < count <= pool.sum():
            raise ValueError(f"train_count must be in [1, {int(pool.sum())}] (the training pool), got {count}")
        classes = np.repeat(np.arange(len(pool)), pool)
        ranks = np.concatenate([np.arange(n) for n in pool]) if len(pool) else np.zeros(0)
        order = np.lexsort((classes, (ranks + 0.5) / pool[classes]))
        return np.bincount(classes[order[:count]], minlength=len(pool)).astype(np.int64)
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"train_fraction must be in (0, 1], got {fraction}")
    return np.minimum(round_half_up(fraction * pool), pool)


@dataclass(frozen=True)
class Plan:
    """Per-class counts of the validation carve-out and the training subset (both taken from ``train``)."""

    val: np.ndarray
    train: np.ndarray

    @classmethod
    def from_manifest(cls, manifest: dict, *, train_fraction: float = 1.0, train_count: int | None = None,
                      val_fraction: float = DEFAULT_VAL_FRACTION) -> Plan:
        if "train" not in manifest["splits"]:
            raise KeyError(f"the prepared data has no 'train' split (it has {sorted(manifest['splits'])})")
        per_class = manifest["splits"]["train"]["class_counts"]
        counts = np.array([per_class.get(name, 0) for name in manifest["classes"]], dtype=np.int64)
        val = val_counts(counts, val_fraction)
        return cls(val, train_counts(counts - val, fraction=train_fraction, count=train_count))


def subset_sizes(prepared_dir: str | Path, *, train_fraction: float = 1.0, train_count: int | None = None,
                 val_fraction: float = DEFAULT_VAL_FRACTION) -> dict[str, int]:
    """Rows of ``train``, ``val`` and ``test`` (if prepared) that :func:`build_datasets` will yield, from the
    manifest alone (nothing is read or executed): training converts epochs to steps with these."""
    manifest = load_manifest(prepared_dir)
    plan = Plan.from_manifest(manifest, train_fraction=train_fraction, train_count=train_count,
                              val_fraction=val_fraction)
    sizes = {"train": int(plan.train.sum()), "val": int(plan.val.sum())}
    if "test" in manifest["splits"]:
        sizes["test"] = int(manifest["splits"]["test"]["num_rows"])
    return sizes


@dataclass(frozen=True)
class Selection:
    """Rows whose ``id`` lies in ``[low[label], high[label]]`` of a non-empty class: a per-row test."""

    low: np.ndarray
    high: np.ndarray
    nonempty: np.ndarray

    def mask(self, ids: np.ndarray, labels: np.ndarray) -> np.ndarray:
        labels = np.asarray(labels, dtype=np.int64)
        return self.nonempty[labels] & (ids >= self.low[labels]) & (ids <= self.high[labels])

    @property
    def bounds(self) -> tuple[int, int]:
        """Smallest and largest id any selected row can have (for coarse pruning); ``(0, -1)`` if empty."""
        if not self.nonempty.any():
            return 0, -1
        return int(self.low[self.nonempty].min()), int(self.high[self.nonempty].max())


def rank_selection(ids: np.ndarray, labels: np.ndarray, num_classes: int, start: np.ndarray,
                   stop: np.ndarray) -> Selection:
    """The rows of rank ``start[c] <= rank < stop[c]`` in id order within each class ``c``, as id bounds."""
    if not len(ids):
        return Selection(np.zeros(num_classes, np.int64), np.full(num_classes, -1, np.int64),
                         np.zeros(num_classes, bool))
    order = np.lexsort((ids, labels))
    sorted_ids, sorted_labels = ids[order], labels[order]
    first = np.searchsorted(sorted_labels, np.arange(num_classes))
    sizes = np.bincount(sorted_labels, minlength=num_classes)
    nonempty = (stop > start) & (start < sizes)
    stop = np.minimum(stop, sizes)
    low = np.where(nonempty, sorted_ids[np.minimum(first + start, len(ids) - 1)], 0)
    high = np.where(nonempty, sorted_ids[np.clip(first + stop - 1, 0, len(ids) - 1)], -1)
    return Selection(low.astype(np.int64), high.astype(np.int64), nonempty)


def read_ids(prepared_dir: str | Path, manifest: dict, split: str) -> tuple[np.ndarray, np.ndarray]:
    """``(ids, labels)`` of every row of a prepared split (two narrow columns, read in the driver)."""
    ids, labels = [], []
    for location in shard_paths(prepared_dir, manifest, split):
        filesystem, path = resolve(location)
        table = pq.read_table(path, columns=["id", "label"], filesystem=filesystem)
        ids.append(table.column("id").to_numpy())
        labels.append(table.column("label").to_numpy())
    return (np.concatenate(ids) if ids else np.zeros(0, np.int64)), \
        (np.concatenate(labels) if labels else np.zeros(0, np.int64))


def plan_selections(prepared_dir: str | Path, manifest: dict, plan: Plan) -> dict[str, Selection]:
    """``{"val": ..., "train": ...}`` selections over the prepared ``train`` split."""
    ids, labels = read_ids(prepared_dir, manifest, "train")
    num_classes = len(manifest["classes"])
    return {
        "val": rank_selection(ids, labels, num_classes, np.zeros(num_classes, np.int64), plan.val),
        "train": rank_selection(ids, labels, num_classes, plan.val, plan.val + plan.train),
    }

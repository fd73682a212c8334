"""The data-size axis: nested, class-balanced subsets decided per row by id, and a disjoint validation split."""

from __future__ import annotations

import numpy as np
import pytest
from data_samples import write_imagefolder

from pipelines.data import prepare_dataset, subset_sizes
from pipelines.data.subsets import Plan, plan_selections, rank_selection, read_ids, train_counts, val_counts

CLASS_SIZES = [500, 497, 230, 31, 1]


def synthetic_split(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(len(CLASS_SIZES)), CLASS_SIZES)
    ids = rng.integers(np.iinfo(np.int64).min, np.iinfo(np.int64).max, size=len(labels), dtype=np.int64)
    order = rng.permutation(len(labels))
    return ids[order], labels[order]


def selected(ids, labels, start, stop) -> set[int]:
    selection = rank_selection(ids, labels, len(CLASS_SIZES), np.asarray(start), np.asarray(stop))
    return set(ids[selection.mask(ids, labels)].tolist())


def subsets(ids, labels, *, val_fraction=0.02, **train) -> tuple[set[int], set[int]]:
    val = val_counts(CLASS_SIZES, val_fraction)
    count = train_counts(np.array(CLASS_SIZES) - val, **train)
    zeros = np.zeros(len(CLASS_SIZES), np.int64)
    return selected(ids, labels, zeros, val), selected(ids, labels, val, val + count)


def per_class(chosen: set[int], ids, labels) -> np.ndarray:
    mask = np.isin(ids, list(chosen))
    return np.bincount(labels[mask], minlength=len(CLASS_SIZES))


def test_fractions_are_nested_balanced_and_disjoint_from_validation():
    ids, labels = synthetic_split()
    val = val_counts(CLASS_SIZES, 0.02)
    pool = np.array(CLASS_SIZES) - val
    previous = set()
    for fraction in (0.1, 0.3, 1.0):
        val_ids, train_ids = subsets(ids, labels, fraction=fraction)
        assert previous <= train_ids, f"{fraction} subset does not contain the smaller one"
        assert not val_ids & train_ids
        counts = per_class(train_ids, ids, labels)
        assert np.all(np.abs(counts - fraction * pool) <= 1), (fraction, counts, fraction * pool)
        assert per_class(val_ids, ids, labels).tolist() == val.tolist()
        previous = train_ids
    assert len(previous) == pool.sum()  # fraction 1.0 is the whole pool


def test_absolute_counts_are_exact_nested_and_balanced():
    ids, labels = synthetic_split(1)
    pool = np.array(CLASS_SIZES) - val_counts(CLASS_SIZES, 0.02)
    previous = set()
    for count in (7, 100, 333, 1000, int(pool.sum())):
        val_ids, train_ids = subsets(ids, labels, count=count)
        assert len(train_ids) == count and previous <= train_ids and not val_ids & train_ids
        counts = per_class(train_ids, ids, labels)
        assert np.all(np.abs(counts - count * pool / pool.sum()) <= 1), (count, counts)
        previous = train_ids
    # A fraction and a count with larger per-class sizes are nested too (one order for both).
    assert subsets(ids, labels, fraction=0.1)[1] <= subsets(ids, labels, count=500)[1]


def test_membership_does_not_depend_on_how_rows_are_split():
    """Each row is tested alone against per-class bounds: any blocking/worker split selects the same rows."""
    ids, labels = synthetic_split(2)
    val = val_counts(CLASS_SIZES, 0.02)
    start, stop = val, val + train_counts(np.array(CLASS_SIZES) - val, fraction=0.3)
    selection = rank_selection(ids, labels, len(CLASS_SIZES), start, stop)
    whole = set(ids[selection.mask(ids, labels)].tolist())
    rng = np.random.default_rng(0)
    for blocks in (1, 3, 17, 400):
        order = rng.permutation(len(ids))
        parts = np.array_split(order, blocks)
        pieces = set()
        for part in parts:
            pieces |= set(ids[part][selection.mask(ids[part], labels[part])].tolist())
        assert pieces == whole


def test_different_ids_give_different_subsets_of_the_same_size():
    ids_a, labels = synthetic_split(3)
    ids_b, _ = synthetic_split(4)
    a = per_class(subsets(ids_a, labels, fraction=0.3)[1], ids_a, labels)
    b = per_class(subsets(ids_b, labels, fraction=0.3)[1], ids_b, labels)
    assert a.tolist() == b.tolist()


def test_bad_arguments():
    with pytest.raises(ValueError, match="train_fraction"):
        train_counts([10, 10], fraction=0.0)
    with pytest.raises(ValueError, match="train_fraction"):
        train_counts([10, 10], fraction=1.5)
    with pytest.raises(ValueError, match="train_count"):
        train_counts([10, 10], count=21)
    with pytest.raises(ValueError, match="val_fraction"):
        val_counts([10], 1.0)


def test_subset_sizes_match_the_selected_rows_of_a_prepared_dataset(tmp_path):
    write_imagefolder(tmp_path / "src", {"train": {"a": 60, "b": 41, "c": 9}, "test": {"a": 2, "b": 3}},
                      sizes=((8, 8),))
    prepare_dataset(str(tmp_path / "src"), str(tmp_path / "out"), workers=0)
    from pipelines.data import load_manifest

    manifest = load_manifest(tmp_path / "out")
    ids, labels = read_ids(tmp_path / "out", manifest, "train")
    for kwargs in ({"train_fraction": 0.1}, {"train_fraction": 0.5, "val_fraction": 0.1}, {"train_count": 50}):
        sizes = subset_sizes(tmp_path / "out", **kwargs)
        plan = Plan.from_manifest(manifest, **kwargs)
        selections = plan_selections(tmp_path / "out", manifest, plan)
        assert sizes["train"] == selections["train"].mask(ids, labels).sum()
        assert sizes["val"] == selections["val"].mask(ids, labels).sum()
        assert not (selections["train"].mask(ids, labels) & selections["val"].mask(ids, labels)).any()
        assert sizes["test"] == 5
    assert subset_sizes(tmp_path / "out", train_count=50)["train"] == 50

"""Pareto frontier of accuracy against training compute.

Semantics (exact, no tolerance): point *i* is on the frontier iff no other point *j* has
``compute_j <= compute_i`` and ``accuracy_j >= accuracy_i`` with at least one of the two strict. Hence:

- two identical points (same compute, same accuracy) are both on the frontier (neither dominates the other);
- of points with the same compute, only those with the highest accuracy can be on it;
- a point that only matches the accuracy of a cheaper point is dominated;
- points with a missing (NaN) compute or accuracy are never on it, and do not dominate anything.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

ALL = "all"  # the group name of the frontier over every family


def pareto_mask(compute: Sequence[float], accuracy: Sequence[float]) -> np.ndarray:
    """Boolean mask of the points on the frontier (see module docstring); O(n log n)."""
    x = np.asarray(compute, dtype=float)
    y = np.asarray(accuracy, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"compute and accuracy must be 1-d of equal length, got {x.shape} and {y.shape}")
    mask = np.zeros(x.shape, dtype=bool)
    valid = np.flatnonzero(np.isfinite(x) & np.isfinite(y))
    order = valid[np.lexsort((-y[valid], x[valid]))]  # compute ascending, accuracy descending
    best_cheaper = -np.inf  # best accuracy among strictly cheaper points
    start = 0
    while start < len(order):
        stop = start
        while stop < len(order) and x[order[stop]] == x[order[start]]:
            stop += 1
        group = order[start:stop]
        top = y[group[0]]
        if top > best_cheaper:
            mask[group[y[group] == top]] = True
        best_cheaper = max(best_cheaper, top)
        start = stop
    return mask


def frontier(table: pd.DataFrame, *, metric: str = "top1", compute: str = "train_flops",
             by: str | None = "family") -> pd.DataFrame:
    """Frontier rows of ``table`` for ``metric`` against ``compute``, per ``by`` group and over all rows.

    Returns the frontier rows (all columns of ``table``) plus ``group`` (the ``by`` value, or ``"all"``),
    ``metric`` (its name) and ``value`` (its value), sorted by group then compute. Rows missing either are ignored.
    """
    for name in (metric, compute) + ((by,) if by else ()):
        if name not in table.columns:
            raise ValueError(f"frontier: no column {name!r} in the table; columns: {list(table.columns)}")
    groups = [(ALL, table)]
    if by:
        groups += [(str(key), rows) for key, rows in table.groupby(by, sort=True)]
    parts = []
    for name, rows in groups:
        on = rows[pareto_mask(rows[compute].to_numpy(float, na_value=np.nan),
                              rows[metric].to_numpy(float, na_value=np.nan))]
        on = on.assign(group=name, metric=metric, value=on[metric])
        parts.append(on.sort_values([compute, "trial_id"], kind="stable"))
    return pd.concat(parts, ignore_index=True)


def frontiers(table: pd.DataFrame, metrics: Sequence[str], *, compute: str = "train_flops",
              by: str | None = "family") -> pd.DataFrame:
    """``frontier`` for several metrics, stacked (one long table; ``metric`` says which)."""
    return pd.concat([frontier(table, metric=m, compute=compute, by=by) for m in metrics], ignore_index=True)

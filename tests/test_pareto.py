"""The accuracy-vs-compute frontier: exact on a hand-made set with ties, and equal to its definition."""

import numpy as np
import pandas as pd
import pytest

from pipelines.analysis.pareto import ALL, frontier, pareto_mask


def dominated_by_definition(x, y):
    """O(n^2) reading of the definition: j dominates i iff x_j <= x_i, y_j >= y_i, one strict (NaN: never)."""
    ok = np.isfinite(x) & np.isfinite(y)
    on = np.zeros(len(x), dtype=bool)
    for i in range(len(x)):
        if not ok[i]:
            continue
        on[i] = not any(ok[j] and x[j] <= x[i] and y[j] >= y[i] and (x[j] < x[i] or y[j] > y[i])
                        for j in range(len(x)))
    return on


# name: (compute, accuracy, on the frontier?)
KNOWN = {
    "A": (1.0, 0.10, True),
    "B": (1.0, 0.05, False),  # same compute as A, lower accuracy
    "C": (2.0, 0.10, False),  # same accuracy as A, more compute
    "D": (2.0, 0.30, True),
    "E": (2.0, 0.30, True),  # identical to D: neither dominates the other
    "F": (3.0, 0.25, False),  # dominated by D
    "G": (4.0, 0.50, True),
    "H": (5.0, 0.50, False),  # ties G's accuracy with more compute
    "I": (0.5, np.nan, False),  # missing accuracy: not on it, dominates nothing
    "J": (np.nan, 0.90, False),  # missing compute: not on it, and does not knock K off
    "K": (6.0, 0.55, True),
}


def test_known_frontier_with_ties_and_dominated_points():
    names = list(KNOWN)
    x = [KNOWN[n][0] for n in names]
    y = [KNOWN[n][1] for n in names]
    mask = pareto_mask(x, y)
    assert [n for n, m in zip(names, mask) if m] == [n for n in names if KNOWN[n][2]]


def test_frontier_does_not_depend_on_input_order():
    names = np.array(list(KNOWN))
    x = np.array([KNOWN[n][0] for n in names])
    y = np.array([KNOWN[n][1] for n in names])
    expected = set(names[pareto_mask(x, y)])
    for seed in range(5):
        perm = np.random.default_rng(seed).permutation(len(names))
        assert set(names[perm][pareto_mask(x[perm], y[perm])]) == expected


@pytest.mark.parametrize("seed", range(20))
def test_frontier_matches_the_definition_on_random_ties(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 40))
    # A coarse grid makes equal compute, equal accuracy and identical points common.
    x = rng.integers(0, 6, n).astype(float)
    y = rng.integers(0, 6, n).astype(float)
    x[rng.random(n) < 0.05] = np.nan
    y[rng.random(n) < 0.05] = np.nan
    np.testing.assert_array_equal(pareto_mask(x, y), dominated_by_definition(x, y))


def test_empty_and_mismatched_inputs():
    assert pareto_mask([], []).shape == (0,)
    with pytest.raises(ValueError, match="equal length"):
        pareto_mask([1.0, 2.0], [0.5])


def test_frontier_per_family_and_overall():
    table = pd.DataFrame({
        "trial_id": ["v1", "v2", "v3", "r1", "r2", "r3"],
        "family": ["vit", "vit", "vit", "resnet", "resnet", "resnet"],
        "train_flops": [1e12, 4e12, 1.6e13, 2e12, 8e12, 8e12],
        "top1": [0.30, 0.45, 0.44, 0.40, 0.50, 0.42],
    })
    out = frontier(table, metric="top1", by="family")
    groups = {g: rows["trial_id"].tolist() for g, rows in out.groupby("group")}
    # vit: v3 costs more than v2 for less accuracy. resnet: r3 ties r2's compute with less accuracy.
    # overall: each next point costs more and reaches more (0.30, 0.40, 0.45, 0.50); v3 and r3 stay dominated.
    assert groups == {ALL: ["v1", "r1", "v2", "r2"], "resnet": ["r1", "r2"], "vit": ["v1", "v2"]}
    assert (out["metric"] == "top1").all()
    np.testing.assert_array_equal(out["value"], out["top1"])
    # Sorted by compute inside each group, so a frontier line can be drawn as it comes.
    for _, rows in out.groupby("group"):
        assert rows["train_flops"].is_monotonic_increasing
        assert rows["top1"].is_monotonic_increasing


def test_frontier_names_a_missing_column():
    with pytest.raises(ValueError, match="fewshot_x_5shot"):
        frontier(pd.DataFrame({"trial_id": [], "train_flops": [], "family": []}), metric="fewshot_x_5shot")

"""Compute-optimal model size: the best model within each budget, and the N_opt ~ C^alpha trend."""

import numpy as np
import pandas as pd
import pytest

from pipelines.analysis.compute_optimal import compute_optimal_models, compute_optimal_trend, compute_optimal_trends
from pipelines.analysis.results_table import results_table

SIZES = {"small": 1e5, "medium": 1e6, "large": 1e7}


def table_of(trials, family="vit"):
    """trials: (variant, train FLOPs, top1[, params]) -> a results table, one grid cell per trial.

    Without params, the variant's size comes from SIZES.
    """
    rows = []
    for i, (variant, flops, top1, *params) in enumerate(trials):
        rows.append({"trial_id": f"t{i:02d}", "family": family, "variant": variant,
                     "params": round(params[0] if params else SIZES[variant]), "budget": i + 1,
                     "train_flops": flops, "top1": top1, "status": "finished"})
    return results_table(pd.DataFrame(rows))


GRID = [
    ("small", 1e12, 0.30), ("small", 4e12, 0.35), ("small", 1.6e13, 0.37),
    ("medium", 4e12, 0.33), ("medium", 1.6e13, 0.45), ("medium", 6.4e13, 0.50),
    ("large", 1.6e13, 0.40), ("large", 6.4e13, 0.52), ("large", 2.56e14, 0.60),
]


def test_the_optimal_model_grows_with_the_budget():
    optimal = compute_optimal_models(table_of(GRID))
    assert optimal["variant"].tolist() == ["small", "small", "medium", "large", "large"]
    assert optimal["budget_flops"].tolist() == [1e12, 4e12, 1.6e13, 6.4e13, 2.56e14]
    assert optimal["value"].tolist() == [0.30, 0.35, 0.45, 0.52, 0.60]


def test_explicit_budgets_pick_the_best_trial_within_each():
    optimal = compute_optimal_models(table_of(GRID), budgets=[1e15, 5e11, 2e12, 1e13])
    # 5e11 is below every trial: no row. Budgets come back sorted.
    assert optimal["budget_flops"].tolist() == [2e12, 1e13, 1e15]
    assert optimal["variant"].tolist() == ["small", "small", "large"]
    assert optimal["train_flops"].tolist() == [1e12, 4e12, 2.56e14]


def test_accuracy_ties_go_to_the_cheaper_trial():
    optimal = compute_optimal_models(table_of([("small", 1e12, 0.5), ("large", 1e13, 0.5)]), budgets=[1e14])
    assert optimal["variant"].tolist() == ["small"]


def test_exact_trend_is_recovered():
    compute = np.logspace(12, 16, 5)
    trials = []
    for i, c in enumerate(compute):
        params = 1e3 * c ** 0.5
        trials.append((f"m{i}", c, 0.3 + 0.1 * i, params))
        trials.append((f"big{i}", c, 0.2 + 0.1 * i, 10 * params))  # same compute, worse: not optimal
        trials.append((f"late{i}", 2 * c, 0.25 + 0.1 * i, params / 10))  # more compute, worse than m_i
    trend = compute_optimal_trend(table_of(trials))
    assert trend.points["variant"].tolist() == [f"m{i}" for i in range(5)]
    assert trend.alpha == pytest.approx(0.5, rel=1e-6)
    assert trend.fit.coefficient == pytest.approx(1e3, rel=1e-6)
    lo, hi = trend.alpha_interval
    assert lo - 1e-9 <= 0.5 <= hi + 1e-9
    assert trend.predict(1e18) == pytest.approx(1e3 * 1e9, rel=1e-6)


def test_one_optimal_model_has_no_trend():
    trend = compute_optimal_trend(table_of([("small", 1e12, 0.3), ("small", 1e13, 0.4), ("large", 1e13, 0.35)]))
    assert trend.alpha is None and trend.fit is None
    assert "fewer than 2" in trend.skipped
    assert trend.to_dict()["alpha"] is None


def test_trends_per_family_use_only_that_family():
    vit = table_of(GRID)
    resnet = table_of([("small", 1e12, 0.9)], family="resnet").assign(trial_id="r0")
    table = results_table(pd.concat([vit, resnet], ignore_index=True))
    trends = {t.group: t for t in compute_optimal_trends(table, n_boot=50)}
    assert set(trends) == {"all", "vit", "resnet"}
    assert trends["all"].points["trial_id"].tolist() == ["r0"]  # the resnet point dominates everything
    assert trends["vit"].points["variant"].tolist() == ["small", "small", "medium", "large", "large"]
    assert trends["vit"].alpha > 0

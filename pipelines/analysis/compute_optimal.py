"""Compute-optimal model size: which model to train for a given compute budget, and how that size scales.

From the grid alone (no interpolation between models): for a compute budget ``C``, the compute-optimal trial is
the one with the highest accuracy among the trials with ``train_flops <= C`` (the accuracy-vs-compute frontier read
at ``C``); its parameter count is ``N_opt(C)``. By default the budgets are the frontier's own compute values, so the
result is the frontier itself. The trend ``N_opt = k * C ** alpha`` is a plain power law fitted in log-log space over
those points (each a distinct budget), with a residual-bootstrap interval for ``alpha``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .pareto import ALL, frontier
from .powerlaw import DEFAULT_BOOTSTRAP, DEFAULT_LEVEL, PowerLawFit, fit_power_law
from .results_table import best_lr_rows

OPTIMAL_COLUMNS = ("budget_flops", "trial_id", "family", "variant", "params", "train_flops", "value")


def compute_optimal_models(table: pd.DataFrame, metric: str = "top1", *, family: str | None = None,
                           budgets: Sequence[float] | None = None) -> pd.DataFrame:
    """One row per compute budget (``OPTIMAL_COLUMNS``): the best trial within it (``family`` alone, or all).

    ``budgets`` defaults to the frontier's compute values. A budget below every trial's compute has no row; a tie
    in accuracy goes to the cheaper trial (the one on the frontier), then the lowest ``trial_id``.
    """
    rows = best_lr_rows(table, metric)
    if family is not None:
        rows = rows[rows["family"] == family]
    on = frontier(rows, metric=metric, by=None)
    on = on.sort_values(["train_flops", "value", "trial_id"], ascending=[True, False, True], kind="stable")
    levels = on["train_flops"].unique() if budgets is None else np.sort(np.asarray(budgets, dtype=float))
    picked = []
    for budget in levels:
        within = on[on["train_flops"] <= budget]
        if len(within):
            best = within.sort_values(["value", "train_flops", "trial_id"], ascending=[False, True, True],
                                      kind="stable").iloc[0]
            picked.append({"budget_flops": float(budget), **{c: best[c] for c in OPTIMAL_COLUMNS[1:]}})
    return pd.DataFrame(picked, columns=list(OPTIMAL_COLUMNS))


@dataclass
class OptimalTrend:
    """``N_opt = coefficient * C ** alpha``, with ``alpha``'s bootstrap interval (or why there is no fit)."""

    group: str
    points: pd.DataFrame
    alpha: float | None
    alpha_interval: tuple[float, float] | None
    fit: PowerLawFit | None
    skipped: str | None = None

    def predict(self, budget_flops) -> np.ndarray:
        """The trend's model size at ``budget_flops``."""
        return self.fit.predict(budget_flops)

    def to_dict(self) -> dict:
        return {"group": self.group, "formula": "params = coefficient * train_flops ** alpha",
                "alpha": self.alpha, "alpha_interval": list(self.alpha_interval) if self.alpha_interval else None,
                "coefficient": self.fit.coefficient if self.fit else None,
                "level": self.fit.level if self.fit else None, "skipped": self.skipped,
                "points": self.points.astype(object).where(self.points.notna(), None).to_dict("records")}


def compute_optimal_trend(table: pd.DataFrame, metric: str = "top1", *, family: str | None = None,
                          n_boot: int = DEFAULT_BOOTSTRAP, level: float = DEFAULT_LEVEL, seed: int = 0
                          ) -> OptimalTrend:
    """Fit ``N_opt ∝ C^alpha`` over ``compute_optimal_models`` at the frontier's budgets."""
    points = compute_optimal_models(table, metric, family=family)
    group = family or ALL
    params = points["params"].to_numpy(float, na_value=np.nan)
    budgets = points["budget_flops"].to_numpy(float)
    keep = np.isfinite(params)
    if len(np.unique(params[keep])) < 2:
        return OptimalTrend(group, points, None, None, None,
                            skipped="fewer than 2 distinct model sizes are compute-optimal; no trend")
    # params = a * (C / C_ref) ** -b, so alpha = -b and its interval flips.
    fit = fit_power_law(budgets[keep], params[keep], law="plain", n_boot=n_boot, level=level, seed=seed)
    lo, hi = fit.intervals["b"]
    return OptimalTrend(group, points, -fit.b, (-hi, -lo), fit)


def compute_optimal_trends(table: pd.DataFrame, metric: str = "top1", **fit_options) -> list[OptimalTrend]:
    """``compute_optimal_trend`` over all families together (first), then per family."""
    families = sorted(table["family"].dropna().unique())
    return [compute_optimal_trend(table, metric, family=f, **fit_options) for f in [None, *families]]

"""Scaling laws of a results table: error (1 - accuracy) against compute, data size and model size.

Which points each fit sees (always the best learning rate per grid cell, ``best_lr_rows``):

- ``compute``: per family and over all families, the Pareto frontier of accuracy against ``train_flops`` (the best
  accuracy reachable at each compute, as in Figure 5 of the paper); its fit also predicts the accuracy at
  ``PREDICTION_FACTOR`` x the group's largest training compute, with an interval.
- ``data``: per model variant, the best accuracy over budgets at each ``data_count`` (Figures 3 and 4).
- ``model_size``: per family and data size, the best accuracy over budgets of each variant against ``params``.

A group with fewer than 2 distinct x values is kept with ``fit=None`` and the reason in ``skipped``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .pareto import ALL, frontier
from .powerlaw import DEFAULT_BOOTSTRAP, DEFAULT_LEVEL, PowerLawFit, fit_power_law
from .results_table import best_lr_rows

PREDICTION_FACTOR = 10.0
KINDS = {"compute": "train_flops", "data": "data_count", "model_size": "params"}


@dataclass
class ScalingFit:
    """One fitted group: the points it saw and the law (or why there is none)."""

    kind: str
    metric: str
    group: dict
    x_column: str
    trial_ids: list[str]
    x: np.ndarray
    accuracy: np.ndarray
    fit: PowerLawFit | None
    skipped: str | None = None

    def predicted_accuracy(self, x) -> np.ndarray:
        return 1.0 - self.fit.predict(x)

    def accuracy_interval(self, x, level: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        lo, hi = self.fit.predict_interval(x, level)
        return 1.0 - hi, 1.0 - lo

    def prediction(self, factor: float = PREDICTION_FACTOR) -> dict | None:
        """Predicted accuracy at ``factor`` x the largest fitted x, with its bootstrap interval."""
        if self.fit is None:
            return None
        x = factor * self.fit.x_max
        lo, hi = self.accuracy_interval(x)
        return {"x": x, "factor": factor, "accuracy": float(self.predicted_accuracy(x)),
                "interval": [float(lo[0]), float(hi[0])], "level": self.fit.level}

    def to_dict(self) -> dict:
        out = {"kind": self.kind, "metric": self.metric, "group": self.group, "x": self.x_column,
               "points": [{"trial_id": t, self.x_column: float(x), self.metric: float(y)}
                          for t, x, y in zip(self.trial_ids, self.x, self.accuracy)],
               "fit": self.fit.to_dict() if self.fit else None, "skipped": self.skipped}
        if self.kind == "compute":
            out["prediction"] = self.prediction()
        return out


def fit_group(kind: str, metric: str, group: dict, rows: pd.DataFrame, *, n_boot: int = DEFAULT_BOOTSTRAP,
              level: float = DEFAULT_LEVEL, seed: int = 0) -> ScalingFit:
    """Fit error = 1 - ``metric`` against the ``kind``'s x column over ``rows`` (one point per row)."""
    x_column = KINDS[kind]
    rows = rows.sort_values([x_column, "trial_id"], kind="stable")
    x = rows[x_column].to_numpy(float, na_value=np.nan)
    acc = rows[metric].to_numpy(float, na_value=np.nan)
    keep = np.isfinite(x) & np.isfinite(acc)
    result = ScalingFit(kind, metric, group, x_column, rows["trial_id"][keep].tolist(), x[keep], acc[keep], None)
    distinct = len(np.unique(result.x))
    if distinct < 2:
        result.skipped = f"{distinct} distinct {x_column} value(s); a power law needs 2"
    elif np.any(result.accuracy >= 1.0):
        result.skipped = "an accuracy of 1 has zero error, which a log-space fit cannot use"
    else:
        result.fit = fit_power_law(result.x, 1.0 - result.accuracy, n_boot=n_boot, level=level, seed=seed)
    return result


def fit_vs_compute(table: pd.DataFrame, metric: str = "top1", **fit_options) -> list[ScalingFit]:
    """Per family and ``all``: error against training FLOPs over the accuracy-vs-compute frontier."""
    on = frontier(best_lr_rows(table, metric), metric=metric, by="family")
    return [fit_group("compute", metric, {"family": name}, rows, **fit_options)
            for name, rows in _groups(on, "group", first=ALL)]


def fit_vs_data(table: pd.DataFrame, metric: str = "top1", **fit_options) -> list[ScalingFit]:
    """Per variant: error against training-set size, each size at its best budget."""
    best = _best_over(best_lr_rows(table, metric), metric, ["family", "variant", "data_count"])
    return [fit_group("data", metric, {"family": rows["family"].iloc[0], "variant": name}, rows, **fit_options)
            for name, rows in _groups(best, "variant")]


def fit_vs_model_size(table: pd.DataFrame, metric: str = "top1", **fit_options) -> list[ScalingFit]:
    """Per family and data size: error against parameter count, each variant at its best budget."""
    best = _best_over(best_lr_rows(table, metric), metric, ["family", "data_count", "variant"])
    fits = []
    for (family, count), rows in best.groupby(["family", "data_count"], sort=True):
        fits.append(fit_group("model_size", metric, {"family": family, "data_count": int(count)}, rows,
                              **fit_options))
    return fits


def _best_over(rows: pd.DataFrame, metric: str, keys: list[str]) -> pd.DataFrame:
    """The best ``metric`` row per ``keys`` (over budgets and anything else not in keys); ties: lowest trial_id."""
    rows = rows.sort_values([metric, "trial_id"], ascending=[False, True], kind="stable")
    return rows.groupby(keys, sort=False).head(1).reset_index(drop=True)


def _groups(rows: pd.DataFrame, column: str, first: str | None = None):
    names = sorted(rows[column].unique(), key=lambda v: (v != first, str(v)))
    return [(str(name), rows[rows[column] == name]) for name in names]


def all_fits(table: pd.DataFrame, metrics: list[str], **fit_options) -> list[ScalingFit]:
    """Every fit of every kind for every metric, in a stable order."""
    fits = []
    for metric in metrics:
        fits += fit_vs_compute(table, metric, **fit_options)
        fits += fit_vs_data(table, metric, **fit_options)
        fits += fit_vs_model_size(table, metric, **fit_options)
    return fits


def finite_or_none(value):
    """JSON has no NaN: NaN and infinities become None, recursively."""
    if isinstance(value, dict):
        return {k: finite_or_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_none(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value

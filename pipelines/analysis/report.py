"""The study's report in one call, shared by the study (at its end) and ``vit-study report`` (from MLflow).

``build_report(table, curves, out_dir)`` writes::

    out_dir/results.parquet, results.csv   the validated results table, one row per trial
    out_dir/frontier.csv                   accuracy-vs-compute frontier rows, per metric, per family and "all"
    out_dir/fits.json                      every scaling-law fit, compute-optimal trends and predictions
    out_dir/plots/<name>.png, .svg         the figures

and returns ``{"paths": {...}, "fits": <the fits.json content>}``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from .compute_optimal import compute_optimal_trends
from .pareto import ALL, frontier
from .plots import (
    plot_accuracy_vs_compute,
    plot_accuracy_vs_data,
    plot_accuracy_vs_model_size,
    plot_training_curves,
    save_figure,
)
from .powerlaw import DEFAULT_BOOTSTRAP, DEFAULT_LEVEL
from .results_table import accuracy_metrics, best_lr_rows, results_table, write_table
from .scaling_fits import all_fits, finite_or_none

CURVE_COLUMNS = ("trial_id", "step", "metric", "value")


def build_report(table: pd.DataFrame, curves: pd.DataFrame | None, out_dir: str | Path, *,
                 metrics: list[str] | None = None, n_boot: int = DEFAULT_BOOTSTRAP, level: float = DEFAULT_LEVEL,
                 seed: int = 0) -> dict:
    """Table, frontier, fits and plots of a study under ``out_dir``; returns their paths and the fits.

    ``metrics`` defaults to ``top1`` and every few-shot column with values; ``curves`` is a long table
    (``trial_id, step, metric, value``) or None. ``n_boot``, ``level`` and ``seed`` set the bootstrap intervals.
    """
    table = results_table(table)
    if curves is not None:
        missing = set(CURVE_COLUMNS) - set(curves.columns)
        if missing:
            raise ValueError(f"curves: missing column(s) {sorted(missing)}; expected {list(CURVE_COLUMNS)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    metrics = accuracy_metrics(table) if metrics is None else list(metrics)
    paths: dict = {"table": write_table(table, out, "results")}

    fronts = [frontier(best_lr_rows(table, m), metric=m, by="family") for m in metrics]
    paths["frontier"] = out / "frontier.csv"
    (pd.concat(fronts, ignore_index=True) if fronts else pd.DataFrame()).to_csv(paths["frontier"], index=False)

    options = {"n_boot": n_boot, "level": level, "seed": seed}
    fits = all_fits(table, metrics, **options)
    trends = {m: compute_optimal_trends(table, m, **options) for m in metrics}
    summary = _summary(table, metrics, fits, trends)
    paths["fits"] = out / "fits.json"
    paths["fits"].write_text(json.dumps(summary, indent=2, allow_nan=False) + "\n")

    paths["plots"] = {}
    for metric in metrics:
        mine = [f for f in fits if f.metric == metric]
        figures = {
            f"accuracy_vs_compute_{metric}": plot_accuracy_vs_compute(table, metric, fits=mine),
            f"accuracy_vs_data_{metric}": plot_accuracy_vs_data(table, metric, fits=mine),
            f"accuracy_vs_model_size_{metric}": plot_accuracy_vs_model_size(table, metric, fits=mine),
        }
        for name, fig in figures.items():
            paths["plots"][name] = save_figure(fig, out / "plots", name)
    if curves is not None and len(curves):
        paths["plots"]["training_curves"] = save_figure(plot_training_curves(curves, table), out / "plots",
                                                        "training_curves")
    return {"paths": paths, "fits": summary}


def _summary(table, metrics, fits, trends) -> dict:
    """What fits.json holds: a headline per metric, then every fit and trend in full."""
    headline = {}
    for metric in metrics:
        overall = next((f for f in fits if f.kind == "compute" and f.metric == metric and f.group["family"] == ALL),
                       None)
        trend = trends[metric][0]
        headline[metric] = {
            "compute_law": overall.fit.law if overall and overall.fit else None,
            "compute_exponent_b": overall.fit.b if overall and overall.fit else None,
            "compute_exponent_b_interval": list(overall.fit.intervals["b"]) if overall and overall.fit else None,
            "prediction": overall.prediction() if overall else None,
            "optimal_size_exponent_alpha": trend.alpha,
            "optimal_size_exponent_alpha_interval": list(trend.alpha_interval) if trend.alpha_interval else None,
        }
    return finite_or_none({
        "trials": len(table),
        "finished": int((table["status"] == "finished").sum()),
        "metrics": metrics,
        "headline": headline,
        "fits": {kind: [f.to_dict() for f in fits if f.kind == kind] for kind in ("compute", "data", "model_size")},
        "compute_optimal": {m: [t.to_dict() for t in ts] for m, ts in trends.items()},
    })

"""The study's figures, drawn from the results table (and fits) with matplotlib's object API.

No pyplot: figures hold no global state, need no GUI, and PNGs are rendered by Agg whatever the configured backend.
Each ``plot_*`` returns a ``Figure``; ``save_figure`` writes it as PNG and SVG. Accuracies are plotted as the
table's fractions with a percent axis; sizes (FLOPs, images, parameters) on log axes in scientific notation.
Legends sit outside the axes so that they never cover data.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import LogFormatterSciNotation, LogLocator, PercentFormatter

from .pareto import ALL, frontier
from .results_table import best_lr_rows
from .scaling_fits import ScalingFit

FORMATS = ("png", "svg")
DPI = 150
FAMILY_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
AXIS_LABELS = {
    "train_flops": "Training compute (FLOPs)",
    "data_count": "Training images",
    "params": "Parameters",
    "step": "Step",
}
CURVE_LABELS = {"loss": "Training loss", "lr": "Learning rate", "val_top1": "Validation top-1 accuracy"}


def metric_label(metric: str) -> str:
    """``top1`` -> "Top-1 accuracy"; ``fewshot_cifar10_5shot`` -> "cifar10 5-shot accuracy"."""
    if metric == "top1":
        return "Top-1 accuracy"
    if metric == "transfer_top1":
        return "Top-1 accuracy after fine-tuning"
    match = re.fullmatch(r"fewshot_(.+)_(\d+)shot", metric)
    if match:
        return f"{match[1]} {match[2]}-shot accuracy"
    return CURVE_LABELS.get(metric, metric)


def save_figure(fig: Figure, out_dir: str | Path, stem: str) -> dict[str, Path]:
    """``<out_dir>/<stem>.png`` and ``.svg``; returns the paths by format."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for fmt in FORMATS:
        paths[fmt] = out / f"{stem}.{fmt}"
        fig.savefig(paths[fmt], dpi=DPI)  # constrained layout already keeps outside legends on the canvas
    return paths


def _figure(size=(7.5, 4.6)) -> tuple[Figure, object]:
    fig = Figure(figsize=size, layout="constrained")
    return fig, fig.add_subplot()


def _log_axis(ax, which: str) -> None:
    """Log scale on ``which`` ("x" or "y") with 10^k labels; some minor ticks (2 x 10^k, ...) labelled too when
    the data span under two decades, so that a narrow range still reads."""
    (ax.set_xscale if which == "x" else ax.set_yscale)("log")
    axis = ax.xaxis if which == "x" else ax.yaxis
    axis.set_major_locator(LogLocator(base=10))
    axis.set_major_formatter(LogFormatterSciNotation(base=10))
    axis.set_minor_formatter(LogFormatterSciNotation(base=10, labelOnlyBase=False, minor_thresholds=(2, 0.5)))


def _accuracy_axis(ax, metric: str) -> None:
    ax.set_ylabel(metric_label(metric))
    ax.yaxis.set_major_formatter(PercentFormatter(xmax=1.0, decimals=0))
    ax.grid(True, which="major", alpha=0.3)


def _legend(ax, title: str | None = None) -> None:
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        ax.legend(handles, labels, title=title, loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize="small",
                  title_fontsize="small", frameon=False)


def _empty(ax, what: str) -> None:
    ax.text(0.5, 0.5, f"no {what}", ha="center", va="center", transform=ax.transAxes, color="0.4")


def _family_styles(families: Sequence[str]) -> dict[str, tuple[str, str]]:
    colors = matplotlib.colormaps["tab10"]
    return {f: (colors(i % 10), FAMILY_MARKERS[i % len(FAMILY_MARKERS)]) for i, f in enumerate(sorted(families))}


def _ordered_colors(keys: Sequence, cmap: str = "viridis") -> dict:
    """One colour per key along a colormap (small to large, as the paper shades model sizes)."""
    colors = matplotlib.colormaps[cmap]
    n = max(len(keys) - 1, 1)
    return {k: colors(0.05 + 0.8 * i / n) for i, k in enumerate(keys)}


def _fit_curve(ax, fit: ScalingFit, color, label: str | None, extend: float = 1.0, band: bool = False) -> None:
    """The fitted accuracy from the smallest x to ``extend`` x the largest (``band``: its interval beyond the data)."""
    x = np.geomspace(fit.fit.x_min, fit.fit.x_max * extend, 200)
    ax.plot(x, fit.predicted_accuracy(x), linestyle="--", linewidth=1.2, color=color, label=label)
    if band and extend > 1:
        beyond = np.geomspace(fit.fit.x_max, fit.fit.x_max * extend, 50)
        lo, hi = fit.accuracy_interval(beyond)
        if np.all(np.isfinite(lo)):
            ax.fill_between(beyond, lo, hi, color=color, alpha=0.15, linewidth=0)


def _prediction_marker(ax, fit: ScalingFit, factor: float, color) -> None:
    """The headline prediction: accuracy at ``factor`` x the largest compute, with its interval as an error bar."""
    predicted = fit.prediction(factor)
    lo, hi = predicted["interval"]
    yerr = None if not np.isfinite([lo, hi]).all() else [[predicted["accuracy"] - lo], [hi - predicted["accuracy"]]]
    ax.errorbar([predicted["x"]], [predicted["accuracy"]], yerr=yerr, fmt="*", markersize=11, color=color,
                capsize=3, label=f"prediction at {factor:g}x: {predicted['accuracy']:.1%}")


def plot_accuracy_vs_compute(table: pd.DataFrame, metric: str = "top1", *,
                             fits: Sequence[ScalingFit] = (), extend: float = 10.0) -> Figure:
    """Figure 5 style: every trial (best lr per cell), the frontier per family, and the fitted laws.

    ``fits`` are ``fit_vs_compute`` results for ``metric``; their curves run to ``extend`` x the largest compute,
    with the bootstrap interval shaded beyond the data.
    """
    fig, ax = _figure()
    rows = best_lr_rows(table, metric)
    styles = _family_styles(rows["family"].unique())
    if rows.empty:
        _empty(ax, "finished trials")
    on = frontier(rows, metric=metric, by="family") if len(rows) else rows
    for family, (color, marker) in styles.items():
        mine = rows[rows["family"] == family]
        ax.scatter(mine["train_flops"], mine[metric], color=color, marker=marker, alpha=0.35, s=22, linewidths=0)
        front = on[on["group"] == family]
        ax.plot(front["train_flops"], front[metric], color=color, marker=marker, markersize=6,
                label=f"{family} frontier")
    by_family = {f.group["family"]: f for f in fits if f.kind == "compute" and f.metric == metric and f.fit is not None}
    for family, fit in sorted(by_family.items(), key=lambda item: item[0] == ALL):  # the overall fit on top
        if (family == ALL and len(styles) < 2) or (family != ALL and family not in styles):
            continue  # "all" is the only family's fit when there is one family
        color = "black" if family == ALL else styles[family][0]
        headline = family == ALL or len(styles) < 2  # the overall fit carries the prediction and its interval
        label = f"{family} fit: b={fit.fit.b:.3g}" + (f", c={fit.fit.c:.3g}" if fit.fit.c else "")
        _fit_curve(ax, fit, color, label, extend, band=headline)
        if headline and extend > 1:
            _prediction_marker(ax, fit, extend, color)
    _log_axis(ax, "x")
    ax.set_xlabel(AXIS_LABELS["train_flops"])
    _accuracy_axis(ax, metric)
    ax.set_title(f"{metric_label(metric)} vs training compute")
    _legend(ax, "family")
    return fig


def plot_accuracy_vs_data(table: pd.DataFrame, metric: str = "top1", *, fits: Sequence[ScalingFit] = ()) -> Figure:
    """Figures 3/4 style: per model, the best accuracy over budgets at each training-set size."""
    return _plot_lines(table, metric, fits, x="data_count", line_key="variant", kind="data",
                       title=f"{metric_label(metric)} vs training-set size", legend_title="model")


def plot_accuracy_vs_model_size(table: pd.DataFrame, metric: str = "top1", *,
                                fits: Sequence[ScalingFit] = ()) -> Figure:
    """Per family and training-set size, the best accuracy over budgets of each model against its parameters."""
    return _plot_lines(table, metric, fits, x="params", line_key="data_count", kind="model_size",
                       title=f"{metric_label(metric)} vs model size", legend_title="training images")


def _plot_lines(table, metric, fits, *, x, line_key, kind, title, legend_title) -> Figure:
    fig, ax = _figure()
    rows = best_lr_rows(table, metric)
    rows = rows[rows[x].notna()]
    if rows.empty:
        _empty(ax, f"finished trials with {x}")
    styles = _family_styles(rows["family"].unique())
    if line_key == "variant":  # order models by size, so colours go from small to large
        keys = rows.sort_values(["params", "variant"], na_position="last")["variant"].unique().tolist()
    else:
        keys = sorted(rows[line_key].unique().tolist())
    colors = _ordered_colors(keys)
    fit_of = {(f.group.get("family"), f.group.get(line_key)): f for f in fits
              if f.kind == kind and f.metric == metric and f.fit is not None}
    for family, (_, marker) in styles.items():
        for key in keys:
            line = rows[(rows["family"] == family) & (rows[line_key] == key)]
            if line.empty:
                continue
            best = line.sort_values([metric, "trial_id"], ascending=[False, True]).groupby(x, sort=True).head(1)
            best = best.sort_values(x)
            label = f"{key}" if len(styles) < 2 or line_key == "variant" else f"{family}, {key}"
            ax.plot(best[x], best[metric], marker=marker, color=colors[key], label=label)
            fit = fit_of.get((family, key if line_key == "variant" else int(key)))
            if fit is not None:
                _fit_curve(ax, fit, colors[key], label=None)
    _log_axis(ax, "x")
    ax.set_xlabel(AXIS_LABELS[x])
    _accuracy_axis(ax, metric)
    ax.set_title(title)
    _legend(ax, legend_title)
    return fig


def plot_training_curves(curves: pd.DataFrame, table: pd.DataFrame | None = None) -> Figure:
    """One panel per curve metric (``trial_id, step, metric, value`` long table), one line per trial.

    With ``table``, lines are coloured by model variant (small to large) and the legend lists variants.
    """
    required = {"trial_id", "step", "metric", "value"}
    if not required <= set(curves.columns):
        raise ValueError(f"curves: need columns {sorted(required)}, got {list(curves.columns)}")
    metrics = sorted(curves["metric"].unique(), key=lambda m: (list(CURVE_LABELS).index(m)
                                                               if m in CURVE_LABELS else len(CURVE_LABELS), m))
    fig = Figure(figsize=(4.2 * max(len(metrics), 1) + 1.8, 3.8), layout="constrained")
    axes = fig.subplots(1, max(len(metrics), 1), squeeze=False)[0]
    if not metrics:
        _empty(axes[0], "training curves")
    variant_of = {}
    if table is not None:
        variant_of = dict(zip(table["trial_id"], table["variant"]))
        order = table.sort_values(["params", "variant"], na_position="last")["variant"].unique().tolist()
    else:
        order = sorted(curves["trial_id"].unique())
    colors = _ordered_colors(order, cmap="viridis" if table is not None else "tab20")
    rank = {key: i for i, key in enumerate(order)}
    for ax, metric in zip(axes, metrics):
        seen = set()
        trials = curves[curves["metric"] == metric].groupby("trial_id", sort=True)
        # Legend in model-size order: draw trials grouped by their variant's rank.
        for trial, points in sorted(trials, key=lambda item: (rank.get(variant_of.get(item[0], item[0]), 0), item[0])):
            key = variant_of.get(trial, trial)
            points = points.sort_values("step")
            ax.plot(points["step"], points["value"], color=colors.get(key, "0.5"), linewidth=1.0, alpha=0.8,
                    label=None if key in seen else str(key))
            seen.add(key)
        ax.set_xlabel(AXIS_LABELS["step"])
        ax.set_ylabel(metric_label(metric))
        ax.grid(True, alpha=0.3)
        if "top1" in metric or "accuracy" in metric:
            ax.yaxis.set_major_formatter(PercentFormatter(xmax=1.0, decimals=0))
        else:
            ax.ticklabel_format(axis="y", style="sci", scilimits=(-2, 3))
    _legend(axes[-1], "model" if table is not None else "trial")
    fig.suptitle("Training curves")
    return fig

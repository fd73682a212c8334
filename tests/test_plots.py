"""Figures: the right points on log axes with units, legends clear of the data, PNG and SVG written."""

import numpy as np
import pytest
from analysis_synthetic import synthetic_curves, synthetic_study
from matplotlib.ticker import LogFormatterSciNotation, PercentFormatter

from pipelines.analysis.pareto import ALL, frontier
from pipelines.analysis.plots import (
    plot_accuracy_vs_compute,
    plot_accuracy_vs_data,
    plot_accuracy_vs_model_size,
    plot_training_curves,
    save_figure,
)
from pipelines.analysis.results_table import best_lr_rows, results_table
from pipelines.analysis.scaling_fits import fit_vs_compute, fit_vs_data


@pytest.fixture(scope="module")
def table():
    return results_table(synthetic_study(fewshot=False))


def lines_by_label(ax):
    return {line.get_label(): line for line in ax.get_lines()}


def assert_legend_outside(fig, ax):
    fig.draw_without_rendering()  # lays the figure out
    legend = ax.get_legend()
    assert legend is not None
    assert legend.get_window_extent().x0 >= ax.get_window_extent().x1


def test_accuracy_vs_compute(table, tmp_path):
    fits = fit_vs_compute(table, n_boot=50)
    fig = plot_accuracy_vs_compute(table, fits=fits)
    ax = fig.axes[0]
    assert ax.get_xscale() == "log"
    assert isinstance(ax.xaxis.get_major_formatter(), LogFormatterSciNotation)
    assert ax.get_xlabel() == "Training compute (FLOPs)"
    assert ax.get_ylabel() == "Top-1 accuracy"
    assert isinstance(ax.yaxis.get_major_formatter(), PercentFormatter)
    lines = lines_by_label(ax)
    # Each family's frontier line runs through exactly its frontier points.
    on = frontier(best_lr_rows(table), by="family")
    for family in ("vit", "resnet"):
        expected = on[on["group"] == family]
        np.testing.assert_array_equal(lines[f"{family} frontier"].get_xdata(), expected["train_flops"])
        np.testing.assert_array_equal(lines[f"{family} frontier"].get_ydata(), expected["top1"])
    # The overall fit is drawn to 10x the largest compute, through the fitted accuracy.
    overall = next(f for f in fits if f.group["family"] == ALL)
    fit_line = next(line for label, line in lines.items() if label.startswith(f"{ALL} fit"))
    assert fit_line.get_xdata()[-1] == pytest.approx(10 * table["train_flops"].max())
    np.testing.assert_allclose(fit_line.get_ydata(), overall.predicted_accuracy(fit_line.get_xdata()))
    assert_legend_outside(fig, ax)

    paths = save_figure(fig, tmp_path / "plots", "compute")
    assert set(paths) == {"png", "svg"}
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert paths["png"].stat().st_size > 20_000
    svg = paths["svg"].read_text()
    assert "<svg" in svg and len(svg) > 20_000


def test_accuracy_vs_data_draws_each_model_at_its_best_budget(table):
    fig = plot_accuracy_vs_data(table, fits=fit_vs_data(table, n_boot=20))
    ax = fig.axes[0]
    assert ax.get_xscale() == "log"
    assert ax.get_xlabel() == "Training images"
    lines = lines_by_label(ax)
    finished = table[table["status"] == "finished"]
    for variant, rows in finished.groupby("variant"):
        best = rows.groupby("data_count")["top1"].max().sort_index()
        np.testing.assert_array_equal(lines[variant].get_xdata(), best.index.to_numpy(float))
        np.testing.assert_array_equal(lines[variant].get_ydata(), best.to_numpy())
    assert_legend_outside(fig, ax)


def test_accuracy_vs_model_size(table):
    fig = plot_accuracy_vs_model_size(table)
    ax = fig.axes[0]
    assert ax.get_xscale() == "log"
    assert ax.get_xlabel() == "Parameters"
    assert ax.get_ylabel() == "Top-1 accuracy"
    lines = lines_by_label(ax)
    # One line per family and data size, through each variant's best accuracy.
    rows = table[(table["status"] == "finished") & (table["family"] == "vit") & (table["data_count"] == 50_000)]
    best = rows.groupby("params")["top1"].max().sort_index()
    np.testing.assert_array_equal(lines["vit, 50000"].get_ydata(), best.to_numpy())


def test_training_curves(table):
    curves = synthetic_curves(table)
    fig = plot_training_curves(curves, table)
    axes = fig.axes
    assert [ax.get_ylabel() for ax in axes] == ["Training loss", "Learning rate", "Validation top-1 accuracy"]
    assert all(ax.get_xlabel() == "Step" for ax in axes)
    trials = curves["trial_id"].nunique()
    assert all(len(ax.get_lines()) == trials for ax in axes)
    # The legend names models (not trials), in order of size.
    labels = [t.get_text() for t in axes[-1].get_legend().get_texts()]
    by_size = table.sort_values("params")["variant"].unique().tolist()
    assert labels == by_size


def test_training_curves_need_the_long_format():
    with pytest.raises(ValueError, match="need columns"):
        plot_training_curves(synthetic_curves(results_table(synthetic_study())).rename(columns={"step": "iter"}))


def test_no_finished_trials_still_gives_a_figure(table, tmp_path):
    empty = table[table["status"] == "failed"]
    paths = save_figure(plot_accuracy_vs_compute(empty), tmp_path, "empty")
    assert paths["png"].stat().st_size > 0

"""build_report: every output written, and each consistent with the table it came from."""

import json

import pandas as pd
import pytest
from analysis_synthetic import synthetic_curves, synthetic_study

from pipelines.analysis.pareto import ALL, frontier
from pipelines.analysis.report import build_report
from pipelines.analysis.results_table import best_lr_rows, read_table, results_table


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    table = synthetic_study()
    out = tmp_path_factory.mktemp("report")
    return table, out, build_report(table, synthetic_curves(results_table(table)), out, n_boot=40)


def test_table_is_written_unchanged(report):
    table, out, result = report
    assert result["paths"]["table"]["parquet"] == out / "results.parquet"
    for path in result["paths"]["table"].values():
        pd.testing.assert_frame_equal(read_table(path), results_table(table))


def test_frontier_file_matches_the_table(report):
    table, _, result = report
    written = pd.read_csv(result["paths"]["frontier"])
    assert set(written["metric"]) == {"top1", "fewshot_cifar10_5shot"}
    for metric in ("top1", "fewshot_cifar10_5shot"):
        expected = frontier(best_lr_rows(results_table(table), metric), metric=metric)
        mine = written[written["metric"] == metric]
        assert mine["trial_id"].tolist() == expected["trial_id"].tolist()
        assert mine["group"].tolist() == expected["group"].tolist()


def test_fits_json(report):
    table, _, result = report
    fits = json.loads(result["paths"]["fits"].read_text())
    assert fits == result["fits"]
    assert fits["trials"] == len(table) and fits["finished"] == int((table["status"] == "finished").sum())
    assert fits["metrics"] == ["top1", "fewshot_cifar10_5shot"]
    compute = [f for f in fits["fits"]["compute"] if f["metric"] == "top1"]
    assert {f["group"]["family"] for f in compute} == {ALL, "vit", "resnet"}
    overall = next(f for f in compute if f["group"]["family"] == ALL)
    on = frontier(best_lr_rows(results_table(table)), metric="top1")
    assert [p["trial_id"] for p in overall["points"]] == on.loc[on["group"] == ALL, "trial_id"].tolist()
    headline = fits["headline"]["top1"]
    assert headline["compute_exponent_b"] == overall["fit"]["b"] > 0
    lo, hi = headline["prediction"]["interval"]
    assert lo <= headline["prediction"]["accuracy"] <= hi
    assert headline["prediction"]["x"] == pytest.approx(10 * max(p["train_flops"] for p in overall["points"]))
    # Data fits: one per variant; model-size fits: one per family and data size.
    data = [f for f in fits["fits"]["data"] if f["metric"] == "top1"]
    assert sorted(f["group"]["variant"] for f in data) == sorted(table["variant"].unique())
    sizes = [f for f in fits["fits"]["model_size"] if f["metric"] == "top1"]
    assert len(sizes) == table[["family", "data_count"]].drop_duplicates().shape[0]
    assert [t["group"] for t in fits["compute_optimal"]["top1"]] == [ALL, "resnet", "vit"]


def test_plots_are_written(report):
    _, out, result = report
    plots = result["paths"]["plots"]
    expected = {f"accuracy_vs_{kind}_{metric}" for kind in ("compute", "data", "model_size")
                for metric in ("top1", "fewshot_cifar10_5shot")} | {"training_curves"}
    assert set(plots) == expected
    for paths in plots.values():
        assert paths["png"].parent == out / "plots"
        assert paths["png"].stat().st_size > 10_000 and paths["svg"].stat().st_size > 10_000


def test_without_curves_and_with_bad_curves(tmp_path):
    table = synthetic_study(fewshot=False)
    result = build_report(table, None, tmp_path / "a", metrics=["top1"], n_boot=10)
    assert "training_curves" not in result["paths"]["plots"]
    assert result["fits"]["metrics"] == ["top1"]
    with pytest.raises(ValueError, match="missing column"):
        build_report(table, pd.DataFrame({"trial_id": ["t000"], "step": [1]}), tmp_path / "b", n_boot=10)


def test_a_study_without_results_still_gets_its_figures(tmp_path):
    table = synthetic_study()
    result = build_report(table[table["status"] == "failed"], None, tmp_path, n_boot=10)
    assert result["fits"]["finished"] == 0
    assert result["fits"]["headline"]["top1"]["compute_exponent_b"] is None
    assert result["paths"]["plots"]["accuracy_vs_compute_top1"]["png"].stat().st_size > 0


def test_transfer_accuracy_of_the_fine_tuned_frontier_gets_its_own_frontier_and_plots(tmp_path):
    """The study's fine-tuning stage fills transfer_top1 for its frontier trials only: the report then draws the
    Pareto plot on it (the paper's y-axis) from those rows, and leaves the other trials out of it."""
    table = results_table(synthetic_study())
    top = frontier(best_lr_rows(table, "top1"), metric="top1", by=None)
    tuned = top.loc[top["group"] == ALL, "trial_id"].tolist()
    assert len(tuned) >= 2
    table["transfer_top1"] = table["top1"].where(table["trial_id"].isin(tuned)) * 0.9
    result = build_report(table, None, tmp_path, n_boot=20)
    written = pd.read_csv(result["paths"]["frontier"])
    mine = written[written["metric"] == "transfer_top1"]
    assert set(mine["trial_id"]) <= set(tuned) and len(mine) > 0
    assert "transfer_top1" in result["fits"]["metrics"]
    assert result["paths"]["plots"]["accuracy_vs_compute_transfer_top1"]["png"].stat().st_size > 0
    assert read_table(result["paths"]["table"]["parquet"])["transfer_top1"].notna().sum() == len(tuned)


def test_transfer_accuracy_outside_zero_one_is_refused():
    table = results_table(synthetic_study())
    table.loc[0, "transfer_top1"] = 71.5  # a percentage, not a fraction
    with pytest.raises(ValueError, match="column 'transfer_top1' must be a fraction"):
        results_table(table)

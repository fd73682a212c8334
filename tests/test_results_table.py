"""The results table: validation with named errors, exact Parquet/CSV round trips, best lr per cell."""

import pandas as pd
import pytest
from analysis_synthetic import synthetic_study

from pipelines.analysis.results_table import (
    COLUMNS,
    accuracy_metrics,
    best_lr_rows,
    read_table,
    results_table,
    write_table,
)


def test_columns_are_typed_and_ordered():
    table = results_table(synthetic_study())
    assert list(table.columns[:13]) == list(COLUMNS)[:13]  # up to top1
    assert table.columns[13] == "fewshot_cifar10_5shot"
    assert list(table.columns[14:]) == list(COLUMNS)[13:]
    assert str(table["params"].dtype) == "Int64" and str(table["variant"].dtype) == "string"
    assert table["patch_size"].isna().any()  # resnets have no patch size: NA, not 0
    assert accuracy_metrics(table) == ["top1", "fewshot_cifar10_5shot"]


def test_strings_from_mlflow_params_are_parsed():
    row = {"trial_id": "a", "family": "vit", "variant": "vit-ti/4", "params": "5500000", "lr": "0.0003",
           "data_fraction": "0.1", "top1": 0.5, "status": "FINISHED", "note": ""}
    table = results_table([row])
    assert table.loc[0, "params"] == 5_500_000
    assert table.loc[0, "lr"] == 0.0003 and table.loc[0, "data_fraction"] == 0.1
    assert table.loc[0, "status"] == "finished"
    assert pd.isna(table.loc[0, "note"]) and pd.isna(table.loc[0, "budget"])


@pytest.mark.parametrize("change, match", [
    ({"top_1": 0.5}, "unknown column.*top_1"),
    ({"top1": 57.0}, "'top1' must be a fraction"),
    ({"fewshot_cifar10_5shot": -0.1}, "'fewshot_cifar10_5shot' must be a fraction"),
    ({"params": "many"}, "'params' must be numeric"),
    ({"budget": 10.5}, "'budget' must hold integers"),
    ({"lr": 0.0}, "'lr' must be positive"),
    ({"data_fraction": 1.5}, r"'data_fraction' must be in \(0, 1\]"),
    ({"variant": None}, "'variant' is empty for trial"),
])
def test_bad_values_are_named(change, match):
    row = {"trial_id": "a", "family": "vit", "variant": "vit-ti/4", "status": "finished", "top1": 0.5}
    with pytest.raises(ValueError, match=match):
        results_table([{**row, **change}])


def test_no_trials_is_an_empty_table_with_every_column():
    table = results_table([])
    assert table.empty and list(table.columns) == list(COLUMNS)


def test_duplicate_trials_and_missing_required_columns_fail():
    row = {"trial_id": "a", "family": "vit", "variant": "vit-ti/4", "status": "finished"}
    with pytest.raises(ValueError, match="duplicate trial_id.*'a'"):
        results_table([row, row])
    with pytest.raises(ValueError, match="missing required column.*status"):
        results_table([{k: v for k, v in row.items() if k != "status"}])


def test_parquet_and_csv_round_trip_exactly(tmp_path):
    table = results_table(synthetic_study())
    paths = write_table(table, tmp_path)
    for path in paths.values():
        pd.testing.assert_frame_equal(read_table(path), table)
    with pytest.raises(ValueError, match="expected a .parquet or .csv"):
        read_table(tmp_path / "results.json")


def test_best_lr_per_cell():
    table = results_table(synthetic_study())
    best = best_lr_rows(table)
    cells = ["variant", "data_count", "budget"]
    finished = table[table["status"] == "finished"]
    assert len(best) == len(finished.drop_duplicates(cells))  # one row per cell
    assert (best["status"] == "finished").all()  # the failed trial (lr 1e-2, top1 missing) is never chosen
    expected = finished.loc[finished.groupby(cells)["top1"].idxmax(), "trial_id"]
    assert sorted(best["trial_id"]) == sorted(expected)


def test_best_lr_ties_go_to_the_lowest_trial_id():
    rows = [{"trial_id": t, "family": "vit", "variant": "vit-ti/4", "budget": 100, "lr": lr, "top1": 0.5,
             "train_flops": 1e12, "status": "finished"} for t, lr in (("b", 1e-3), ("a", 3e-3))]
    assert best_lr_rows(results_table(rows))["trial_id"].tolist() == ["a"]

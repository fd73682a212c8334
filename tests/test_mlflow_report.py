"""MLflow round trip: runs written by the contract's names come back as the same table; `vit-study report` on a fresh
directory reproduces it and logs the report to the parent run. A local SQLite store, no server."""

import argparse
import json

import pandas as pd
import pytest
from analysis_synthetic import synthetic_curves, synthetic_study
from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient

from pipelines.analysis import contract, report_command
from pipelines.analysis.mlflow_source import load_study, table_from_mlflow
from pipelines.analysis.results_table import fewshot_columns, read_table, results_table

EXPERIMENT = "vit-study-analysis-test"
RESUMED = "t002"  # re-logs steps 5.. after a restore: the later values must win
NOTE = "resumed once after a node failure"


def log_trial(client, experiment_id, parent_id, row, curves, start_time, status=None, training_keys=True):
    """A trial's child run exactly as the contract describes it; curves under the training loop's MLflow keys
    (``train/loss``, ...) or, with ``training_keys=False``, under their short names."""
    tags = contract.trial_tags(parent_id, row["trial_id"], row)
    if not pd.isna(row["note"]):
        tags[contract.TAG_NOTE] = row["note"]
    run = client.create_run(experiment_id, start_time=start_time, tags=tags).info.run_id
    params = [Param(k, str(row[k])) for k in contract.PARAM_COLUMNS if not pd.isna(row[k])]
    finals = {k: row[k] for k in contract.FINAL_METRICS}
    finals.update({contract.fewshot_metric(c): row[c] for c in fewshot_columns(row)})
    metrics = [Metric(k, float(v), start_time, 0) for k, v in finals.items() if not pd.isna(v)]
    mine = curves[curves["trial_id"] == row["trial_id"]]
    key = {name: keys[0] if training_keys else name for name, keys in contract.CURVE_METRICS.items()}
    metrics += [Metric(key[m], float(v), start_time + int(s), int(s))
                for m, s, v in zip(mine.metric, mine.step, mine.value)]
    client.log_batch(run, metrics=metrics, params=params)
    client.set_terminated(run, status or ("FINISHED" if row["status"] == "finished" else "FAILED"))
    return run


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    experiment_id = client.create_experiment(EXPERIMENT, artifact_location=str(root / "artifacts"))
    table = results_table(synthetic_study()).astype({"note": object})
    table.loc[table["trial_id"] == RESUMED, "note"] = NOTE
    table = results_table(table)
    curves = synthetic_curves(table)

    # An older study in the same experiment, with one trial: ignored unless asked for.
    old_parent = client.create_run(experiment_id, start_time=1_000,
                                   tags={contract.TAG_ROLE: contract.ROLE_PARENT}).info.run_id
    old_row = table.iloc[0].to_dict() | {"trial_id": "old-0"}
    log_trial(client, experiment_id, old_parent, old_row, curves.iloc[:0], 1_000)

    parent = client.create_run(experiment_id, start_time=10_000,
                               tags={contract.TAG_ROLE: contract.ROLE_PARENT}).info.run_id
    rows = table.to_dict("records")
    # A stale duplicate of one trial (a restore that did not find its run), left RUNNING: must be ignored.
    log_trial(client, experiment_id, parent, rows[1] | {"top1": 0.0123}, curves.iloc[:0], 20_000, status="RUNNING")
    for i, row in enumerate(rows):
        log_trial(client, experiment_id, parent, row, curves, 30_000 + 100 * i, training_keys=i % 3 != 0)
    resumed = client.search_runs([experiment_id], f"tags.trial_id = '{RESUMED}'")[0].info.run_id
    relogged = curves[(curves["trial_id"] == RESUMED) & (curves["step"] >= 5)].assign(value=lambda c: c.value * 0.5)
    resumed_keys = {name: keys[0] for name, keys in contract.CURVE_METRICS.items()}  # RESUMED is t002: i % 3 != 0
    client.log_batch(resumed, metrics=[Metric(resumed_keys[m], float(v), 90_000 + int(s), int(s))
                                       for m, s, v in zip(relogged.metric, relogged.step, relogged.value)])
    for run in (old_parent, parent):  # a finished study; the report still logs to it
        client.set_terminated(run)
    expected_curves = (pd.concat([curves.drop(relogged.index), relogged])
                       .sort_values(["trial_id", "metric", "step"]).reset_index(drop=True))
    return {"uri": uri, "root": root, "client": client, "table": table, "curves": expected_curves,
            "parent": parent, "old_parent": old_parent}


def test_table_round_trips_through_mlflow(store):
    table, curves = table_from_mlflow(EXPERIMENT, store["uri"])
    pd.testing.assert_frame_equal(table, store["table"])
    assert table.loc[table["trial_id"] == RESUMED, "note"].item() == NOTE
    pd.testing.assert_frame_equal(curves, store["curves"], check_dtype=False)


def test_parent_selection(store):
    old = load_study(EXPERIMENT, store["uri"], parent_run_id=store["old_parent"])
    assert old.table["trial_id"].tolist() == ["old-0"]
    assert load_study(EXPERIMENT, store["uri"]).parent_run_id == store["parent"]
    with pytest.raises(ValueError, match="not a study parent run"):
        load_study(EXPERIMENT, store["uri"], parent_run_id=_a_trial_run(store))
    with pytest.raises(ValueError, match="no MLflow experiment named 'nope'"):
        table_from_mlflow("nope", store["uri"])


def _a_trial_run(store):
    return store["client"].search_runs([store["client"].get_experiment_by_name(EXPERIMENT).experiment_id],
                                       f"tags.`{contract.TAG_ROLE}` = '{contract.ROLE_TRIAL}'")[0].info.run_id


def test_report_command_on_a_fresh_directory(store, tmp_path, capsys):
    parser = argparse.ArgumentParser()
    report_command.add_arguments(parser)
    out = tmp_path / "fresh"
    args = parser.parse_args(["--experiment", EXPERIMENT, "--tracking-uri", store["uri"], "--out", str(out),
                              "--bootstrap", "20"])
    assert report_command.run(args) == 0
    assert "logged to run" in capsys.readouterr().out

    for name in ("results.parquet", "results.csv"):
        pd.testing.assert_frame_equal(read_table(out / name), store["table"])
    fits = json.loads((out / "fits.json").read_text())

    client = store["client"]
    logged = {a.path for a in client.list_artifacts(store["parent"], contract.REPORT_ARTIFACT_DIR)}
    assert {f"{contract.REPORT_ARTIFACT_DIR}/{n}" for n in ("results.parquet", "results.csv", "fits.json",
                                                           "frontier.csv", "plots")} <= logged
    plots = {a.path for a in client.list_artifacts(store["parent"], f"{contract.REPORT_ARTIFACT_DIR}/plots")}
    assert f"{contract.REPORT_ARTIFACT_DIR}/plots/accuracy_vs_compute_top1.png" in plots
    metrics = client.get_run(store["parent"]).data.metrics
    assert metrics["report.top1.compute_exponent_b"] == pytest.approx(fits["headline"]["top1"]["compute_exponent_b"])


def test_default_out_dir_is_a_safe_path():
    assert str(report_command.default_out_dir("team/study: cifar10")) == "outputs/report/team_study_cifar10"


def test_contract_names():
    assert contract.fewshot_metric_name("cifar10", 5) == "fewshot/cifar10_5shot"
    assert contract.fewshot_column("fewshot/cifar10_5shot") == "fewshot_cifar10_5shot"
    assert contract.fewshot_metric(contract.fewshot_column("fewshot/pets_10shot")) == "fewshot/pets_10shot"
    with pytest.raises(ValueError, match="missing value.*data_fraction.*budget"):
        contract.trial_tags("parent", "t1", {"family": "vit", "variant": "vit-ti/4", "data_fraction": None})

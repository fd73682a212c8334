"""Where a study lives and how `--resume` finds it again, without starting Ray: the experiment path, the state file
with the trials' specs, the refusal to start over an existing study or to resume a missing one, and a resumed study
keeping its MLflow tracking URI."""

import pytest

from pipelines.study.config import ConfigError, study_config_from_dict
from pipelines.study.driver import check_resumable, experiment_path, tracking_uri_for
from pipelines.study.grid import describe_data, expand_grid
from pipelines.study.state import load_trial, read_state, write_state

STUDY = {"name": "s", "train": {"data": {"source": "synthetic", "num_classes": 10, "synthetic_size": 256},
                                 "schedule": {"global_batch_size": 32}},
         "grid": {"models": ["vit-pi/8"], "data_fractions": [1.0], "budgets": ["64 images", "128 images"]}}


def _cfg(tmp_path, **extra):
    return study_config_from_dict({**STUDY, "storage_path": str(tmp_path / "runs"), **extra})


def test_the_experiment_path_is_absolute_or_the_uri(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert experiment_path(study_config_from_dict({**STUDY, "storage_path": "rel"})) == str(tmp_path / "rel" / "s")
    assert experiment_path(study_config_from_dict(STUDY)) == str(tmp_path / "runs" / "s")  # the default
    assert experiment_path(study_config_from_dict({**STUDY, "storage_path": "s3://b/x"})) == "s3://b/x/s"


def test_trial_specs_round_trip_through_the_state_file(tmp_path):
    cfg = _cfg(tmp_path)
    trials = expand_grid(cfg, describe_data(cfg))
    path = experiment_path(cfg)
    assert read_state(path) is None
    write_state(path, {"tracking_uri": "sqlite:////x.db", "trials": {t.key: t.to_dict() for t in trials}})
    for trial in trials:
        assert load_trial(path, trial.key) == trial
    with pytest.raises(KeyError, match="nope"):
        load_trial(path, "nope")


def test_a_study_is_started_once_and_resumed_only_if_it_exists(tmp_path):
    path = experiment_path(_cfg(tmp_path))
    check_resumable(path, resume=False)
    with pytest.raises(ConfigError, match=r"^--resume: there is no study to resume"):
        check_resumable(path, resume=True)
    (tmp_path / "runs" / "s").mkdir(parents=True)
    (tmp_path / "runs" / "s" / "tuner.pkl").write_bytes(b"")  # what Tune leaves behind to restore from
    check_resumable(path, resume=True)
    with pytest.raises(ConfigError, match=r"^name: a study already exists .* --resume"):
        check_resumable(path, resume=False)


def test_a_resumed_study_keeps_its_tracking_uri(tmp_path):
    path = experiment_path(_cfg(tmp_path))
    write_state(path, {"tracking_uri": "http://127.0.0.1:5999", "trials": {}})
    assert tracking_uri_for(_cfg(tmp_path), path, resume=True) == "http://127.0.0.1:5999"
    same = _cfg(tmp_path, train={**STUDY["train"], "tracking": {"uri": "http://127.0.0.1:5999"}})
    assert tracking_uri_for(same, path, resume=True) == "http://127.0.0.1:5999"
    other = _cfg(tmp_path, train={**STUDY["train"], "tracking": {"uri": "http://127.0.0.1:6000"}})
    with pytest.raises(ConfigError, match=r"^train\.tracking\.uri: .* logs to http://127\.0\.0\.1:5999"):
        tracking_uri_for(other, path, resume=True)
    assert tracking_uri_for(other, path, resume=False) == "http://127.0.0.1:6000"


def test_an_interrupted_study_counts_running_and_never_created_trials_as_unfinished():
    from types import SimpleNamespace

    from pipelines.study.driver import count_unfinished

    def result(key, error=None, **metrics):
        return SimpleNamespace(config={"trial": key}, error=error, metrics=metrics)

    planned = ["000", "001", "002", "003", "004"]
    results = [result("000", top1=0.3, step=10), result("001", error=RuntimeError("nan")),
               result("002", **{"train/loss": 2.0, "step": 4})]  # running when stopped; 003, 004 never created
    assert count_unfinished(results, planned) == 3
    assert count_unfinished([result(k, top1=0.1) for k in planned], planned) == 0

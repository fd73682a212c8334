"""Run configs: YAML + dotted overrides -> validated dataclasses; durations -> steps; errors name the field."""

import argparse
from pathlib import Path

import pytest

from pipelines.train.config import ConfigError, TrainConfig, load_config
from pipelines.train.config_loading import flatten
from pipelines.train.durations import Duration, parse_duration, to_steps
from pipelines.train.plan import resolve_steps
from pipelines.train.resources import cpus_per_worker

REPO = Path(__file__).resolve().parents[1]
PRESETS = sorted((REPO / "configs").glob("train-*.yaml"))
SYNTH = ["data.num_classes=10"]


@pytest.mark.parametrize("path", PRESETS, ids=lambda p: p.name)
def test_every_preset_loads_and_validates(path):
    text = path.read_text()
    if "../shared/data" in text and not (REPO.parent / "shared" / "data").exists():
        pytest.skip("the shared test data is not on this machine")
    cfg = load_config(path)
    assert cfg.to_dict()["model"]["name"] == cfg.model.name
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg  # round trip through the dict workers receive


def test_overrides_are_typed_like_the_field():
    cfg = load_config(None, SYNTH + ["optim.lr=3e-4", "optim.betas=[0.9, 0.95]", "schedule.total=40",
                                     "model.options.drop_path=0.1", "scaling.cpus_per_worker=1"])
    assert cfg.optim.lr == pytest.approx(3e-4) and isinstance(cfg.optim.lr, float)
    assert cfg.optim.betas == (0.9, 0.95)
    assert cfg.scaling.cpus_per_worker == 1.0
    assert to_steps(cfg.schedule.total, global_batch_size=8) == 40
    assert cfg.model.options == {"drop_path": 0.1}


@pytest.mark.parametrize("overrides, field", [
    (["optim.lrr=1"], "optim.lrr"),
    (["optim.lr=-1"], "optim.lr"),
    (["optim.lr=fast"], "optim.lr"),
    (["schedule.global_batch_size=7", "scaling.num_workers=2"], "schedule.global_batch_size"),
    (["schedule.global_batch_size=32", "schedule.micro_batch_size=5"], "schedule.micro_batch_size"),
    (["schedule.total=3 eons"], "schedule.total"),
    (["schedule.decay=exponential"], "schedule.decay"),
    (["model.name=vit-q/4"], "model.name"),
    (["model.options.dropout=2"], "model.options"),
    (["data.source=/nonexistent/place"], "data.source"),
    (["data.num_classes=null"], "data.num_classes"),
    (["data.prefetch_batches=-1"], "data.prefetch_batches"),
    (["parallel.mixed_precision=fp8"], "parallel.mixed_precision"),
    (["eval.fewshot_shots=[0, 5]"], "eval.fewshot_shots"),
    (["scaling.use_gpu=maybe"], "scaling.use_gpu"),
])
def test_bad_values_fail_naming_the_field(overrides, field):
    with pytest.raises(ConfigError) as info:
        load_config(None, SYNTH + overrides)
    assert field in str(info.value)


def test_errors_name_the_file(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("data:\n  num_classes: 10\noptim:\n  lr: [1]\n")
    with pytest.raises(ConfigError, match=r"run\.yaml: optim\.lr"):
        load_config(path)


@pytest.mark.parametrize("text, expected", [
    ("500 steps", Duration(500, "steps")), ("1 step", Duration(1, "steps")), (12, Duration(12, "steps")),
    ("30", Duration(30, "steps")), ("1.5e3 images", Duration(1500, "images")), ("2 epochs", Duration(2, "epochs")),
    ("1_000 images", Duration(1000, "images")),
])
def test_parse_duration(text, expected):
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["1.5 steps", "-1 epochs", "epochs 3", "3 fortnights", "", True, 2.5])
def test_parse_duration_rejects(text):
    with pytest.raises(ValueError, match="x.y"):
        parse_duration(text, "x.y")


def test_durations_convert_in_one_helper():
    assert to_steps("10 steps", global_batch_size=64) == 10
    assert to_steps("6400 images", global_batch_size=64) == 100
    assert to_steps("2 epochs", global_batch_size=100, epoch_size=5000) == 100
    with pytest.raises(ValueError, match="training set size"):
        to_steps("2 epochs", global_batch_size=100)


def test_plan_resolves_steps_and_checks_lengths():
    cfg = load_config(None, SYNTH + ["schedule.global_batch_size=100", "schedule.total=3 epochs",
                                     "schedule.warmup=1000 images", "eval.every=0.5 epochs"])
    steps = resolve_steps(cfg, train_size=1000)
    assert steps == {"total_steps": 30, "warmup_steps": 10, "eval_every": 5, "fewshot_every": 0,
                     "checkpoint_every": 0}
    with pytest.raises(ConfigError, match="schedule.warmup"):
        resolve_steps(cfg.replace({"schedule.warmup": "5 epochs"}), train_size=1000)
    with pytest.raises(ConfigError, match="schedule.global_batch_size"):
        resolve_steps(cfg, train_size=50)


def test_cpus_per_worker_leaves_room_for_data_and_refuses_the_impossible():
    cfg = load_config(None, SYNTH + ["scaling.num_workers=2"])
    assert cpus_per_worker(cfg.scaling, {"CPU": 2.0}) == 0.5  # 1 CPU kept for Ray Data
    assert cpus_per_worker(cfg.scaling, {"CPU": 16.0}) == 7.5
    with pytest.raises(ConfigError, match="needs 3 CPUs, but the cluster has 2"):
        cpus_per_worker(cfg.replace({"scaling.cpus_per_worker": 1.0}).scaling, {"CPU": 2.0})
    with pytest.raises(ConfigError, match="scaling"):
        cpus_per_worker(cfg.replace({"scaling.data_cpus": 2.0}).scaling, {"CPU": 2.0})
    with pytest.raises(ConfigError, match="GPU"):
        cpus_per_worker(cfg.replace({"scaling.use_gpu": True}).scaling, {"CPU": 8.0})
    # real data: read tasks take whole CPUs, so half a CPU left to Ray Data would hang the run, not slow it
    half = cfg.replace({"scaling.data_cpus": 0.5}).scaling
    assert cpus_per_worker(half, {"CPU": 2.0}) == 0.75  # synthetic data: no read tasks
    with pytest.raises(ConfigError, match="scaling.data_cpus"):
        cpus_per_worker(half, {"CPU": 2.0}, reads_data=True)
    study_trial = cfg.replace({"scaling.data_cpus": 0.5, "scaling.cpus_per_worker": 0.25}).scaling
    assert cpus_per_worker(study_trial, {"CPU": 2.0}, reads_data=True) == 0.25  # 1.5 CPUs left


def test_flatten_gives_dotted_params():
    flat = flatten(load_config(None, SYNTH).to_dict())
    assert flat["optim.lr"] == 1e-3 and flat["schedule.global_batch_size"] == 256 and "model.options" in flat


def test_cli_reports_config_errors_before_ray(capsys):
    from pipelines.train import command

    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    args = parser.parse_args(["--config", str(REPO / "configs" / "train-smoke.yaml"), "optim.lr=-1"])
    assert command.run(args) == 2
    assert "optim.lr" in capsys.readouterr().err

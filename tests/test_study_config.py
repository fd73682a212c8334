"""Study configs: every preset loads; bad input fails before Ray starts, with an error naming the field; the CLI
reports such errors with exit status 2."""

import argparse
from pathlib import Path

import pytest

from pipelines.study.config import ConfigError, StudyConfig, load_study_config, study_config_from_dict

REPO = Path(__file__).resolve().parents[1]
PRESETS = sorted((REPO / "configs").glob("study-*.yaml"))
SYNTH = {"train": {"data": {"source": "synthetic", "num_classes": 10, "image_size": 32, "synthetic_size": 256}},
         "grid": {"models": ["vit-pi/8", "t2t-vit-7"], "data_fractions": [0.5, 1.0], "budgets": ["64 images"]}}


def _with(**changes) -> dict:
    """SYNTH with dotted keys set (``grid.budgets=[...]``); a value of ``...`` deletes the key."""
    import copy

    data = copy.deepcopy(SYNTH)
    for dotted, value in changes.items():
        node, parts = data, dotted.split("__")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        if value is ...:
            node.pop(parts[-1], None)
        else:
            node[parts[-1]] = value
    return data


@pytest.mark.parametrize("path", PRESETS, ids=lambda p: p.name)
def test_every_preset_loads_and_validates(path):
    if "../shared/data" in path.read_text() and not (REPO.parent / "shared" / "data").exists():
        pytest.skip("the shared test data is not on this machine")
    cfg = load_study_config(path)
    assert cfg.grid.models and cfg.grid.budgets
    assert cfg.search.scheduler == "none" or len(cfg.grid.lrs) >= 2  # early stopping only for an lr search


def test_presets_required_by_the_issue_exist():
    names = {p.stem for p in PRESETS}
    assert {"study-smoke", "study-cpu", "study-cifar10-gpu", "study-imagenet21k"} <= names
    smoke = load_study_config(REPO / "configs" / "study-smoke.yaml")
    families = {m.name.split("-")[0] for m in smoke.grid.models}
    assert len(families) >= 2 and len(smoke.grid.data_fractions) >= 2 and len(smoke.grid.budgets) >= 2
    assert load_study_config(REPO / "configs" / "study-imagenet21k.yaml").storage_path == \
        "s3://vit-study-runs/ray-results"


def test_bare_model_names_and_overrides_become_entries():
    cfg = study_config_from_dict(_with(grid__models=["vit-pi/8", {"name": "vit-pi/4",
                                                                  "overrides": {"optim.lr": 3e-4}}]))
    assert [(m.name, m.overrides) for m in cfg.grid.models] == [("vit-pi/8", {}), ("vit-pi/4", {"optim.lr": 3e-4})]
    assert cfg.experiment_name == cfg.name == StudyConfig().name


def test_cli_style_overrides_are_typed(tmp_path):
    import yaml

    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(SYNTH))
    cfg = load_study_config(path, ["grid.budgets=[32 images, 1 epochs]", "train.optim.lr=3e-4",
                                   "resources.max_concurrent_trials=2", "grid.lrs=[1e-3, 3e-3]"])
    assert cfg.grid.budgets == ["32 images", "1 epochs"]
    assert cfg.train.optim.lr == pytest.approx(3e-4) and cfg.resources.max_concurrent_trials == 2
    assert cfg.grid.lrs == [pytest.approx(1e-3), pytest.approx(3e-3)]


@pytest.mark.parametrize("changes, field", [
    ({"grid__models": ["vit-pi/8", "vit-zz/4"]}, "grid.models[1]"),  # unknown variant
    ({"grid__models": ["vit-pi/5"]}, "grid.models[0]"),  # patch 5 does not divide 32
    ({"grid__models": ["hybrid-r26+vit-pi/16"], "train__data__image_size": 40}, "grid.models[0]"),  # stride 16
    ({"grid__models": ["vit-pi/8", "vit-pi/8"]}, "grid.models"),
    ({"grid__models": []}, "grid.models"),
    ({"grid__budgets": ["64 images", "-10 images"]}, "grid.budgets[1]"),  # negative budget
    ({"grid__budgets": ["0 epochs"]}, "grid.budgets[0]"),
    ({"grid__budgets": ["3 fortnights"]}, "grid.budgets[0]"),
    ({"grid__data_fractions": [1.5]}, "grid.data_fractions[0]"),  # fraction > 1
    ({"grid__data_fractions": [0.5, 0.0]}, "grid.data_fractions[1]"),
    ({"grid__data_counts": [100]}, "grid.data_fractions"),  # both fractions and counts
    ({"grid__data_fractions": ...}, "grid.data_fractions"),  # neither
    ({"grid__data_fractions": ..., "grid__data_counts": [0]}, "grid.data_counts[0]"),
    ({"grid__lrs": [1e-3, -1.0]}, "grid.lrs[1]"),
    ({"grid__budget": ["1 epochs"]}, "grid.budget"),  # a typo: unknown key
    ({"train__data__source": "/nonexistent/cifar10"}, "train.data.source"),  # missing data path
    ({"train__optim__lr": -1}, "train.optim.lr"),
    ({"search__scheduler": "asha"}, "search.scheduler"),  # early stopping without an lr search
    ({"search__scheduler": "hyperband"}, "search.scheduler"),
    ({"top1_split": "train"}, "top1_split"),
    ({"train__eval__test": False}, "top1_split"),  # reports test top-1 without evaluating test
    ({"resources__max_concurrent_trials": 0}, "resources.max_concurrent_trials"),
    ({"name": "a/b"}, "name"),
    ({"frontier__inspect": True, "train__checkpoint": {"export": False}}, "frontier.inspect"),  # no model to inspect
    ({"frontier__metric": "loss"}, "frontier.metric"),
    ({"frontier__num_images": 0}, "frontier.num_images"),
    ({"frontier__finetune": "/nonexistent/finetune.yaml"}, "frontier.finetune"),
    ({"frontier__finetune_overrides": ["data.image_size=64"]}, "frontier.finetune_overrides"),  # nothing to apply to
])
def test_bad_values_fail_naming_the_field(changes, field):
    with pytest.raises(ConfigError) as info:
        study_config_from_dict(_with(**changes))
    assert str(info.value).startswith(field), str(info.value)


@pytest.mark.parametrize("changes, message", [
    ({"train__checkpoint": {"export": False}}, "frontier.finetune: fine-tunes each frontier trial's exported"),
    ({"frontier__finetune_overrides": ["sweep.lrs=[]"]}, "frontier.finetune: .*ft.yaml: sweep.lrs"),
    ({"frontier__finetune_overrides": ["data.image_size=30"]},
     "frontier.finetune: .*ft.yaml: .*not divisible by patch_size 8"),
])
def test_a_bad_finetune_stage_fails_before_ray_naming_the_field(tmp_path, changes, message):
    import yaml

    finetune = tmp_path / "ft.yaml"
    finetune.write_text(yaml.safe_dump({"model": {"name": "vit-pi/8"},
                                        "data": {"source": "synthetic", "num_classes": 4, "image_size": 48}}))
    study_config_from_dict(_with(frontier__finetune=str(finetune)))  # the good one loads
    with pytest.raises(ConfigError, match=message):
        study_config_from_dict(_with(frontier__finetune=str(finetune), **changes))


@pytest.mark.parametrize("override, field", [
    ({"scaling.num_workers": 2}, "grid.models[0].overrides.scaling.num_workers"),  # the cluster plan is study-wide
    ({"schedule.total": "9 steps"}, "grid.models[0].overrides.schedule.total"),  # set by the grid
    ({"optim.lr": "fast"}, "grid.models[0]"),
])
def test_per_model_overrides_are_checked(override, field):
    with pytest.raises(ConfigError) as info:
        study_config_from_dict(_with(grid__models=[{"name": "vit-pi/8", "overrides": override}]))
    assert str(info.value).startswith(field), str(info.value)


def test_missing_data_path_explains_submitted_jobs():
    with pytest.raises(ConfigError, match="absolute path or a URI"):
        study_config_from_dict(_with(train__data__source="relative/missing"))


def test_errors_name_the_file(tmp_path):
    path = tmp_path / "study.yaml"
    path.write_text("grid:\n  models: [vit-pi/8]\n  data_fractions: [2]\n  budgets: [1 epochs]\n"
                    "train:\n  data: {source: synthetic, num_classes: 10}\n")
    with pytest.raises(ConfigError, match=r"study\.yaml: grid\.data_fractions\[0\]"):
        load_study_config(path)


def test_cli_reports_config_errors_before_ray(capsys, tmp_path):
    import sys

    import yaml

    from pipelines.study import command

    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(SYNTH))
    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    args = parser.parse_args(["--config", str(path), "grid.models=[vit-qq/4]", "--tracking-uri", "sqlite:///x.db"])
    assert command.run(args) == 2
    assert "grid.models[0]" in capsys.readouterr().err
    assert "ray" not in sys.modules or not __import__("ray").is_initialized()

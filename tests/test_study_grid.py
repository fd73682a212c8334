"""The study's trials: the full grid in a stable order, each a valid training config, with the MLflow contract's
params computed as vit_model and the training driver compute them; the cost estimate follows the FLOP accounting."""

import re
from pathlib import Path

import pytest
import torch

import vit_model
from pipelines.analysis.contract import PARAM_COLUMNS
from pipelines.study.config import ConfigError, study_config_from_dict
from pipelines.study.cost import estimate_cost
from pipelines.study.grid import DataFacts, describe_data, expand_grid, grid_size
from pipelines.train.config import TrainConfig, model_options
from pipelines.train.durations import to_steps

REPO = Path(__file__).resolve().parents[1]
STUDY = {
    "train": {"data": {"source": "synthetic", "num_classes": 10, "image_size": 32, "synthetic_size": 1000},
              "schedule": {"global_batch_size": 32, "warmup": "2 steps"}, "model": {"head": "mlp"}},
    "grid": {"models": ["vit-pi/8", {"name": "t2t-vit-7", "overrides": {"optim.weight_decay": 0.05}}],
             "data_fractions": [0.25, 1.0], "budgets": ["320 images", "2 epochs"], "lrs": [1e-3, 3e-3]},
}


@pytest.fixture(scope="module")
def study():
    cfg = study_config_from_dict(STUDY)
    data = describe_data(cfg)
    return cfg, data, expand_grid(cfg, data, overrides={"scaling.cpus_per_worker": 0.5})


def _model(name: str, cfg: TrainConfig):
    with torch.device("meta"):
        return vit_model.create_model(name, num_classes=10, image_size=32, **model_options(cfg))


def test_synthetic_data_sizes_are_fractions_of_its_pool(study):
    _, data, _ = study
    assert data.pool_size == 1000 and data.num_classes == 10
    assert data.train_sizes == {0.25: 250, 1.0: 1000}


def test_every_combination_once_in_a_stable_order(study):
    cfg, data, trials = study
    assert len(trials) == grid_size(cfg) == 2 * 2 * 2 * 2
    combos = [(t.params["variant"], t.params["data_fraction"], t.train["schedule"]["total"], t.params["lr"])
              for t in trials]
    assert len(set(combos)) == len(trials)
    assert combos[0] == ("vit-pi/8", 0.25, "320 images", 1e-3) and combos[-1][0] == "t2t-vit-7"
    keys = [t.key for t in trials]
    assert len(set(keys)) == len(keys) and all(re.fullmatch(r"[A-Za-z0-9._+-]+", k) for k in keys)
    again = expand_grid(cfg, data, overrides={"scaling.cpus_per_worker": 0.5})
    assert [t.key for t in again] == keys  # a resumed study finds each trial's run by its key
    # lr candidates of one model, data size and budget share a cell; nothing else does
    cells = {}
    for t in trials:
        cells.setdefault(t.cell, set()).add(t.params["lr"])
    assert len(cells) == len(trials) // 2 and all(lrs == {1e-3, 3e-3} for lrs in cells.values())


def test_each_trial_is_a_valid_config_with_its_grid_values(study):
    _, _, trials = study
    for t in trials:
        cfg = TrainConfig.from_dict(t.train)  # validates
        assert cfg.model.name == t.params["variant"] and cfg.optim.lr == t.params["lr"]
        assert cfg.data.synthetic_size == t.params["data_count"]  # the synthetic pool shrinks with the fraction
        assert cfg.scaling.cpus_per_worker == 0.5 and cfg.name == t.key and t.num_workers == 1
        assert cfg.optim.weight_decay == (0.05 if cfg.model.name == "t2t-vit-7" else 0.1)  # the per-model override
        assert cfg.model.head == "mlp"


def test_params_are_the_contracts_and_match_the_models(study):
    _, _, trials = study
    for t in trials:
        assert list(t.params) == list(PARAM_COLUMNS)
        cfg = TrainConfig.from_dict(t.train)
        model = _model(t.params["variant"], cfg)
        assert t.params["family"] == model.family
        assert t.params["params"] == sum(p.numel() for p in model.parameters())
        assert t.params["forward_gflops"] == pytest.approx(vit_model.forward_flops(model) / 1e9, rel=1e-12)
        assert t.params["patch_size"] == {"vit-pi/8": 8, "t2t-vit-7": 16}[t.params["variant"]]
        assert t.params["image_size"] == 32


def test_budgets_are_the_images_the_driver_will_train_on(study):
    _, _, trials = study
    for t in trials:
        n, budget = t.params["data_count"], t.train["schedule"]["total"]
        steps = to_steps(budget, global_batch_size=32, epoch_size=n)
        assert t.params["budget"] == steps * 32
        assert t.params["budget_epochs"] == pytest.approx(steps * 32 / n)
    two_epochs = [t for t in trials if t.train["schedule"]["total"] == "2 epochs"]
    assert {t.params["budget"] for t in two_epochs} == {round(2 * 250 / 32) * 32, round(2 * 1000 / 32) * 32}


def test_counts_give_fractions_of_the_pool():
    cfg = study_config_from_dict({**STUDY, "grid": {**STUDY["grid"], "data_fractions": None,
                                                    "data_counts": [100, 400], "lrs": []}})
    trials = expand_grid(cfg, describe_data(cfg))
    assert {(t.params["data_count"], t.params["data_fraction"]) for t in trials} == {(100, 0.1), (400, 0.4)}
    assert all(t.params["lr"] == cfg.train.optim.lr for t in trials)  # no candidates: the recipe's lr


def test_a_combination_that_cannot_train_names_the_trial_and_field():
    too_short = {**STUDY, "grid": {**STUDY["grid"], "budgets": ["320 images", "8 images"]}}
    cfg = study_config_from_dict(too_short)
    with pytest.raises(ConfigError, match=r"trial 002-vit-pi_8-f0\.25-b8img.*grid\.budgets\[1\].*schedule\.total"):
        expand_grid(cfg, describe_data(cfg))
    small = {**STUDY, "grid": {**STUDY["grid"], "data_counts": [10], "data_fractions": None}}
    cfg = study_config_from_dict(small)
    with pytest.raises(ConfigError, match="global_batch_size"):
        expand_grid(cfg, describe_data(cfg))


def test_a_count_larger_than_the_pool_is_an_error():
    cfg = study_config_from_dict({**STUDY, "grid": {**STUDY["grid"], "data_fractions": None,
                                                    "data_counts": [5000]}})
    with pytest.raises(ConfigError, match=r"grid\.data_counts\[0\]"):
        describe_data(cfg)


def test_cost_is_three_forward_passes_per_image_seen():
    cfg = study_config_from_dict(STUDY)
    cost = estimate_cost(cfg, train_images=1000)
    trials = expand_grid(cfg, DataFacts("synthetic", 10, 1000, {0.25: 250, 1.0: 1000}))
    expected = 0.0
    for t in trials:
        model = _model(t.params["variant"], TrainConfig.from_dict(t.train))
        expected += vit_model.training_flops(vit_model.forward_flops(model), t.params["budget"])
    assert cost.trials == len(trials) and cost.train_flops == pytest.approx(expected, rel=1e-9)
    assert cost.device_hours(peak_tflops=100, mfu=0.5) == pytest.approx(expected / 50e12 / 3600)


@pytest.mark.parametrize("name", ["study-imagenet21k", "study-cifar10-gpu"])
def test_documented_costs_follow_the_flop_accounting(name):
    text = (REPO / "configs" / f"{name}.yaml").read_text()
    command = re.search(r"python -m pipelines\.study\.cost \S+ --train-images (\S+)", text)
    documented = re.search(r"-> ([\d.e+]+) training FLOPs = ([\d,.]+) (A100|H100)-hours", text)
    assert command and documented, f"{name}: no cost line"
    if "../shared/data" in text and not (REPO.parent / "shared" / "data").exists():
        pytest.skip("the shared test data is not on this machine")
    from pipelines.study.config import load_study_config

    cost = estimate_cost(load_study_config(REPO / "configs" / f"{name}.yaml"), train_images=int(float(command[1])))
    assert float(documented[1]) == pytest.approx(cost.train_flops, rel=0.01)
    peak = {"A100": 312, "H100": 989}[documented[3]]
    assert float(documented[2].replace(",", "")) == pytest.approx(cost.device_hours(peak), rel=0.05, abs=0.05)

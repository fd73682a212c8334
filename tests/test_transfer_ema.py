"""Polyak (EMA) weight averaging: the update against a hand computation, the swap for evaluation, and the final
copy."""

import pytest
import torch

from pipelines.train.optim import WeightAverage


def _model(w: float, b: float) -> torch.nn.Linear:
    model = torch.nn.Linear(2, 1)
    with torch.no_grad():
        model.weight.fill_(w)
        model.bias.fill_(b)
    return model


def test_update_matches_a_hand_computation():
    model = _model(1.0, 0.0)
    average = WeightAverage(model, decay=0.9)
    for w in (2.0, 4.0):  # weights after two optimiser steps
        with torch.no_grad():
            model.weight.fill_(w)
        average.update(model)
    # a1 = 0.9 * 1 + 0.1 * 2 = 1.1; a2 = 0.9 * 1.1 + 0.1 * 4 = 1.39 (the bias stayed 0)
    state = average.state_dict()
    assert state["weight"] == pytest.approx(torch.full((1, 2), 1.39))
    assert torch.equal(state["bias"], torch.zeros(1))


def test_applied_swaps_in_the_average_and_restores_the_weights():
    model = _model(1.0, 0.5)
    average = WeightAverage(model, decay=0.5)
    with torch.no_grad():
        model.weight.fill_(3.0)
    average.update(model)  # 0.5 * 1 + 0.5 * 3 = 2
    x = torch.ones(1, 2)
    with average.applied(model):
        assert model(x).item() == pytest.approx(2 * 2 + 0.5)
    assert model(x).item() == pytest.approx(3 * 2 + 0.5)
    average.copy_to(model)
    assert torch.equal(model.weight, torch.full((1, 2), 2.0))


def test_load_state_dict_round_trips():
    model = _model(1.0, 0.0)
    average = WeightAverage(model, decay=0.9)
    restored = WeightAverage(_model(7.0, 7.0), decay=0.9)
    restored.load_state_dict(average.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(restored.averages, average.averages))

"""The arithmetic of the benchmark scripts (not their timings): what the FSDP memory benchmark counts as training
state, and how the study-overhead benchmark turns logged steps into shares of wall time."""

import importlib.util
from pathlib import Path

import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_state_bytes_counts_parameters_gradients_and_both_adam_moments():
    fsdp_memory = _load("fsdp_memory")
    model = torch.nn.Sequential(torch.nn.Linear(5, 3), torch.nn.Linear(3, 2, bias=False))
    optimizer = torch.optim.AdamW(model.parameters())
    counted = fsdp_memory.state_bytes(model, optimizer)
    assert counted["grads"] == 0 and counted["optim"] == 0  # nothing before a step
    model(torch.randn(4, 5)).sum().backward()
    optimizer.step()
    counted = fsdp_memory.state_bytes(model, optimizer)
    params = sum(p.numel() for p in model.parameters()) * 4
    steps = sum(s["step"].numel() * s["step"].element_size() for s in optimizer.state.values())
    assert counted == {"params": params, "grads": params, "optim": 2 * params + steps}


def test_overhead_shares_merge_overlapping_steps_and_split_off_data_wait():
    overhead = _load("study_overhead")
    # two trials at once: steps logged at their end time with (step time, data wait)
    trials = [
        {"opened": 10.0, "closed": 40.0, "steps": [(22.0, 2.0, 0.5), (24.0, 2.0, 0.0)]},
        {"opened": 12.0, "closed": 50.0, "steps": [(23.0, 2.0, 1.0), (45.0, 5.0, 0.0)]},
    ]
    row = overhead.summarise(trials, start=0.0, end=100.0, slots=2)
    assert row["compute"] == pytest.approx(11.0 - 1.5) and row["wait"] == pytest.approx(1.5)
    assert row["stepping"] == pytest.approx(9.5 / 200)
    assert row["busy"] == pytest.approx((24 - 20 + 5) / 100)  # [20, 24] overlaps; [40, 45] alone
    assert row["startup"] == 10.0 and row["tail"] == 50.0
    assert row["to_first_step"] == pytest.approx(((20 - 10) + (21 - 12)) / 2)

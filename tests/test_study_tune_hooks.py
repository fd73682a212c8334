"""ASHA for a learning-rate search compares candidates of the same grid cell only: a small model is never stopped for
being worse than a big one, and a trial that reaches its budget is never stopped before it logs its results."""

from types import SimpleNamespace

import pytest

pytest.importorskip("ray.tune")

from ray.tune.schedulers import TrialScheduler  # noqa: E402

from pipelines.study.tune_hooks import CellASHA, trial_dirname  # noqa: E402

BUDGET = 900  # images


def _trial(key: str, trial_id: str):
    return SimpleNamespace(trial_id=trial_id, config={"trial": key})


def _scheduler():
    cells = {"small-lr1": "small", "small-lr2": "small", "small-lr3": "small",
             "big-lr1": "big", "big-lr2": "big", "big-lr3": "big"}
    return CellASHA(cells, {"small": BUDGET, "big": BUDGET}, metric="train/loss", mode="min", grace_fraction=0.1,
                    reduction_factor=3)


def _report(scheduler, trial, images, loss):
    return scheduler.on_trial_result(None, trial, {"train/images_seen": images, "train/loss": loss})


def test_candidates_compete_within_their_cell_only():
    scheduler = _scheduler()
    big = [_trial(f"big-lr{i}", f"b{i}") for i in (1, 2, 3)]
    small = [_trial(f"small-lr{i}", f"s{i}") for i in (1, 2, 3)]
    for trial in big + small:
        scheduler.on_trial_add(None, trial)
    assert _report(scheduler, small[0], 90, 2.0) == TrialScheduler.CONTINUE
    assert _report(scheduler, big[0], 90, 1.0) == TrialScheduler.CONTINUE  # first of its cell
    # better than the other small candidate: it goes on, though far worse than the big model (one ASHA over the
    # whole grid would stop it: its cutoff would lie between 2.0 and 1.0)
    assert _report(scheduler, small[1], 90, 1.9) == TrialScheduler.CONTINUE
    # within the small cell, a clearly worse learning rate is stopped at the first rung
    assert _report(scheduler, small[2], 90, 5.0) == TrialScheduler.STOP
    assert _report(scheduler, big[1], 90, 5.0) == TrialScheduler.STOP


def test_a_trial_at_its_budget_is_not_stopped():
    scheduler = _scheduler()
    trials = [_trial(f"small-lr{i}", f"s{i}") for i in (1, 2, 3)]
    for trial in trials:
        scheduler.on_trial_add(None, trial)
    for trial, loss in zip(trials[:2], (1.0, 1.1)):
        _report(scheduler, trial, BUDGET, loss)
    assert _report(scheduler, trials[2], BUDGET, 1.05) == TrialScheduler.CONTINUE


def test_the_scheduler_survives_a_save_and_restore(tmp_path):
    scheduler = _scheduler()
    trial = _trial("small-lr1", "s1")
    scheduler.on_trial_add(None, trial)
    _report(scheduler, trial, 90, 1.0)
    scheduler.save(str(tmp_path / "state.pkl"))
    restored = _scheduler()
    restored.restore(str(tmp_path / "state.pkl"))
    worse = _trial("small-lr2", "s2")
    restored.on_trial_add(None, worse)
    restored.on_trial_add(None, _trial("small-lr3", "s3"))
    _report(restored, _trial("small-lr3", "s3"), 90, 1.1)
    assert _report(restored, worse, 90, 9.0) == TrialScheduler.STOP


def test_trial_directories_are_named_by_key():
    assert trial_dirname(_trial("003-vit-pi_8-f0.5-b1ep", "abc_00003")) == "003-vit-pi_8-f0.5-b1ep_abc_00003"

"""What the study adds to Tune: readable trial directories, MLflow runs never left RUNNING, ASHA within a cell.

- :func:`trial_dirname`: ``<trial key>_<trial id>`` instead of a directory named after the whole config.
- :class:`StudyRunCloser`: a trial that ended without ending its own MLflow run (stopped by the scheduler, or its
  process died) has its run ended here, in the Tune driver: KILLED or FAILED, with a note.
- :class:`CellASHA`: ASHA compares learning-rate candidates of the same grid cell only. One ASHA over the whole
  grid would compare a small model with a big one at the same step and stop the small one: the scaling curves would
  lose exactly the points they are about.
"""

from __future__ import annotations

import pickle

from ray.tune import Callback
from ray.tune.schedulers import AsyncHyperBandScheduler, FIFOScheduler, TrialScheduler

from pipelines.train import metrics as train_metrics

from . import runs
from .grid import TrialSpec
from .state import load_trial


def trial_dirname(trial) -> str:
    return f"{trial.config['trial']}_{trial.trial_id}"


class StudyRunCloser(Callback):
    """Ends the MLflow run of a trial that Tune finished or lost while the run was still RUNNING."""

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._close(trial, "KILLED", "stopped early by the scheduler (learning-rate search)")

    def on_trial_error(self, iteration, trials, trial, **info):
        try:
            error = trial.get_pickled_error()
        except Exception:  # noqa: BLE001 - the note is a courtesy; the status is what matters
            error = None
        self._close(trial, "FAILED", runs.failure_note(error) if error else "the trial's process failed")

    @staticmethod
    def _close(trial, status: str, note: str) -> None:
        study = trial.config["study"]
        spec = load_trial(study["path"], trial.config["trial"])
        run = runs.find_trial_run(study["tracking_uri"], study["experiment_id"], study["parent_run_id"], spec.key)
        if run is None or run.info.status != "RUNNING":
            return
        stopped_at = (trial.last_result or {}).get(train_metrics.STEP)
        if stopped_at is not None:
            note = f"{note} at step {stopped_at}"
        runs.close_trial_run(study["tracking_uri"], run.info.run_id, trial=spec, parent_run_id=study["parent_run_id"],
                             trial_id=trial.trial_id, status=status, note=note)


class CellASHA(FIFOScheduler):
    """One asynchronous successive-halving scheduler per grid cell, measured in images seen.

    ``cell_of`` maps a trial key to its cell, ``budgets`` a cell to its budget in images (``max_t``); the first
    rung is ``grace_fraction`` of it. Trials that reach their budget are never stopped by it, so they can log their
    final metrics.
    """

    def __init__(self, cell_of: dict[str, str], budgets: dict[str, int], *, metric: str, mode: str,
                 grace_fraction: float, reduction_factor: float):
        super().__init__()
        self._metric, self._mode, self._cell_of, self._budgets = metric, mode, dict(cell_of), dict(budgets)
        self._cells = {cell: AsyncHyperBandScheduler(
            time_attr=train_metrics.IMAGES_SEEN, metric=metric, mode=mode, max_t=budget,
            grace_period=max(1, int(budget * grace_fraction)), reduction_factor=reduction_factor,
            stop_last_trials=False) for cell, budget in budgets.items()}

    def set_search_properties(self, metric, mode, **spec) -> bool:
        return metric in (None, self._metric) and mode in (None, self._mode)

    def _scheduler(self, trial) -> AsyncHyperBandScheduler:
        return self._cells[self._cell_of[trial.config["trial"]]]

    def on_trial_add(self, tune_controller, trial):
        self._scheduler(trial).on_trial_add(tune_controller, trial)

    def on_trial_result(self, tune_controller, trial, result) -> str:
        decision = self._scheduler(trial).on_trial_result(tune_controller, trial, result)
        if result.get(train_metrics.IMAGES_SEEN, 0) >= self._budgets[self._cell_of[trial.config["trial"]]]:
            return TrialScheduler.CONTINUE  # its training is done: let it log its results
        return decision or TrialScheduler.CONTINUE

    def on_trial_complete(self, tune_controller, trial, result):
        self._scheduler(trial).on_trial_complete(tune_controller, trial, result)

    def on_trial_remove(self, tune_controller, trial):
        self._scheduler(trial).on_trial_remove(tune_controller, trial)

    def debug_string(self) -> str:
        return "ASHA per cell: " + "; ".join(f"{cell}: {s.debug_string()}" for cell, s in self._cells.items())

    def save(self, checkpoint_path: str):
        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.__dict__, f)

    def restore(self, checkpoint_path: str):
        with open(checkpoint_path, "rb") as f:
            self.__dict__.update(pickle.load(f))


def asha_for(trials: list[TrialSpec], *, metric: str, mode: str, grace_fraction: float,
             reduction_factor: float) -> CellASHA:
    return CellASHA({t.key: t.cell for t in trials}, {t.cell: int(t.params["budget"]) for t in trials},
                    metric=metric, mode=mode, grace_fraction=grace_fraction, reduction_factor=reduction_factor)


__all__ = ["CellASHA", "StudyRunCloser", "asha_for", "trial_dirname"]

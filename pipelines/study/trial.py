"""One trial of the study: the Tune trainable that runs a ``TorchTrainer`` (Ray Train V2 under Tune).

``run_trial(config)`` is what ``Tuner`` calls, with ``config = {"trial": <trial key>, "study": {...}}`` (the
trial's spec is read from the study's state file, ``pipelines.study.state``):

1. opens the trial's MLflow child run, or finds it again by the trial's stable key (a resumed trial continues it;
   one already FINISHED - killed before Tune recorded it - only reports its results again);
2. calls ``pipelines.train.driver.run_training`` with the Train run named after the Tune trial id (no timestamp),
   so a restored experiment resumes the Train run from its latest checkpoint; Train's reports reach Tune through
   ``TuneReportCallback`` and the workers' node ids reach MLflow through :class:`NodeRecorder`;
3. logs the contract's final metrics (``top1``, ``train_flops``, ``wall_time_s``, ``device_hours`` - wall time of
   the attempt that finished, so a resumed trial counts from its restore), re-sets the contract's tags and ends
   the run FINISHED; on any error it ends the run FAILED with a note (a non-finite loss
   names its step) and re-raises, so Tune marks the trial ERROR and the other trials go on.
"""

from __future__ import annotations

import time

import ray
import ray.tune
from ray.tune.integration.ray_train import TuneReportCallback

from pipelines.train import metrics as train_metrics
from pipelines.train.driver import run_training

from . import runs
from .state import load_trial

try:  # Ray Train V2's worker-group hook (a developer API): where the workers were placed
    from ray.train.v2._internal.execution.callback import WorkerGroupCallback
except ImportError:  # another Ray: the trial records its driver's node instead
    WorkerGroupCallback = None

TOP1_KEYS = {"test": train_metrics.TEST_TOP1, "val": train_metrics.VAL_TOP1}
FEWSHOT_PREFIX = train_metrics.FEWSHOT_PREFIX
REPORTED = ("step", "top1", "train_flops", "wall_time_s", "device_hours")  # what a finished trial tells Tune


if WorkerGroupCallback is not None:
    class NodeRecorder(WorkerGroupCallback):
        """Runs in the Train controller: adds the node ids of each started worker group to the run's tag."""

        def __init__(self, tracking_uri: str, run_id: str):
            self.tracking_uri, self.run_id = tracking_uri, run_id

        def after_worker_group_start(self, worker_group) -> None:
            node_ids = {worker.metadata.node_id for worker in worker_group.get_workers()}
            runs.add_node_ids(self.tracking_uri, self.run_id, node_ids)
else:
    NodeRecorder = None


def final_metrics(result_metrics: dict, *, top1_split: str, wall_time_s: float, num_workers: int) -> dict:
    """The contract's final metrics from the last checkpointed report of a finished Train run."""
    key = TOP1_KEYS[top1_split]
    if key not in result_metrics:
        raise KeyError(f"the training run reported no {key!r} (top1_split={top1_split!r}); it reported "
                       f"{sorted(k for k in result_metrics if '/' in k)}")
    out = {"top1": result_metrics[key], "train_flops": result_metrics[train_metrics.TRAIN_FLOPS],
           "wall_time_s": wall_time_s, "device_hours": wall_time_s * num_workers / 3600.0}
    out.update({k: v for k, v in result_metrics.items() if k.startswith(FEWSHOT_PREFIX)})
    return out


def run_trial(config: dict) -> None:
    """The Tune function trainable (see module docstring)."""
    study = config["study"]
    trial = load_trial(study["path"], config["trial"])
    uri, parent = study["tracking_uri"], study["parent_run_id"]
    trial_id = ray.tune.get_context().get_trial_id()
    done = runs.find_trial_run(uri, study["experiment_id"], parent, trial.key)
    if done is not None and done.info.status == "FINISHED":  # finished before a kill Tune had not yet recorded
        ray.tune.report({k: v for k, v in done.data.metrics.items() if k in REPORTED or k.startswith(FEWSHOT_PREFIX)})
        return
    run_id = runs.open_trial_run(uri, study["experiment_id"], parent, trial, trial_id)
    callbacks = [TuneReportCallback()]
    if NodeRecorder is not None:
        callbacks.append(NodeRecorder(uri, run_id))
    else:
        runs.add_node_ids(uri, run_id, {ray.get_runtime_context().get_node_id()})
    close = dict(trial=trial, parent_run_id=parent, trial_id=trial_id)
    started = time.perf_counter()
    try:
        result = run_training(trial.train, run_name=trial_id, storage_path=study["train_storage"],
                              mlflow_run_id=run_id, callbacks=callbacks)
        final = final_metrics(result.metrics, top1_split=study["top1_split"],
                              wall_time_s=time.perf_counter() - started, num_workers=trial.num_workers)
    except BaseException as error:
        status = "KILLED" if isinstance(error, KeyboardInterrupt) else "FAILED"
        runs.close_trial_run(uri, run_id, status=status, note=runs.failure_note(error), **close)
        raise
    runs.close_trial_run(uri, run_id, status="FINISHED", metrics=final, step=int(result.metrics["step"]), **close)
    ray.tune.report({"step": result.metrics["step"], **final})  # Tune's view and TensorBoard get them too


__all__ = ["NodeRecorder", "final_metrics", "run_trial"]

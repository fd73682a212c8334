"""The study's MLflow runs: one parent per study, one child per trial, found again by a stable key on resume.

Names and tags are those of ``pipelines.analysis.contract`` (what ``vit-study report`` reads back). On top:

- ``vit_study.run_key`` (``pipelines.tracking.RUN_KEY_TAG``): the parent's is the Tune experiment path; a child's
  is ``<parent run id>:<trial key>``, so a resumed trial (even one Tune had to recreate) continues its run;
- ``node_id``: the Ray node id(s) a trial's Train workers ran on, comma-separated (:class:`NodeRecorder`);
- ``mlflow.note.content`` (the table's ``note``): why a trial failed or was stopped.
"""

from __future__ import annotations

import re

from pipelines import tracking
from pipelines.analysis.contract import ROLE_PARENT, TAG_NOTE, TAG_ROLE, trial_tags
from pipelines.tracking.runs import client
from pipelines.train.config_loading import flatten

from .grid import TrialSpec

TRIAL_KEY_TAG = "vit_study.trial_key"
NODE_ID_TAG = "node_id"
NON_FINITE = re.compile(r"non-finite training signal at step (\d+)[^\n]*")
MAX_NOTE = 1000


def open_parent_run(uri: str, experiment: str, *, key: str, run_name: str, config: dict,
                    resume: bool) -> tuple[str, str]:
    """(experiment id, parent run id): the study's parent run, the existing one when ``resume``."""
    experiment_id = tracking.get_or_create_experiment(uri, experiment, tracking.artifact_location(uri))
    run_id = tracking.start_run(uri, experiment_id, key=key, run_name=run_name, tags={TAG_ROLE: ROLE_PARENT},
                                params=flatten(config), resume=resume)
    return experiment_id, run_id


def trial_run_key(parent_run_id: str, trial_key: str) -> str:
    return f"{parent_run_id}:{trial_key}"


def open_trial_run(uri: str, experiment_id: str, parent_run_id: str, trial: TrialSpec, trial_id: str) -> str:
    """The trial's child run: created with the contract's params and tags, or found again (and set RUNNING)."""
    tags = {**trial_tags(parent_run_id, trial_id, trial.params), TRIAL_KEY_TAG: trial.key}
    run_id = tracking.start_run(uri, experiment_id, key=trial_run_key(parent_run_id, trial.key), run_name=trial.key,
                                tags=tags, params=trial.params, parent_run_id=parent_run_id, resume=True)
    tracking.RunLogger(uri, run_id).set_tags(tags)  # a run found again: Tune may have given the trial a new id
    return run_id


def find_trial_run(uri: str, experiment_id: str, parent_run_id: str, trial_key: str):
    return tracking.find_run(uri, experiment_id, trial_run_key(parent_run_id, trial_key))


def close_trial_run(uri: str, run_id: str, *, trial: TrialSpec, parent_run_id: str, trial_id: str, status: str,
                    metrics: dict | None = None, step: int = 0, note: str | None = None) -> None:
    """Final metrics, the contract's tags (the training driver sets some of them its own way) and the status."""
    logger = tracking.RunLogger(uri, run_id)
    if metrics:
        logger.log_metrics(metrics, step)
        logger.flush()
    tags = trial_tags(parent_run_id, trial_id, trial.params)
    if note:
        tags[TAG_NOTE] = note[:MAX_NOTE]
    logger.set_tags(tags)
    tracking.end_run(uri, run_id, status)


def failure_note(error: BaseException) -> str:
    """What the results table says about a failed trial; a non-finite loss is named with its step."""
    text = str(error)
    match = NON_FINITE.search(text)
    if match:
        return f"non-finite loss at step {match[1]}: {match[0]}"
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return f"{type(error).__name__}: {first}" if first else type(error).__name__


def add_node_ids(uri: str, run_id: str, node_ids) -> None:
    """Add node ids to the run's ``node_id`` tag (a restarted worker group may have moved)."""
    mlflow = client(uri)
    current = tracking.with_retries(lambda: mlflow.get_run(run_id)).data.tags.get(NODE_ID_TAG, "")
    merged = sorted({*filter(None, current.split(",")), *node_ids})
    tracking.RunLogger(uri, run_id).set_tags({NODE_ID_TAG: ",".join(merged)})


__all__ = ["NODE_ID_TAG", "TRIAL_KEY_TAG", "add_node_ids", "close_trial_run", "failure_note", "find_trial_run",
           "open_parent_run", "open_trial_run"]

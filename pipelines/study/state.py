"""The study's own file in its Tune experiment directory: ``vit_study.json``.

It holds the MLflow tracking URI, experiment and parent run, and every trial's spec (``grid.TrialSpec``) by key.
Tune's trials carry only their key (a readable name in Tune's tables and small experiment state); the trial and
the driver's hooks read the spec from here, and ``--resume`` reads the MLflow side. Local paths and URIs alike.
"""

from __future__ import annotations

import functools
import json

from pipelines.data.storage import join, resolve

from .grid import TrialSpec

STATE_FILE = "vit_study.json"


def read_state(experiment_path: str) -> dict | None:
    """The state of the study at ``experiment_path``, or None if it has none."""
    filesystem, path = resolve(join(experiment_path, STATE_FILE))
    try:
        with filesystem.open_input_stream(path) as f:
            return json.loads(f.read().decode())
    except FileNotFoundError:
        return None


def write_state(experiment_path: str, state: dict) -> None:
    filesystem, root = resolve(experiment_path)
    filesystem.create_dir(root, recursive=True)
    with filesystem.open_output_stream(f"{root.rstrip('/')}/{STATE_FILE}") as f:
        f.write(json.dumps(state, indent=1).encode())


@functools.lru_cache(maxsize=4)
def _trials(experiment_path: str) -> dict:
    state = read_state(experiment_path)
    if state is None:
        raise FileNotFoundError(f"{join(experiment_path, STATE_FILE)}: the study's state file is missing")
    return state["trials"]


def load_trial(experiment_path: str, key: str) -> TrialSpec:
    """The spec of trial ``key`` of the study at ``experiment_path``."""
    trials = _trials(experiment_path)
    if key not in trials:
        raise KeyError(f"trial {key!r} is not in {join(experiment_path, STATE_FILE)}")
    return TrialSpec.from_dict(trials[key])

"""What ``--checkpoint`` names: a saved model directory, a checkpoint file, or an MLflow run holding one.

A run is ``runs:/<run_id>/<artifact_path>`` or a bare run id; for a bare id (or ``runs:/<run_id>``) the run's
artifacts are searched for a directory written by :func:`vit_model.save_model` (one holding ``model.safetensors``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import vit_model
from vit_model.weights import WEIGHTS_FILE

RUN_ID = re.compile(r"[0-9a-f]{32}\Z")
RUNS_URI = re.compile(r"runs:/(?P<run_id>[^/]+)/?(?P<path>.*)\Z")
ARTIFACT_SEARCH_DEPTH = 3


@dataclass(frozen=True)
class RunArtifact:
    run_id: str
    artifact_path: str  # "" when the run's artifacts must be searched


def parse_checkpoint(value: str) -> Path | RunArtifact:
    """A local path when one exists, else a run reference; anything else is an error naming the value."""
    match = RUNS_URI.match(value)
    if match:
        return RunArtifact(match["run_id"], match["path"].strip("/"))
    path = Path(value)
    if path.exists():
        return path
    if RUN_ID.match(value):
        return RunArtifact(value, "")
    raise ValueError(f"--checkpoint {value!r}: no such file or directory, and not runs:/<run_id>/<path> or a run id")


def find_model_artifact(client, run_id: str) -> str:
    """Shallowest artifact directory of the run that holds ``model.safetensors``."""
    level, seen = [""], []
    for _ in range(ARTIFACT_SEARCH_DEPTH + 1):
        below = []
        for directory in level:
            for info in client.list_artifacts(run_id, directory or None):
                seen.append(info.path)
                if not info.is_dir and Path(info.path).name == WEIGHTS_FILE:
                    return info.path.rsplit("/", 1)[0] if "/" in info.path else ""
                if info.is_dir:
                    below.append(info.path)
        level = below
    raise ValueError(f"run {run_id}: no artifact directory with {WEIGHTS_FILE} (artifacts: {seen[:20]}); "
                     "pass --checkpoint runs:/<run_id>/<path>")


def download_run_model(ref: RunArtifact, tracking_uri: str | None, directory: Path) -> Path:
    """Download the run's model directory into ``directory``; returns the local path."""
    import mlflow.artifacts
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    client.get_run(ref.run_id)  # a clear MLflow error when the run does not exist
    path = ref.artifact_path or find_model_artifact(client, ref.run_id)
    local = mlflow.artifacts.download_artifacts(run_id=ref.run_id, artifact_path=path or None,
                                                dst_path=str(directory), tracking_uri=tracking_uri)
    return Path(local)


def load_inspected_model(path: Path, model_name: str | None = None, image_size: int | None = None):
    """Load a saved model directory (or its safetensors file) or, given ``model_name``, any checkpoint format
    :func:`vit_model.load_pretrained` reads; ``image_size`` changes the resolution (position embeddings resampled)."""
    if model_name:
        return vit_model.load_pretrained(model_name, path, image_size=image_size)
    if not (path.is_dir() or path.suffix == ".safetensors"):
        raise ValueError(f"{path}: not a directory saved by vit_model.save_model; pass --model NAME for other formats")
    model = vit_model.load_model(path)
    if image_size and tuple(model.config.image_size) != (image_size, image_size):
        model.set_image_size(image_size)
    return model

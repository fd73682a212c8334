"""What ``init.checkpoint`` names, and the pre-trained model it holds (on the CPU, with its pre-training head).

Accepted, in this order:

* ``runs:/<run_id>/<path>`` or a bare MLflow run id: the run's exported model (downloaded; see
  :mod:`pipelines.inspection.checkpoint`);
* a directory written by :func:`vit_model.save_model` (a run's ``export/``, or the ``model`` artifact);
* a Ray Train checkpoint (``step-NNNNNNNN/``: its ``export/`` when it has one, else the sharded weights) or a Ray
  Train run directory (its newest checkpoint);
* any file or directory :func:`vit_model.load_pretrained` reads (timm, torchvision, Google ``.npz``, Hugging Face,
  T2T): then ``model.name`` says which architecture it is.

A masked-patch-prediction checkpoint holds a ``backbone.`` plus the [mask] embedding and colour head: only the
backbone is kept.
"""

from __future__ import annotations

import json
import tempfile
import warnings
from dataclasses import asdict
from pathlib import Path

import torch
from torch import nn

import vit_model
from pipelines.inspection.checkpoint import RunArtifact, download_run_model, find_model_artifact, parse_checkpoint
from vit_model.weights import CONFIG_FILE, WEIGHTS_FILE, model_record

TRAIN_STATE, RUN_CONFIG, EXPORT_DIR = "train_state.json", "run_config.yaml", "export"  # pipelines.train.checkpointing
DCP_MODEL_PREFIX = "train.model."  # where pipelines.train.checkpointing keeps the model inside the sharded state
BACKBONE_PREFIX = "backbone."  # masked patch prediction's wrapper around the ViT


def locate(spec: str) -> str:
    """The checkpoint as workers can find it: an absolute local path or ``runs:/<run_id>/<path>``."""
    try:
        where = parse_checkpoint(str(spec))
    except ValueError as exc:
        raise ValueError(f"init.checkpoint: {exc}".replace("--checkpoint ", "")) from None
    if isinstance(where, RunArtifact):
        return f"runs:/{where.run_id}/{where.artifact_path}"
    return str(Path(where).expanduser().resolve())


def source_run_id(location: str) -> str | None:
    """The MLflow run a located checkpoint came from, when it is an MLflow reference."""
    return location[len("runs:/"):].split("/", 1)[0] if location.startswith("runs:/") else None


def fetch(location: str, tracking_uri: str | None, directory: Path) -> Path:
    """A local path holding the checkpoint (downloads an MLflow run's model into ``directory``)."""
    if not location.startswith("runs:/"):
        return Path(location)
    where = parse_checkpoint(location)
    return download_run_model(where, tracking_uri, directory)


def checkpoint_dir(path: Path) -> Path:
    """The directory to read for ``path``: a Ray Train run's newest checkpoint, a checkpoint's export when it has
    one, else ``path`` itself."""
    path = Path(path)
    if path.is_dir() and not (path / TRAIN_STATE).exists():
        steps = sorted(p for p in path.glob("step-*") if (p / TRAIN_STATE).exists())
        if steps:
            path = steps[-1]
    if (path / TRAIN_STATE).exists() and (path / EXPORT_DIR / WEIGHTS_FILE).exists():
        return path / EXPORT_DIR
    return path


def read_record(location: str, tracking_uri: str | None) -> dict | None:
    """``{model, family, config}`` of one of our own checkpoints without reading its weights where possible;
    None for other formats (their architecture comes from ``model.name``)."""
    if location.startswith("runs:/"):
        import mlflow.artifacts
        from mlflow.tracking import MlflowClient

        where = parse_checkpoint(location)
        artifact = where.artifact_path or find_model_artifact(MlflowClient(tracking_uri=tracking_uri), where.run_id)
        with tempfile.TemporaryDirectory(prefix="vit-init-") as scratch:
            local = mlflow.artifacts.download_artifacts(run_id=where.run_id, tracking_uri=tracking_uri,
                                                        artifact_path=f"{artifact}/{CONFIG_FILE}".lstrip("/"),
                                                        dst_path=scratch)
            return json.loads(Path(local).read_text())
    path = checkpoint_dir(Path(location))
    if (path / TRAIN_STATE).exists():  # sharded weights only: build the model on the meta device
        with torch.device("meta"):
            return model_record(load_sharded(path, materialise=False))
    if (path / CONFIG_FILE).exists() and (path / WEIGHTS_FILE).exists():
        record = json.loads((path / CONFIG_FILE).read_text())
        if {"model", "family", "config"} <= set(record):
            return record
    return None


def load_source_model(path: Path, *, model_name: str, options: dict) -> nn.Module:
    """The pre-trained model at local ``path`` on the CPU, as it was trained (head and resolution unchanged)."""
    path = checkpoint_dir(path)
    if (path / TRAIN_STATE).exists():
        return load_sharded(path)
    if (path / CONFIG_FILE).exists() and (path / WEIGHTS_FILE).exists() and _is_ours(path):
        return vit_model.load_model(path)
    return vit_model.load_pretrained(model_name, path, **options)


def _is_ours(path: Path) -> bool:
    return {"model", "family", "config"} <= set(json.loads((path / CONFIG_FILE).read_text()))


def load_sharded(directory: Path, materialise: bool = True) -> nn.Module:
    """The model of a Ray Train checkpoint without an export, read from its sharded (DCP) files in one process."""
    import torch.distributed.checkpoint as dcp

    from pipelines.train.checkpointing import SafeFileSystemReader, SafeLoadPlanner
    from pipelines.train.config import TrainConfig, model_options
    from pipelines.train.config_loading import from_dict

    run = from_dict(TrainConfig, _read_yaml(directory / RUN_CONFIG))
    metadata = SafeFileSystemReader(str(directory)).read_metadata().state_dict_metadata
    shapes = {key[len(DCP_MODEL_PREFIX):]: meta for key, meta in metadata.items()
              if key.startswith(DCP_MODEL_PREFIX) and hasattr(meta, "size")}
    backbone_keys = {k: k[len(BACKBONE_PREFIX):] for k in shapes if k.startswith(BACKBONE_PREFIX)}
    keys = backbone_keys or {k: k for k in shapes}
    num_classes = shapes[next(k for k, short in keys.items() if short == "head.weight")].size[0]
    with torch.device("meta"):
        model = vit_model.create_model(run.model.name, num_classes=num_classes, image_size=run.data.image_size,
                                       **model_options(run))
    if not materialise:
        return model
    state = {DCP_MODEL_PREFIX + k: torch.empty(tuple(shapes[k].size), dtype=shapes[k].properties.dtype)
             for k in keys}
    with warnings.catch_warnings():  # one process reading every shard is what is meant here
        warnings.filterwarnings("ignore", message="torch.distributed is disabled")
        dcp.load(state, storage_reader=SafeFileSystemReader(str(directory)), planner=SafeLoadPlanner())
    model.load_state_dict({short: state[DCP_MODEL_PREFIX + k] for k, short in keys.items()}, strict=True,
                          assign=True)
    return model


def _read_yaml(path: Path) -> dict:
    import yaml

    return yaml.safe_load(path.read_text())


def architecture_overrides(record: dict, *, reset_head: bool) -> dict:
    """Config overrides (``model.name``, ``model.head``, ``model.options``) that rebuild the checkpoint's
    architecture: only the fields that differ from its variant's defaults; class count and resolution are the
    fine-tuning data's."""
    name, config = record["model"], dict(record["config"])
    defaults = json.loads(json.dumps(asdict(vit_model.model_config(name))))
    differing = {k: v for k, v in config.items() if defaults.get(k) != json.loads(json.dumps(v))}
    for key in ("num_classes", "image_size", "head", "representation_size"):
        differing.pop(key, None)
    head = "linear" if reset_head else config.get("head")
    if not reset_head and config.get("representation_size") is not None:
        differing["representation_size"] = config["representation_size"]
    overrides = {"model.name": name, "model.options": differing}
    if head is not None:
        overrides["model.head"] = head
    return overrides

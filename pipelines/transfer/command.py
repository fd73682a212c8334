"""``vit-study finetune --checkpoint PATH_OR_RUN --config configs/finetune-<name>.yaml [key=value ...]``.

Fine-tunes a pre-trained model (ours: an export dir, a Ray Train checkpoint or run dir, an MLflow run id or
``runs:/`` URI; or any format ``vit_model.load_pretrained`` reads) with a zero-initialised head for the new classes
at the config's resolution, once per learning rate of ``sweep.lrs``, and prints each rate's result and the best.
Without ``--checkpoint`` (and no ``init.checkpoint`` in the config) the same recipe trains from scratch.
"""

from __future__ import annotations

import argparse
import sys

import yaml

from pipelines.train import command as train_command
from pipelines.train.config import ConfigError

from .config import load_finetune_config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    train_command.add_arguments(parser)  # --config, KEY=VALUE overrides, --tracking-uri, --run-name, --storage-path
    parser.add_argument("--checkpoint", help="pre-trained weights: a path, an MLflow run id or runs:/<id>/<path> "
                                             "(sets init.checkpoint); omit to train from scratch")


def run(args: argparse.Namespace) -> int:
    overrides = train_command.config_overrides(args)
    try:
        cfg = load_finetune_config(args.config, overrides, checkpoint=args.checkpoint)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not cfg.init.checkpoint:
        print("note: no --checkpoint: training from scratch with the fine-tuning recipe", file=sys.stderr)
    print(yaml.safe_dump(cfg.to_dict(), sort_keys=False), flush=True)
    from ray.train import TrainingFailedError

    from .sweep import run_finetune

    try:
        summary = run_finetune(cfg, run_name=args.run_name)
    except (ConfigError, ValueError) as exc:  # a bad checkpoint or data, found before training
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except TrainingFailedError as exc:
        print(f"error: fine-tuning failed: {exc}", file=sys.stderr)
        return 1
    print("\nfine-tuning sweep:", summary.table(), sep="\n")
    best = summary.best
    print(f"best lr {best.lr:g}: {summary.select_by} {best.metrics[summary.select_by]:.4f}"
          + (f"; checkpoint {best.checkpoint}" if best.checkpoint else ""))
    if summary.mlflow_run_id:
        print(f"MLflow sweep run: {summary.mlflow_run_id}")
    return 0

"""``vit-study train --config configs/<name>.yaml [key=value ...] [--tracking-uri URI]``: one training run.

Runs on a local Ray, or on the cluster the command is submitted to (``ray job submit`` sets ``RAY_ADDRESS``).
Overrides are dotted config keys, e.g. ``optim.lr=3e-4 scaling.num_workers=2 schedule.total="2 epochs"``.
"""

from __future__ import annotations

import argparse
import sys

import yaml

from .config import ConfigError, load_config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of a run (``train``; ``finetune`` adds ``--checkpoint``)."""
    parser.add_argument("--config", required=True, help="run config YAML (see configs/)")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted config overrides")
    parser.add_argument("--tracking-uri", help="MLflow tracking URI (sets tracking.uri: a server or a sqlite file)")
    parser.add_argument("--run-name", help="Ray Train run name and MLflow run key; reuse one to resume that run")
    parser.add_argument("--storage-path", help="where Ray Train keeps results and checkpoints (sets storage_path)")


def config_overrides(args: argparse.Namespace) -> list[str]:
    """The command line's overrides plus those its options stand for."""
    overrides = list(args.overrides)
    if args.tracking_uri:
        overrides.append(f"tracking.uri={args.tracking_uri}")
    if args.storage_path:
        overrides.append(f"storage_path={args.storage_path}")
    return overrides


def run(args: argparse.Namespace) -> int:
    overrides = config_overrides(args)
    try:
        cfg = load_config(args.config, overrides)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(yaml.safe_dump(cfg.to_dict(), sort_keys=False), flush=True)
    from ray.train import TrainingFailedError

    from .driver import run_training

    try:
        result = run_training(cfg, run_name=args.run_name)
    except ConfigError as exc:  # found while resolving data or resources, still before training
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except TrainingFailedError as exc:
        print(f"error: training failed: {exc}", file=sys.stderr)
        return 1
    shown = {k: round(v, 4) if isinstance(v, float) else v for k, v in (result.metrics or {}).items()
             if k.startswith(("val/", "test/", "fewshot/", "train/loss", "train/flops", "time/", "step"))}
    print("final:", yaml.safe_dump(shown, sort_keys=False), sep="\n")
    if result.checkpoint is not None:
        print(f"checkpoint: {result.checkpoint.path}")
    return 0

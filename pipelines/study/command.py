"""``vit-study study --config configs/study-<preset>.yaml [--resume] [--tracking-uri URI] [KEY=VALUE ...]``.

Runs the scaling study on a local Ray, or on the cluster it is submitted to (``ray job submit`` sets
``RAY_ADDRESS``). Overrides are dotted keys of the study config, e.g. ``grid.budgets="[1 epochs]"``,
``train.data.source=/data/cifar10-jpg``, ``resources.max_concurrent_trials=2``. ``--resume`` continues the study
of the same name: finished trials are kept, the others run (from their latest checkpoints).

Exit status: 0 when every trial finished, 1 when some failed (the report is built all the same), 2 for a config or
cluster that cannot run the study.
"""

from __future__ import annotations

import argparse
import sys

import yaml

from .config import ConfigError, load_study_config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="study config YAML (see configs/study-*.yaml)")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="dotted study-config overrides, all together (before or after the options)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the study of this name: run only its unfinished and failed trials")
    parser.add_argument("--tracking-uri", help="MLflow tracking URI (default: sqlite:///<cwd>/mlflow.db)")
    parser.add_argument("--num-cpus", type=int, help="CPUs of the local Ray started when not on a cluster "
                        "(default: all of this machine's)")
    parser.add_argument("--dashboard-port", type=int, help="port of the local Ray's dashboard (default: Ray's, 8265)")


def run(args: argparse.Namespace) -> int:
    overrides = list(args.overrides)
    if args.tracking_uri:
        overrides.append(f"train.tracking.uri={args.tracking_uri}")
    try:
        cfg = load_study_config(args.config, overrides)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(yaml.safe_dump({k: v for k, v in cfg.to_dict().items() if k != "train"}, sort_keys=False), flush=True)
    from .driver import run_study

    try:
        outcome = run_study(cfg, resume=args.resume, num_cpus=args.num_cpus,
                            dashboard_port=args.dashboard_port,
                            log=lambda line: print(line, flush=True))
    except ConfigError as exc:  # found against the data or the cluster, before any trial ran
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(summary(outcome.table), flush=True)
    print(f"report: {outcome.report_dir} (and MLflow run {outcome.parent_run_id} at {outcome.tracking_uri})")
    if outcome.unfinished:
        print(f"error: interrupted with {outcome.unfinished} trial(s) unfinished; continue with --resume",
              file=sys.stderr)
    if outcome.errored:
        print(f"error: {len(outcome.errored)} trial(s) failed: {', '.join(outcome.errored)}", file=sys.stderr)
    if not outcome.ok:
        return 1
    return 0


def summary(table) -> str:
    """One line per trial: variant, data, budget, lr, status, top-1 and training FLOPs."""
    columns = ["variant", "data_count", "budget", "lr", "status", "top1", "train_flops", "wall_time_s"]
    shown = table.set_index("trial_id")[columns]
    return shown.to_string(float_format=lambda v: f"{v:.4g}")

"""``vit-study report``: rebuild a study's table, frontier, fits and plots from MLflow alone.

    vit-study report --experiment cifar10-cpu [--tracking-uri sqlite:////abs/mlflow.db] [--out DIR]

Reads the study's parent and trial runs (``contract``), writes the report under ``--out`` (``report.build_report``)
and logs that directory to the parent run under ``report/``, with the headline numbers as parent-run metrics.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from .contract import REPORT_ARTIFACT_DIR
from .powerlaw import DEFAULT_BOOTSTRAP

DEFAULT_OUT_ROOT = Path("outputs") / "report"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--experiment", required=True, help="MLflow experiment name of the study")
    parser.add_argument("--tracking-uri", default=None,
                        help="MLflow tracking URI (default: sqlite:///<cwd>/mlflow.db)")
    parser.add_argument("--parent-run-id", default=None,
                        help="the study's parent run (default: the experiment's most recently started study)")
    parser.add_argument("--out", type=Path, default=None,
                        help=f"output directory (default: {DEFAULT_OUT_ROOT}/<experiment>)")
    parser.add_argument("--bootstrap", type=int, default=DEFAULT_BOOTSTRAP, metavar="N",
                        help="bootstrap refits per fit for the confidence intervals")
    parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap")
    parser.add_argument("--no-log", action="store_true", help="do not log the report to the parent run")


def default_out_dir(experiment: str) -> Path:
    """``outputs/report/<experiment>`` with characters unsafe in a path replaced by ``_``."""
    return DEFAULT_OUT_ROOT / (re.sub(r"[^A-Za-z0-9._-]+", "_", experiment).strip("._") or "study")


def run(args: argparse.Namespace) -> int:
    from mlflow.tracking import MlflowClient

    from pipelines.tracking import resolve_tracking_uri

    from .mlflow_log import log_report
    from .mlflow_source import load_study
    from .report import build_report

    uri = resolve_tracking_uri(args.tracking_uri)
    study = load_study(args.experiment, uri, parent_run_id=args.parent_run_id)
    out = args.out or default_out_dir(args.experiment)
    result = build_report(study.table, study.curves, out, n_boot=args.bootstrap, seed=args.seed)
    print(f"study {args.experiment!r} (parent run {study.parent_run_id}): {len(study.table)} trials, "
          f"{result['fits']['finished']} finished; report in {out}")
    for metric, headline in result["fits"]["headline"].items():
        print(f"  {metric}: {_headline_text(headline)}")
    if not args.no_log:
        log_report(MlflowClient(tracking_uri=uri), study.parent_run_id, out, result["fits"])
        print(f"  logged to run {study.parent_run_id} under {REPORT_ARTIFACT_DIR}/")
    return 0


def _headline_text(headline: dict) -> str:
    parts = []
    if headline.get("compute_exponent_b") is not None:
        lo, hi = headline["compute_exponent_b_interval"] or (None, None)
        interval = f" [{lo:.3g}, {hi:.3g}]" if lo is not None and hi is not None else ""
        parts.append(f"{headline['compute_law']} law, error ~ compute^-{headline['compute_exponent_b']:.3g}{interval}")
    prediction = headline.get("prediction")
    if prediction and prediction.get("accuracy") is not None:
        lo, hi = prediction["interval"]
        interval = f" [{lo:.1%}, {hi:.1%}]" if lo is not None and hi is not None else ""
        parts.append(f"{prediction['factor']:g}x compute -> {prediction['accuracy']:.1%}{interval}")
    if headline.get("optimal_size_exponent_alpha") is not None:
        parts.append(f"N_opt ~ C^{headline['optimal_size_exponent_alpha']:.3g}")
    return "; ".join(parts) or "no fit (too few finished trials)"

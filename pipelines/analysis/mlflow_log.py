"""Log a built report (``report.build_report``'s directory and fits) to the study's parent run.

Shared by the study (at its end) and ``vit-study report``: the directory goes under ``report/`` in the run's
artifacts, and the headline numbers become run metrics ``report.<metric>.<name>`` for MLflow's study comparison.
"""

from __future__ import annotations

from pathlib import Path

from .contract import REPORT_ARTIFACT_DIR


def headline_metrics(fits: dict) -> dict[str, float]:
    """``report.<metric>.{compute_exponent_b, predicted_accuracy_10x, optimal_size_exponent_alpha}`` (known ones)."""
    out = {}
    for metric, headline in fits["headline"].items():
        prediction = headline.get("prediction") or {}
        values = {"compute_exponent_b": headline.get("compute_exponent_b"),
                  "predicted_accuracy_10x": prediction.get("accuracy"),
                  "optimal_size_exponent_alpha": headline.get("optimal_size_exponent_alpha")}
        out.update({f"{REPORT_ARTIFACT_DIR}.{metric}.{k}": float(v) for k, v in values.items() if v is not None})
    return out


def log_report(client, parent_run_id: str, out_dir: str | Path, fits: dict) -> None:
    """Artifacts of ``out_dir`` under ``report/`` and the headline metrics, on ``parent_run_id``."""
    client.log_artifacts(parent_run_id, str(out_dir), artifact_path=REPORT_ARTIFACT_DIR)
    for key, value in headline_metrics(fits).items():
        client.log_metric(parent_run_id, key, value)

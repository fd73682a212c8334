"""What the data preparation rejected, on the run that trained on that data: the count as params and the list
(path and reason of each file) as an artifact, so a run says what it did not see."""

from __future__ import annotations

from .runs import client, log_params, with_retries

REJECTED_ARTIFACT = "data/rejected.json"


def log_rejected_files(uri: str, run_id: str, manifest: dict) -> None:
    """Params ``data.num_rejected`` / ``data.num_skipped`` and ``data/rejected.json`` from a prepared manifest."""
    rejected = list(manifest.get("rejected", []))
    log_params(uri, run_id, {"data.num_rejected": len(rejected), "data.num_skipped": len(manifest.get("skipped", [])),
                             "data.checksum": manifest.get("checksum")})
    payload = {"source": manifest.get("source"), "num_rejected": len(rejected), "rejected": rejected}
    with_retries(lambda: client(uri).log_dict(run_id, payload, REJECTED_ARTIFACT))

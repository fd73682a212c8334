"""Where runs are tracked: an embedded sqlite store under the working directory by default, or a server.

Train workers run in other working directories, so every local path is made absolute here, once, by the driver.
"""

from __future__ import annotations

from pathlib import Path

DB_FILE, ARTIFACTS_DIR = "mlflow.db", "mlruns"


def default_tracking_uri(workdir=None) -> str:
    """``sqlite:////<abs workdir>/mlflow.db`` (MLflow's file store is in maintenance mode)."""
    return f"sqlite:///{(Path(workdir or Path.cwd()).resolve() / DB_FILE)}"


def resolve_tracking_uri(uri: str | None, workdir=None) -> str:
    """The URI to use everywhere: the default when None, relative sqlite/file paths made absolute."""
    if not uri:
        return default_tracking_uri(workdir)
    base = Path(workdir or Path.cwd()).resolve()
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        return f"sqlite:///{(base / uri[len('sqlite:///'):]).resolve()}"
    if "://" not in uri:  # a bare path: a sqlite database file
        return f"sqlite:///{(base / uri).resolve()}"
    return uri


def is_local(uri: str) -> bool:
    return uri.startswith(("sqlite:", "file:"))


def artifact_location(uri: str, workdir=None) -> str | None:
    """Artifact root for new experiments: ``mlruns/`` beside a local database (absolute); a server decides its own."""
    if not is_local(uri):
        return None
    if uri.startswith("sqlite:///"):
        return (Path(uri[len("sqlite:///"):]).parent / ARTIFACTS_DIR).resolve().as_uri()
    return (Path(workdir or Path.cwd()).resolve() / ARTIFACTS_DIR).as_uri()

"""MLflow helpers: the tracking URI, one run per training run (found again by a tag), rank-0 logging, retries."""

from .data_quality import REJECTED_ARTIFACT, log_rejected_files
from .logger import NullLogger, RunLogger
from .runs import RUN_KEY_TAG, end_run, find_run, get_or_create_experiment, log_params, start_run, with_retries
from .server import TrackingUnavailableError, check_reachable
from .uri import artifact_location, default_tracking_uri, is_local, resolve_tracking_uri

__all__ = [
    "REJECTED_ARTIFACT", "RUN_KEY_TAG", "NullLogger", "RunLogger", "TrackingUnavailableError", "artifact_location",
    "check_reachable", "default_tracking_uri", "end_run", "find_run", "get_or_create_experiment", "is_local",
    "log_params", "log_rejected_files", "resolve_tracking_uri", "start_run", "with_retries",
]

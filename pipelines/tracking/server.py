"""Is the tracking server there? Asked once, before any Ray work, so that a server that is down is one clear error
at the start instead of minutes of retries (MLflow's own HTTP client backs off for minutes) in the middle of a run.
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request

from .uri import is_local

HEALTH_PATH = "/health"


class TrackingUnavailableError(ConnectionError):
    """The MLflow tracking server did not answer; the message names the URI."""


def check_reachable(uri: str, *, attempts: int = 3, timeout_s: float = 5.0, delay_s: float = 1.0) -> None:
    """Raise :class:`TrackingUnavailableError` unless the MLflow server at ``uri`` answers its health check.

    Local stores (``sqlite:``, ``file:``) need no server and pass. A server that is restarting gets ``attempts``
    tries, ``delay_s`` apart.
    """
    if is_local(uri) or not uri.startswith(("http://", "https://")):
        return
    url = uri.rstrip("/") + HEALTH_PATH
    reason = "no answer"
    for attempt in range(attempts):
        try:
            with urllib.request.urlopen(url, timeout=timeout_s) as response:
                if response.status == 200:
                    return
                reason = f"HTTP {response.status}"
        except urllib.error.HTTPError as exc:
            reason = f"HTTP {exc.code}"
        except (OSError, ValueError) as exc:  # refused, unresolvable, timed out
            reason = str(getattr(exc, "reason", exc))
        if attempt < attempts - 1:
            time.sleep(delay_s)
    raise TrackingUnavailableError(f"{uri}: the MLflow tracking server does not answer ({reason} from {url}, "
                                   f"{attempts} tries); start it, or pass another --tracking-uri")

"""Prepare a source once, reuse it afterwards: :func:`ensure_prepared`."""

from __future__ import annotations

import fcntl
import re
import sys
from pathlib import Path

from .manifest import is_prepared, load_manifest
from .prepare import PrepareError, format_summary, prepare_dataset
from .storage import fingerprint, is_uri, list_files, resolve

CACHE_DIR = Path(".vit-study") / "prepared"  # under the working directory


def default_prepared_dir(source: str) -> Path:
    """``./.vit-study/prepared/<name>-<hash>``, the hash covering the source's location and file listing."""
    filesystem, root = resolve(source)
    key = fingerprint(source, list_files(filesystem, root))
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(root.rstrip("/")).name) or "source"
    return (CACHE_DIR / f"{name}-{key[:16]}").resolve()


def ensure_prepared(source: str, out_dir: str | None = None, strict: bool = False, *,
                    workers: int | None = None, progress: bool | None = None) -> Path | str:
    """A prepared directory for ``source``, preparing it on first use.

    * ``source`` already prepared (has ``manifest.json``): returned as is (a ``Path``; a URI stays a ``str``).
    * otherwise the data is prepared into ``out_dir``, by default ``./.vit-study/prepared/<name>-<hash>`` where
      the hash covers the source's location and its files' names, sizes and mtimes, so a changed source gets
      a new directory; the next call finds it and returns at once.
    * Safe when two processes call it at the same time: they take a lock file next to the directory (the
      second waits and then reuses the first one's result), and the data is written to a temporary sibling
      renamed into place at the end, so no reader sees a half-written directory.

    Call it in the driver and pass the returned absolute path to workers (their working directory differs).
    Raises :class:`pipelines.data.prepare.PrepareError` for unusable sources, or with ``strict`` the first bad
    file; a prepared ``out_dir`` made from a different version of ``source`` is an error, not silently reused.
    """
    if is_prepared(source):
        return source if is_uri(str(source)) else Path(source).resolve()
    target = Path(out_dir).resolve() if out_dir is not None else default_prepared_dir(source)
    if is_uri(str(target)):
        raise PrepareError(f"ensure_prepared caches locally; prepare into {target} with `vit-study prepare`")
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{target}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not is_prepared(target):
            manifest = prepare_dataset(str(source), str(target), strict=strict, workers=workers, progress=progress)
            print(format_summary(manifest, str(target)), file=sys.stderr)
        else:
            _check_same_source(source, target)
    return target


def _check_same_source(source: str, target: Path) -> None:
    manifest = load_manifest(target)
    filesystem, root = resolve(source)
    if manifest.get("source_fingerprint") != fingerprint(source, list_files(filesystem, root)):
        raise PrepareError(
            f"{target} was prepared from {manifest['source']}, not from the current files of {source}; delete it "
            "or choose another out_dir"
        )


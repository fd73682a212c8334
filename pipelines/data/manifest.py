"""``manifest.json``: what a prepared directory holds. Written last, so its presence means the directory is
complete.

Keys::

    format            "vit-scaling/prepared-images/1"
    source            the source path or URI as given; source_kind: imagefolder | archives | webdataset | parquet
    source_fingerprint  hash of the source's file names, sizes and mtimes (the cache key of ensure_prepared)
    checksum          "sha256:..." over every consumed source file's path, size and sha256
    classes           class names in label order (label i is classes[i])
    splits            {split: {num_rows, class_counts: {class: n}, shards: [{path, num_rows, num_bytes}]}}
    rejected          [{path, reason}] files that were not usable; num_rejected is their number
    skipped           files that are not images (by extension), e.g. README.md; they are not data
    renamed_splits    {source split: prepared split} from --split-names
    columns           what each Parquet column holds
    created, seconds  when and how long the preparation took
"""

from __future__ import annotations

import json
from pathlib import Path

from .storage import is_uri, join, resolve

MANIFEST_NAME = "manifest.json"
FORMAT = "vit-scaling/prepared-images/1"
COLUMNS = {
    "id": "int64: stable example id, the first 8 bytes of blake2b(source-relative path)",
    "label": "int64: index into classes",
    "image": "binary: the encoded image bytes as found in the source (decoded at training time)",
    "width": "int32: decoded width in pixels",
    "height": "int32: decoded height in pixels",
    "path": "string: source-relative path of the example",
}
_REQUIRED = ("format", "classes", "splits", "source", "checksum", "rejected")


class ManifestError(ValueError):
    """A prepared directory's manifest is missing or malformed."""


def manifest_path(prepared_dir: str | Path) -> str:
    return join(str(prepared_dir), MANIFEST_NAME)


def is_prepared(location: str | Path) -> bool:
    """True if ``location`` is a directory with a ``manifest.json``."""
    from pyarrow import fs as pafs

    try:
        filesystem, path = resolve(manifest_path(location))
        return filesystem.get_file_info(path).type == pafs.FileType.File
    except (OSError, ValueError):
        return False


def load_manifest(prepared_dir: str | Path) -> dict:
    """Read and check ``<prepared_dir>/manifest.json``.

    Returns the manifest dict: ``classes`` (names in label order), ``splits`` (per split: ``num_rows``,
    ``class_counts`` by class name, ``shards``), ``source``, ``checksum``, ``rejected`` (``[{path, reason}]``)
    and the other keys listed in this module's docstring. Raises :class:`ManifestError` naming the file.
    """
    location = manifest_path(prepared_dir)
    filesystem, path = resolve(location)
    try:
        with filesystem.open_input_stream(path) as stream:
            manifest = json.loads(stream.read())
    except FileNotFoundError:
        raise ManifestError(f"{location}: not found; is {prepared_dir} a directory made by `vit-study prepare`?") \
            from None
    except ValueError as exc:
        raise ManifestError(f"{location}: not valid JSON ({exc})") from None
    missing = [key for key in _REQUIRED if key not in manifest]
    if missing:
        raise ManifestError(f"{location}: missing keys {missing}")
    if manifest["format"] != FORMAT:
        raise ManifestError(f"{location}: format {manifest['format']!r}, expected {FORMAT!r}")
    return manifest


def write_manifest(out_dir: str, manifest: dict) -> None:
    filesystem, path = resolve(manifest_path(out_dir))
    with filesystem.open_output_stream(path) as stream:
        stream.write(json.dumps(manifest, indent=1).encode())


def shard_paths(prepared_dir: str | Path, manifest: dict, split: str) -> list[str]:
    """Absolute paths (or URIs) of a split's Parquet shards."""
    if split not in manifest["splits"]:
        raise KeyError(f"{prepared_dir} has no split {split!r}; it has {sorted(manifest['splits'])}")
    base = str(prepared_dir) if is_uri(str(prepared_dir)) else str(Path(prepared_dir).resolve())
    return [join(base, *shard["path"].split("/")) for shard in manifest["splits"][split]["shards"]]

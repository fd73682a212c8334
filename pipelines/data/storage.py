"""Local paths and ``s3://`` / ``gs://`` / ``file://`` URIs behind one pyarrow filesystem interface."""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Callable
from dataclasses import dataclass

from pyarrow import fs as pafs


def is_uri(location: str) -> bool:
    return "://" in str(location)


def resolve(location: str) -> tuple[pafs.FileSystem, str]:
    """``(filesystem, path)`` for a local path or a URI understood by ``pyarrow.fs.FileSystem.from_uri``."""
    location = str(location)
    if is_uri(location):
        return pafs.FileSystem.from_uri(location)
    return pafs.LocalFileSystem(), os.path.abspath(location)


def join(base: str, *parts: str) -> str:
    """Join with ``/`` (URIs) or the OS separator (local paths)."""
    base = str(base)
    if is_uri(base):
        return "/".join([base.rstrip("/"), *parts])
    return os.path.join(base, *parts)


@dataclass(frozen=True)
class StoredFile:
    """One file of a source: ``rel`` is relative to the source root, with ``/`` separators."""

    path: str
    rel: str
    size: int
    mtime_ns: int


def list_files(filesystem: pafs.FileSystem, root: str) -> list[StoredFile]:
    """Every file under ``root`` (recursively), or ``root`` itself if it is a file, sorted by path."""
    info = filesystem.get_file_info(root)
    if info.type == pafs.FileType.NotFound:
        raise FileNotFoundError(f"source not found: {root}")
    if info.type == pafs.FileType.File:
        return [StoredFile(info.path, info.base_name, info.size or 0, info.mtime_ns or 0)]
    infos = filesystem.get_file_info(pafs.FileSelector(root, recursive=True))
    prefix = root.rstrip("/") + "/"
    files = [
        StoredFile(i.path, i.path[len(prefix):] if i.path.startswith(prefix) else i.base_name, i.size or 0,
                   i.mtime_ns or 0)
        for i in infos
        if i.type == pafs.FileType.File
    ]
    return sorted(files, key=lambda f: f.rel)


def fingerprint(location: str, files: list[StoredFile]) -> str:
    """A cheap identity of a source: its location plus every file's relative path, size and mtime.

    Used as the cache key of :func:`pipelines.data.ensure_prepared` (like ``make``/``rsync``), because hashing
    the contents of a large source on every call would cost as much as reading it.
    """
    location = str(location) if is_uri(str(location)) else os.path.abspath(location)
    digest = hashlib.sha256(location.encode())
    for f in files:
        digest.update(f"\n{f.rel}\t{f.size}\t{f.mtime_ns}".encode())
    return digest.hexdigest()


class HashingReader(io.RawIOBase):
    """A read-only raw stream that hashes (sha256) and counts the bytes passing through it."""

    def __init__(self, stream, on_bytes: Callable[[int], None] | None = None):
        super().__init__()
        self._stream = stream
        self._on_bytes = on_bytes
        self.sha256 = hashlib.sha256()
        self.bytes_read = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        data = self._stream.read() if size is None or size < 0 else self._stream.read(size)
        self.sha256.update(data)
        self.bytes_read += len(data)
        if self._on_bytes is not None and data:
            self._on_bytes(len(data))
        return data

    def readinto(self, buffer) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def hash_file(filesystem: pafs.FileSystem, path: str, chunk_size: int = 8 << 20) -> str:
    """sha256 of one file's bytes, streamed."""
    digest = hashlib.sha256()
    with filesystem.open_input_stream(path, compression=None) as stream:
        while chunk := stream.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()

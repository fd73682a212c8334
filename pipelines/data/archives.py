"""Reading ``.tar``/``.tgz``/``.zip`` members in storage order, streamed, without extracting to disk."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from pyarrow import fs as pafs

from .layout import is_hidden
from .storage import HashingReader, hash_file

# What a broken archive raises while it is being read (truncated gzip, bad headers, bad zip CRC, ...).
ARCHIVE_ERRORS = (zipfile.BadZipFile, zlib.error, lzma.LZMAError, EOFError, OSError, ValueError)


@dataclass(frozen=True)
class Member:
    """One regular file of an archive: its bytes, or why they could not be read."""

    name: str
    data: bytes | None
    error: str | None = None


@dataclass
class ArchiveRead:
    """Filled in while an archive is read: the sha256 of its raw bytes once it has been read to the end."""

    sha256: str | None = None


def is_zip(path: str) -> bool:
    return path.lower().endswith(".zip")


def iter_members(filesystem: pafs.FileSystem, path: str, *, on_bytes: Callable[[int], None] | None = None,
                 result: ArchiveRead | None = None, limit: int | None = None) -> Iterator[Member]:
    """Regular, non-hidden files of one archive in storage order.

    A member that cannot be read is yielded with ``error`` set; if the archive itself breaks (truncated or
    corrupt stream), a last member named after the archive carries the error and iteration stops.
    ``limit`` stops after that many members (for peeking at the format).
    """
    reader = _iter_zip if is_zip(path) else _iter_tar
    count = 0
    for member in reader(filesystem, path, on_bytes, result):
        if member.error is None and is_hidden(member.name):
            continue
        yield member
        count += 1
        if limit is not None and count >= limit:
            return


def _iter_tar(filesystem, path, on_bytes, result) -> Iterator[Member]:
    with filesystem.open_input_stream(path, compression=None) as raw:
        stream = HashingReader(raw, on_bytes)
        try:
            # Not closed here: closing would close the raw stream before it is drained below.
            yield from (Member(name, data) for name, data in read_tar(_decompressed(stream)))
            while stream.read(1 << 20):  # whatever follows the end-of-archive marker, so the checksum is complete
                pass
        except ARCHIVE_ERRORS as exc:
            yield Member(path, None, f"archive unreadable: {exc or type(exc).__name__}")
            return
    if result is not None:
        result.sha256 = stream.sha256.hexdigest()


def _decompressed(stream: HashingReader) -> io.BufferedIOBase:
    """The tar bytes of a plain, gzip, bzip2 or xz stream (told apart by their magic bytes).

    The decompressors are read directly (they buffer a little themselves): a large read-ahead buffer on top
    would turn a truncated archive into an error before the members preceding the break were returned.
    """
    buffered = io.BufferedReader(stream, buffer_size=1 << 20)  # type: ignore[arg-type]
    magic = buffered.peek(6)[:6]
    if magic.startswith(b"\x1f\x8b"):
        return gzip.GzipFile(fileobj=buffered, mode="rb")
    if magic.startswith(b"BZh"):
        return bz2.BZ2File(buffered)
    if magic.startswith(b"\xfd7zXZ\x00"):
        return lzma.LZMAFile(buffered)
    return buffered


def read_tar(tar: io.BufferedIOBase) -> Iterator[tuple[str, bytes]]:
    """``(name, bytes)`` of the regular files of a tar stream (ustar, GNU long names, pax ``path``).

    A small reader of the tar format instead of :mod:`tarfile`, whose per-member header handling costs more than
    decoding a 32x32 JPEG. Raises :class:`TarFormatError` on a bad header or a truncated stream.
    """
    long_name: str | None = None
    while True:
        header = tar.read(_BLOCK)
        if not header or header == _ZERO_BLOCK:
            return
        if len(header) < _BLOCK:
            raise TarFormatError("truncated tar header")
        stored = _octal(header[148:156])
        if stored != sum(header[:148]) + 8 * 32 + sum(header[156:]):
            raise TarFormatError("bad tar header checksum (not a tar file, or corrupt)")
        size = _octal(header[124:136])
        data = tar.read(size)
        if len(data) < size:
            raise TarFormatError(f"truncated tar member {_member_name(header)!r}")
        tar.read(-size % _BLOCK)
        kind = header[156:157]
        if kind == b"L":  # GNU long name for the next member
            long_name = data.rstrip(b"\0").decode("utf-8", "surrogateescape")
        elif kind == b"x":  # pax extended header for the next member
            long_name = _pax_path(data) or long_name
        elif kind in _FILE_TYPES:
            yield long_name or _member_name(header), data
            long_name = None
        else:
            long_name = None


_BLOCK = 512
_ZERO_BLOCK = bytes(_BLOCK)
_FILE_TYPES = (b"0", b"\0", b"7")


class TarFormatError(ValueError):
    """A tar stream that does not follow the format."""


def _octal(field: bytes) -> int:
    if field[:1] == b"\x80":  # GNU base-256 for sizes over 8 GiB
        return int.from_bytes(field[1:], "big")
    digits = field.split(b"\0", 1)[0].strip()
    try:
        return int(digits, 8) if digits else 0
    except ValueError:
        raise TarFormatError(f"bad number {field!r} in tar header") from None


def _member_name(header: bytes) -> str:
    name = header[:100].split(b"\0", 1)[0]
    if header[257:262] == b"ustar" and header[345] != 0:
        name = header[345:500].split(b"\0", 1)[0] + b"/" + name
    return name.decode("utf-8", "surrogateescape")


def _pax_path(records: bytes) -> str | None:
    """The ``path`` of pax records ``"<len> key=value\n"``."""
    for line in records.split(b"\n"):
        _, _, record = line.partition(b" ")
        key, _, value = record.partition(b"=")
        if key == b"path":
            return value.decode("utf-8", "surrogateescape")
    return None


def _iter_zip(filesystem, path, on_bytes, result) -> Iterator[Member]:
    try:
        handle = filesystem.open_input_file(path)
        archive = zipfile.ZipFile(handle)
    except ARCHIVE_ERRORS as exc:
        yield Member(path, None, f"archive unreadable: {exc}")
        return
    with handle, archive:
        for info in archive.infolist():
            if info.is_dir():
                continue
            try:
                data = archive.read(info)
            except ARCHIVE_ERRORS as exc:  # zip members are independent: the next one may still be fine
                yield Member(info.filename, None, f"unreadable archive member: {exc}")
                continue
            finally:
                if on_bytes is not None:
                    on_bytes(info.compress_size)
            yield Member(info.filename, data)
    if result is not None:
        result.sha256 = hash_file(filesystem, path)

"""Image-classification sources, read once by ``vit-study prepare``.

Kinds (detected by :func:`open_source`):

* ``imagefolder``: a directory ``<split>/<class>/<file>`` (or ``<class>/<file>``, one split named ``train``).
* ``archives``: one ``.tgz``/``.tar``/``.zip`` archive, or a directory of them, each holding the same kind of
  tree (the archive's name, e.g. ``train.tgz``, names the split when the tree inside has no split level).
* ``webdataset``: tar shards of ``<key>.jpg`` + ``<key>.cls`` (an integer label), split from the shard name
  (``train-000001.tar``) or its folder.
* ``parquet``: existing Parquet with encoded image bytes (a binary column, or a Hugging Face ``{bytes, path}``
  struct) and a label column; class names from Hugging Face ``ClassLabel`` metadata when present.

Local paths and ``s3://``/``gs://``/``file://`` URIs go through pyarrow's filesystems. Every source yields
:class:`Item` s in storage order; a file that cannot be used is an item with ``problem`` set, so the caller can
reject-and-count it or stop (``--strict``).
"""

from __future__ import annotations

import hashlib
import json
import posixpath
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.parquet as pq
from pyarrow import fs as pafs

from .archives import ArchiveRead, iter_members
from .layout import ARCHIVE_SUFFIXES, DEFAULT_SPLIT, IMAGE_SUFFIXES, Layout, archive_stem, has_suffix, is_hidden
from .storage import StoredFile, hash_file, list_files, resolve

KNOWN_SPLITS = ("train", "test", "val", "validation", "valid", "dev", "eval")
WEBDATASET_LABEL = "cls"
WEBDATASET_IMAGE_EXTS = ("jpg", "jpeg", "png", "webp", "gif")


@dataclass(frozen=True)
class Item:
    """One example as read from the source.

    Attributes:
        split: split name in the source (before ``--split-names`` renaming).
        class_name: the class, as a name (ImageFolder folder) or a decimal label (WebDataset, Parquet).
        path: source-relative logical path; the example id is a hash of it.
        where: where a person finds the file (``train.tgz:train/cat/0001.jpg``), for messages.
        data: the encoded image bytes, or ``None`` when ``problem`` says why there are none.
    """

    split: str
    class_name: str | None
    path: str
    where: str
    data: bytes | None
    problem: str | None = None


def split_from_name(name: str) -> str:
    """A known split name (``train``, ``test``, ``val``, ...) from an archive/shard/file name, else ``train``."""
    stem = archive_stem(name.removesuffix(".parquet"))
    return stem.lower() if stem.lower() in KNOWN_SPLITS else DEFAULT_SPLIT


@dataclass
class Source:
    """Base of the source kinds: a location, its files, and what was seen while reading it."""

    location: str
    filesystem: pafs.FileSystem
    files: list[StoredFile]
    kind: str = "?"
    skipped: list[str] = field(default_factory=list)
    digests: dict[str, str] = field(default_factory=dict)

    def data_files(self) -> list[StoredFile]:
        """The files whose bytes become examples (for the progress total and the checksum)."""
        return self.files

    def items(self, wanted: Callable[[str], bool], on_bytes: Callable[[int], None]) -> Iterator[Item]:
        raise NotImplementedError

    def class_order(self, seen: set[str]) -> list[str]:
        """Class names in label order. ImageFolder: sorted names (torchvision's rule)."""
        return sorted(seen)

    def checksum(self) -> str:
        """sha256 over every consumed file's relative path, size and sha256 (valid after :meth:`items`)."""
        digest = hashlib.sha256()
        for f in self.data_files():
            if f.rel in self.digests:
                digest.update(f"{f.rel}\t{f.size}\t{self.digests[f.rel]}\n".encode())
        return "sha256:" + digest.hexdigest()


def _numeric_order(seen: set[str]) -> list[str]:
    if all(name.isdigit() for name in seen):
        return [str(i) for i in range(max((int(n) for n in seen), default=-1) + 1)]
    return sorted(seen)


class ImageFolderSource(Source):
    def __init__(self, location, filesystem, files):
        super().__init__(location, filesystem, files, kind="imagefolder")
        self.images = [f for f in files if has_suffix(f.rel, IMAGE_SUFFIXES) and not is_hidden(f.rel)]
        self.skipped = [f.rel for f in files if f not in self.images and not is_hidden(f.rel)]
        self.layout = Layout.infer([f.rel for f in self.images])

    def data_files(self):
        return self.images

    def items(self, wanted, on_bytes):
        for f in self.images:
            placed = self.layout.place(f.rel)
            if isinstance(placed, str):
                yield Item(DEFAULT_SPLIT, None, f.rel, f.rel, None, placed)
                continue
            if not wanted(placed.split):
                continue
            try:
                with self.filesystem.open_input_stream(f.path, compression=None) as stream:
                    data = stream.read()
            except OSError as exc:
                yield Item(placed.split, placed.class_name, placed.logical_path, f.rel, None, f"unreadable: {exc}")
                continue
            finally:
                on_bytes(f.size)
            self.digests[f.rel] = hashlib.sha256(data).hexdigest()
            yield Item(placed.split, placed.class_name, placed.logical_path, f.rel, data)


class ArchiveSource(Source):
    """ImageFolder trees inside archives; the layout of each archive is inferred from its first image."""

    def __init__(self, location, filesystem, files):
        super().__init__(location, filesystem, files, kind="archives")
        self.archives = [f for f in files if has_suffix(f.rel, ARCHIVE_SUFFIXES) and not is_hidden(f.rel)]
        self.skipped = [f.rel for f in files if f not in self.archives and not is_hidden(f.rel)]

    def data_files(self):
        return self.archives

    def items(self, wanted, on_bytes):
        for archive in self.archives:
            read = ArchiveRead()
            layout = None
            for member in iter_members(self.filesystem, archive.path, on_bytes=on_bytes, result=read):
                where = f"{archive.rel}:{member.name}" if member.name != archive.path else archive.rel
                if member.error is not None:
                    yield Item(DEFAULT_SPLIT, None, where, where, None, member.error)
                    continue
                if not has_suffix(member.name, IMAGE_SUFFIXES):
                    self.skipped.append(where)
                    continue
                if layout is None:
                    layout = Layout.infer([member.name], default_split=split_from_name(archive.rel),
                                          split_in_path=True)
                placed = layout.place(member.name)
                if isinstance(placed, str):
                    yield Item(DEFAULT_SPLIT, None, where, where, None, placed)
                elif wanted(placed.split):
                    yield Item(placed.split, placed.class_name, placed.logical_path, where, member.data)
            if read.sha256 is not None:
                self.digests[archive.rel] = read.sha256


class WebDatasetSource(ArchiveSource):
    """WebDataset tar shards: consecutive members sharing a key form one sample."""

    def __init__(self, location, filesystem, files):
        super().__init__(location, filesystem, files)
        self.kind = "webdataset"

    def class_order(self, seen):
        return _numeric_order(seen)

    def items(self, wanted, on_bytes):
        for shard in self.archives:
            folder = shard.rel.split("/")[0] if "/" in shard.rel else ""
            split = folder.lower() if folder.lower() in KNOWN_SPLITS else split_from_name(shard.rel)
            read = ArchiveRead()
            members = iter_members(self.filesystem, shard.path, on_bytes=on_bytes, result=read)
            for key, sample, error in _group_samples(members):
                where = shard.rel if key == shard.path else f"{shard.rel}:{key}"
                if error is not None:
                    yield Item(split, None, where, where, None, error)
                elif wanted(split):
                    yield self._item(split, key, sample, where)
            if read.sha256 is not None:
                self.digests[shard.rel] = read.sha256

    @staticmethod
    def _item(split: str, key: str, sample: dict[str, bytes], where: str) -> Item:
        ext = next((e for e in WEBDATASET_IMAGE_EXTS if e in sample), None)
        if ext is None:
            return Item(split, None, f"{split}/{key}", where, None, f"no image ({', '.join(WEBDATASET_IMAGE_EXTS)})")
        path = f"{split}/{key}.{ext}"
        raw = sample.get(WEBDATASET_LABEL)
        try:
            label = int(raw.decode().strip()) if raw is not None else None
        except (UnicodeDecodeError, ValueError):
            label = -1
        if label is None or label < 0:
            reason = f"no .{WEBDATASET_LABEL} label" if raw is None else f"bad .{WEBDATASET_LABEL} label {raw[:20]!r}"
            return Item(split, None, path, where, None, reason)
        return Item(split, str(label), path, where, sample[ext])


def _group_samples(members) -> Iterator[tuple[str, dict[str, bytes], str | None]]:
    """``(key, {extension: bytes}, error)`` for runs of members sharing a key (WebDataset's rule: the key is
    the path up to the first dot of the file name)."""
    key, sample = None, {}
    for member in members:
        if member.error is not None:
            if key is not None:
                yield key, sample, None
            yield member.name, {}, member.error
            key, sample = None, {}
            continue
        folder, base = posixpath.split(member.name)
        stem, _, ext = base.partition(".")
        member_key = posixpath.join(folder, stem)
        if member_key != key:
            if key is not None:
                yield key, sample, None
            key, sample = member_key, {}
        sample[ext.lower()] = member.data
    if key is not None:
        yield key, sample, None


class ParquetSource(Source):
    """Existing Parquet: one image-bytes column and one label column, found by type and name."""

    def __init__(self, location, filesystem, files):
        super().__init__(location, filesystem, files, kind="parquet")
        self.tables = [f for f in files if f.rel.endswith(".parquet") and not is_hidden(f.rel)]
        self.skipped = [f.rel for f in files if f not in self.tables and not is_hidden(f.rel)]
        with filesystem.open_input_file(self.tables[0].path) as handle:
            schema = pq.read_schema(handle)
        self.image_column, self.image_field = _image_column(schema, self.tables[0].rel)
        self.label_column = _label_column(schema, self.tables[0].rel)
        self.names = _hf_class_names(schema, self.label_column)

    def data_files(self):
        return self.tables

    def class_order(self, seen):
        return list(self.names) if self.names else _numeric_order(seen)

    def items(self, wanted, on_bytes):
        for table in self.tables:
            folder = table.rel.split("/")[0] if "/" in table.rel else ""
            split = folder.lower() if folder.lower() in KNOWN_SPLITS else split_from_name(posixpath.basename(table.rel))
            if not wanted(split):
                continue
            with self.filesystem.open_input_file(table.path) as handle:
                reader = pq.ParquetFile(handle)
                per_row = table.size / max(reader.metadata.num_rows, 1)
                row = 0
                for batch in reader.iter_batches(batch_size=256, columns=[self.image_column, self.label_column]):
                    images = batch.column(self.image_column)
                    if self.image_field is not None:
                        images = images.field(self.image_field)
                    for data, label in zip(images.to_pylist(), batch.column(self.label_column).to_pylist()):
                        path, where = f"{table.rel}#{row}", f"{table.rel} row {row}"
                        row += 1
                        if label is None or (isinstance(label, int) and label < 0):
                            yield Item(split, None, path, where, None, f"no label ({label!r})")
                        elif not data:
                            yield Item(split, str(label), path, where, None, "no image bytes")
                        else:
                            yield Item(split, self._class_name(label), path, where, data)
                    on_bytes(int(per_row * batch.num_rows))
            self.digests[table.rel] = hash_file(self.filesystem, table.path)

    def _class_name(self, label) -> str:
        if self.names and isinstance(label, int):
            return self.names[label]
        return str(label)


def _image_column(schema: pa.Schema, where: str) -> tuple[str, str | None]:
    for f in schema:
        if pa.types.is_binary(f.type) or pa.types.is_large_binary(f.type):
            return f.name, None
    for f in schema:
        if pa.types.is_struct(f.type) and f.type.get_field_index("bytes") >= 0:
            return f.name, "bytes"
    raise ValueError(f"{where}: no column of image bytes (binary, or a struct with a 'bytes' field) in {schema.names}")


def _label_column(schema: pa.Schema, where: str) -> str:
    for name in ("label", "labels", "class", "target"):
        if name in schema.names:
            return name
    for f in schema:
        if pa.types.is_integer(f.type):
            return f.name
    raise ValueError(f"{where}: no label column (label, labels, class, target or an integer column) in {schema.names}")


def _hf_class_names(schema: pa.Schema, label_column: str) -> list[str] | None:
    """Class names from Hugging Face ``datasets`` metadata (a ``ClassLabel`` feature), if present."""
    raw = (schema.metadata or {}).get(b"huggingface")
    if not raw:
        return None
    try:
        feature = json.loads(raw)["info"]["features"][label_column]
    except (ValueError, KeyError, TypeError):
        return None
    names = feature.get("names") if isinstance(feature, dict) else None
    return [str(n) for n in names] if names else None


def _peek_is_webdataset(filesystem: pafs.FileSystem, archive: StoredFile) -> bool:
    names = [m.name for m in iter_members(filesystem, archive.path, limit=16) if m.error is None]
    return any(name.lower().endswith("." + WEBDATASET_LABEL) for name in names)


def open_source(location: str) -> Source:
    """Detect the kind of source at ``location`` (a path or URI); errors name the location."""
    filesystem, root = resolve(location)
    files = list_files(filesystem, root)
    visible = [f for f in files if not is_hidden(f.rel)]
    images = [f for f in visible if has_suffix(f.rel, IMAGE_SUFFIXES)]
    archives = [f for f in visible if has_suffix(f.rel, ARCHIVE_SUFFIXES)]
    tables = [f for f in visible if f.rel.endswith(".parquet")]
    try:
        if images:
            return ImageFolderSource(location, filesystem, files)
        if archives:
            kinds = {_peek_is_webdataset(filesystem, a) for a in archives}
            if len(kinds) > 1:
                raise ValueError("mixes WebDataset shards (.cls labels) with ImageFolder archives")
            return (WebDatasetSource if kinds.pop() else ArchiveSource)(location, filesystem, files)
        if tables:
            return ParquetSource(location, filesystem, files)
    except ValueError as exc:
        raise ValueError(f"{location}: {exc}") from None
    raise ValueError(
        f"{location}: no images ({', '.join(IMAGE_SUFFIXES)}), archives ({', '.join(ARCHIVE_SUFFIXES)}) "
        "or .parquet files found"
    )

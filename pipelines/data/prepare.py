"""One pass over a source: check every image with the training decoder, write shuffled Parquet shards and a
manifest (see ``manifest.py``). Bad files are rejected and counted, or stop the run with ``strict``."""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path

from tqdm import tqdm

from .manifest import COLUMNS, FORMAT, is_prepared, write_manifest
from .shards import SplitWriter, bucket_count
from .sources import Item, Source, open_source
from .storage import fingerprint, is_uri, resolve
from .validate import Checker, default_workers

CHUNK_ITEMS = 256  # images per check task: large enough to amortise inter-process overhead
CHUNK_BYTES = 8 << 20
SMALL_SOURCE_BYTES = 8 << 20  # below this, starting worker processes costs more than it saves


class PrepareError(RuntimeError):
    """A file that cannot be used under ``strict``, or a source/output that cannot be prepared."""


def example_id(path: str) -> int:
    """Stable id of an example: the first 8 bytes of blake2b of its source-relative path, as a signed int64."""
    return int.from_bytes(hashlib.blake2b(path.encode(), digest_size=8).digest(), "little", signed=True)


def parse_split_names(entries: Sequence[str] | None) -> dict[str, str] | None:
    """``["train", "val=test"]`` -> ``{"train": "train", "val": "test"}``: keep ``train``, rename ``val`` to
    ``test``, drop every other split. ``None`` keeps all splits under their own names."""
    if not entries:
        return None
    mapping = {}
    for entry in entries:
        source, _, target = entry.partition("=")
        if not source or (_ and not target):
            raise ValueError(f"bad --split-names entry {entry!r}: use NAME or FROM=TO")
        mapping[source] = target or source
    return mapping


def prepare_dataset(source: str, out_dir: str, *, split_names: Sequence[str] | None = None, strict: bool = False,
                    workers: int | None = None, progress: bool | None = None, overwrite: bool = False) -> dict:
    """Read ``source`` once into ``out_dir`` (a local path or URI) and return the manifest.

    Args:
        source: an ImageFolder directory, an archive or a directory of archives, WebDataset shards or Parquet
            (see ``sources.py``), as a local path or a ``s3://``/``gs://``/``file://`` URI.
        out_dir: where shards and ``manifest.json`` go. Local outputs are written to a sibling temporary
            directory and renamed into place at the end, so a reader never sees a half-written directory.
        split_names: ``NAME`` or ``FROM=TO`` entries (see :func:`parse_split_names`).
        strict: stop at the first unusable file, raising :class:`PrepareError` with its path and reason.
        workers: processes that decode-check images (default: one per CPU; none for sources under 8 MiB).
        progress: show a progress bar (default: when stderr is a terminal).
        overwrite: replace an existing prepared ``out_dir``.
    """
    started = time.perf_counter()
    renames = parse_split_names(split_names)
    try:
        src = open_source(source)
    except (OSError, ValueError) as exc:
        raise PrepareError(str(exc)) from None
    filesystem, out_path = resolve(out_dir)
    if is_prepared(out_dir) and not overwrite:
        raise PrepareError(f"{out_dir} already holds a prepared dataset (pass overwrite=True / --overwrite)")
    local = not is_uri(out_dir)
    work_dir = f"{out_path}.partial-{uuid.uuid4().hex[:8]}" if local else out_path
    bucket_dir = Path(work_dir) / "_buckets" if local else Path(tempfile.mkdtemp(prefix="vit-prepare-"))
    size_hint = sum(f.size for f in src.data_files())
    if workers is None:
        workers = default_workers() if size_hint >= SMALL_SOURCE_BYTES else 0
    try:
        filesystem.create_dir(work_dir, recursive=True)
        try:
            manifest = _run_pass(src, work_dir, bucket_dir, filesystem, renames, strict, workers, progress,
                                 size_hint)
        except (OSError, ValueError) as exc:  # e.g. an archive whose tree has no <class>/<file> level
            raise PrepareError(f"{source}: {exc}") from exc
        manifest["created"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        manifest["seconds"] = round(time.perf_counter() - started, 2)
        write_manifest(work_dir, manifest)
        if local:
            shutil.rmtree(bucket_dir, ignore_errors=True)
            _move_into_place(work_dir, out_path, overwrite)
        return manifest
    except BaseException:
        if local:
            shutil.rmtree(work_dir, ignore_errors=True)
        raise
    finally:
        if not local:
            shutil.rmtree(bucket_dir, ignore_errors=True)


def _move_into_place(work_dir: str, out_path: str, overwrite: bool) -> None:
    """Atomic rename; an existing empty directory is replaced, a prepared one only with ``overwrite``."""
    if overwrite and is_prepared(out_path):
        shutil.rmtree(out_path)
    try:
        os.rename(work_dir, out_path)
    except OSError as exc:
        raise PrepareError(f"cannot move the prepared data into {out_path}: {exc} (is it a non-empty folder?)") \
            from None


def _chunks(items: Iterator[Item]) -> Iterator[tuple[list[Item], list[bytes | None]]]:
    """Group items into check chunks, in storage order (items the source could not read go along unchecked)."""
    batch, nbytes = [], 0
    for item in items:
        batch.append(item)
        nbytes += len(item.data or b"")
        if len(batch) >= CHUNK_ITEMS or nbytes >= CHUNK_BYTES:
            yield batch, [None if i.problem else i.data for i in batch]
            batch, nbytes = [], 0
    if batch:
        yield batch, [None if i.problem else i.data for i in batch]


def _reject(where: str, reason: str, rejected: list, strict: bool) -> None:
    if strict:
        raise PrepareError(f"rejected {where}: {reason}")
    rejected.append({"path": where, "reason": reason})


def _run_pass(src: Source, work_dir, bucket_dir, filesystem, renames, strict, workers, progress, size_hint) -> dict:
    writers: dict[str, SplitWriter] = {}
    seen_ids: dict[int, str] = {}
    class_names: set[str] = set()
    seen_splits: set[str] = set()
    rejected: list[dict] = []
    num_buckets = bucket_count(size_hint)
    wanted = (lambda split: True) if renames is None else (lambda split: split in renames)
    bar = tqdm(total=size_hint, unit="B", unit_scale=True, unit_divisor=1024, desc=f"prepare {src.location}",
               disable=not (sys.stderr.isatty() if progress is None else progress), file=sys.stderr)
    with bar, Checker(workers) as checker:
        for items, checks in checker.map(_chunks(src.items(wanted, bar.update))):
            for item, check in zip(items, checks):
                seen_splits.add(item.split)
                if item.class_name is not None:
                    class_names.add(item.class_name)
                if item.problem is not None or check.reason is not None:
                    _reject(item.where, item.problem or check.reason, rejected, strict)
                    continue
                example = example_id(item.path)
                if example in seen_ids:
                    _reject(item.where, f"duplicate of {seen_ids[example]} (same path or id)", rejected, strict)
                    continue
                seen_ids[example] = item.where
                split = item.split if renames is None else renames[item.split]
                if split not in writers:
                    writers[split] = SplitWriter(bucket_dir, split, num_buckets)
                writers[split].add(example, item.class_name, item.data, check.width, check.height, item.path)
            bar.set_postfix(images=len(seen_ids), rejected=len(rejected), refresh=False)
    if renames is not None:
        missing = sorted(set(renames) - seen_splits)
        if missing:
            raise PrepareError(f"{src.location}: no split(s) {missing} (named by --split-names) in the source")
    if not writers:
        raise PrepareError(f"{src.location}: no usable images ({len(rejected)} rejected)")
    classes = src.class_order(class_names)
    splits = {name: writers[name].finish(filesystem, work_dir, classes) for name in sorted(writers)}
    return {
        "format": FORMAT,
        "source": str(src.location),
        "source_kind": src.kind,
        "source_fingerprint": fingerprint(src.location, src.files),
        "checksum": src.checksum(),
        "classes": classes,
        "splits": splits,
        "num_rejected": len(rejected),
        "rejected": sorted(rejected, key=lambda r: r["path"]),
        "skipped": src.skipped,
        "renamed_splits": renames or {},
        "columns": COLUMNS,
    }


def format_summary(manifest: dict, out_dir: str) -> str:
    """A few lines for people: rows per split, rejections with reasons, where it went and how long it took."""
    splits = ", ".join(f"{name} {info['num_rows']:,}" for name, info in manifest["splits"].items())
    lines = [
        f"prepared {splits} images of {len(manifest['classes'])} classes in {manifest.get('seconds', 0):.1f} s "
        f"-> {out_dir}",
        f"rejected {manifest['num_rejected']} file(s)" + (":" if manifest["rejected"] else ""),
    ]
    lines += [f"  {r['path']}: {r['reason']}" for r in manifest["rejected"][:20]]
    if manifest["num_rejected"] > 20:
        lines.append(f"  ... and {manifest['num_rejected'] - 20} more (see manifest.json)")
    if manifest["skipped"]:
        lines.append(f"skipped {len(manifest['skipped'])} non-image file(s), e.g. {manifest['skipped'][0]}")
    return "\n".join(lines)

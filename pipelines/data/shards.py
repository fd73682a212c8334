"""Writing one split as Parquet shards whose rows are in random order.

Sources arrive in storage order, usually one class after another. Training streams shards with only a small
shuffle buffer, so ``prepare`` shuffles once, externally: rows go to hash buckets (``id mod B``, temporary Arrow
files), then consecutive buckets are merged into shards of about ``target`` bytes and each shard is sorted by
``id`` (a hash of the path, hence a random order that mixes classes). Sorting by ``id`` also makes the
row-group statistics of ``id`` selective, and subsets are chosen by ``id`` (see ``subsets.py``).
"""

from __future__ import annotations

import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pyarrow import fs as pafs

MAX_SHARD_BYTES = 128 << 20  # the usual sweet spot for object stores and Parquet readers
MIN_SHARD_BYTES = 1 << 20  # below this, more files cost more than the parallelism they buy
MIN_SHARDS = 32  # so that small datasets are still read by up to 32 tasks at once (a read task reads whole files)
ROW_GROUP_BYTES = 4 << 20  # one row group is the unit a reader streams: small enough for a fast first batch
ROW_GROUP_MAX_ROWS = 1024
BUCKET_FLUSH_BYTES = 256 << 10  # bounds the memory of the buckets being filled: num_buckets x this
BUCKETS_PER_SHARD = 4

SHARD_SCHEMA = pa.schema([
    pa.field("id", pa.int64()),
    pa.field("label", pa.int64()),
    pa.field("image", pa.binary()),
    pa.field("width", pa.int32()),
    pa.field("height", pa.int32()),
    pa.field("path", pa.string()),
])
_BUCKET_SCHEMA = pa.schema([f if f.name != "label" else pa.field("class_name", pa.string()) for f in SHARD_SCHEMA])


def bucket_count(size_hint_bytes: int) -> int:
    """Enough buckets that no bucket (hence no shard) exceeds ``MAX_SHARD_BYTES``, and ``BUCKETS_PER_SHARD``
    per shard for small data, whose few examples per hash bucket would otherwise make shards very unequal
    (and the read tasks that take them unbalanced)."""
    return max(BUCKETS_PER_SHARD * MIN_SHARDS, math.ceil(size_hint_bytes / MAX_SHARD_BYTES))


def target_shard_bytes(total_bytes: int) -> int:
    return int(min(MAX_SHARD_BYTES, max(MIN_SHARD_BYTES, total_bytes / MIN_SHARDS)))


@dataclass
class _Bucket:
    path: Path
    rows: list[tuple] = field(default_factory=list)
    nbytes: int = 0  # buffered, not yet flushed
    total_bytes: int = 0
    writer: pa.ipc.RecordBatchStreamWriter | None = None

    def flush(self) -> None:
        if not self.rows:
            return
        columns = list(zip(*self.rows))
        batch = pa.record_batch([pa.array(c, type=f.type) for c, f in zip(columns, _BUCKET_SCHEMA)],
                                schema=_BUCKET_SCHEMA)
        if self.writer is None:
            self.writer = pa.ipc.new_stream(pa.OSFile(str(self.path), "wb"), _BUCKET_SCHEMA)
        self.writer.write_batch(batch)
        self.rows, self.nbytes = [], 0

    def read_and_close(self) -> pa.Table | None:
        self.flush()
        if self.writer is None:
            return None
        self.writer.close()
        with pa.OSFile(str(self.path), "rb") as handle:
            table = pa.ipc.open_stream(handle).read_all()
        self.path.unlink()
        return table


class SplitWriter:
    """Collects the accepted rows of one split in hash buckets under ``tmp_dir``; :meth:`finish` writes shards."""

    def __init__(self, tmp_dir: Path, split: str, num_buckets: int):
        self.split = split
        self.dir = Path(tmp_dir) / split
        self.dir.mkdir(parents=True, exist_ok=True)
        self.buckets = [_Bucket(self.dir / f"bucket-{k:05d}.arrow") for k in range(num_buckets)]
        self.num_rows = 0
        self.image_bytes = 0

    def add(self, example_id: int, class_name: str, image: bytes, width: int, height: int, path: str) -> None:
        bucket = self.buckets[(example_id & 0xFFFFFFFFFFFFFFFF) % len(self.buckets)]
        bucket.rows.append((example_id, class_name, image, width, height, path))
        bucket.nbytes += len(image)
        bucket.total_bytes += len(image)
        self.num_rows += 1
        self.image_bytes += len(image)
        if bucket.nbytes >= BUCKET_FLUSH_BYTES:
            bucket.flush()

    def finish(self, filesystem: pafs.FileSystem, out_dir: str, classes: list[str]) -> dict:
        """Write ``<out_dir>/<split>/part-NNNNN.parquet``; return the split's manifest entry."""
        target = target_shard_bytes(self.image_bytes)
        # Consecutive buckets form one shard: a bucket goes to shard floor(midpoint / target), where its
        # midpoint is its centre on the cumulative byte axis, so there are about total / target shards.
        sizes = np.array([b.total_bytes for b in self.buckets], dtype=np.float64)
        groups = np.floor((np.cumsum(sizes) - sizes / 2) / target).astype(np.int64)
        shards, pending = [], []
        counts = np.zeros(len(classes), dtype=np.int64)
        for k, bucket in enumerate(self.buckets):
            table = bucket.read_and_close()
            if table is not None:
                pending.append(table)
            if pending and (k + 1 == len(self.buckets) or groups[k + 1] != groups[k]):
                shards.append(self._write_shard(filesystem, out_dir, len(shards), pending, classes, counts))
                pending = []
        shutil.rmtree(self.dir, ignore_errors=True)
        return {
            "num_rows": int(counts.sum()),
            "class_counts": {name: int(n) for name, n in zip(classes, counts)},
            "shards": shards,
        }

    def _write_shard(self, filesystem, out_dir, index, tables, classes, counts) -> dict:
        table = pa.concat_tables(tables).sort_by("id")
        labels = pc.index_in(table.column("class_name"), value_set=pa.array(classes, type=pa.string()))
        rest = [table.column(name) for name in SHARD_SCHEMA.names[2:]]
        table = pa.table([table.column("id"), labels.cast(pa.int64()), *rest], schema=SHARD_SCHEMA)
        counts += np.bincount(table.column("label").to_numpy(), minlength=len(classes))
        rel = f"{self.split}/part-{index:05d}.parquet"
        filesystem.create_dir(f"{out_dir}/{self.split}", recursive=True)
        row_bytes = max(1, table.nbytes // max(table.num_rows, 1))
        pq.write_table(
            table, f"{out_dir}/{rel}", filesystem=filesystem,
            row_group_size=max(1, min(ROW_GROUP_MAX_ROWS, ROW_GROUP_BYTES // row_bytes)),
            compression={"id": "snappy", "label": "snappy", "image": "none", "width": "snappy", "height": "snappy",
                         "path": "zstd"},  # image bytes are already compressed
            use_dictionary=["label", "width", "height"],
            write_statistics=["id", "label", "width", "height"],
        )
        return {"path": rel, "num_rows": table.num_rows, "num_bytes": filesystem.get_file_info(f"{out_dir}/{rel}").size}

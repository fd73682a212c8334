"""`vit-study prepare`: every source kind gives the same rows, the manifest tells the truth, reuse is safe."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from data_samples import encode, random_pixels, tar_directory, write_imagefolder, zip_directory

from pipelines.cli import main as cli_main
from pipelines.data import PrepareError, ensure_prepared, load_manifest, prepare_dataset
from pipelines.data import shards as shards_module

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
COUNTS = {"train": {"cat": 7, "ant": 5, "bee": 6}, "test": {"cat": 2, "ant": 3, "bee": 2}}


def read_rows(prepared: Path, split: str) -> pa.Table:
    manifest = load_manifest(prepared)
    return pa.concat_tables([pq.read_table(prepared / s["path"]) for s in manifest["splits"][split]["shards"]])


def as_set(table: pa.Table) -> set[tuple]:
    return set(zip(table.column("id").to_pylist(), table.column("label").to_pylist(),
                   table.column("image").to_pylist()))


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("folder") / "data"
    write_imagefolder(root, COUNTS)
    (root / "README.md").write_text("not data")
    return root


@pytest.fixture(scope="module")
def prepared(folder, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("prepared") / "out"
    prepare_dataset(str(folder), str(out), workers=0)
    return out


def test_imagefolder_rows_match_files_and_manifest(folder, prepared):
    manifest = load_manifest(prepared)
    assert manifest["classes"] == ["ant", "bee", "cat"]  # torchvision ImageFolder order: sorted names
    assert manifest["skipped"] == ["README.md"]
    assert manifest["num_rejected"] == 0
    for split, classes in COUNTS.items():
        assert manifest["splits"][split]["class_counts"] == {name: classes[name] for name in manifest["classes"]}
        rows = read_rows(prepared, split)
        assert rows.num_rows == manifest["splits"][split]["num_rows"] == sum(classes.values())
        for row in rows.to_pylist():
            source_file = folder / row["path"]
            assert source_file.read_bytes() == row["image"]  # bytes are stored as found, still encoded
            assert manifest["classes"][row["label"]] == source_file.parent.name
            expected_id = int.from_bytes(hashlib.blake2b(row["path"].encode(), digest_size=8).digest(), "little",
                                         signed=True)
            assert row["id"] == expected_id
            from PIL import Image

            with Image.open(source_file) as image:
                assert (row["width"], row["height"]) == image.size


def test_archives_and_directory_give_identical_rows(folder, prepared, tmp_path):
    """The same tree as .tgz, as .zip under a wrapper folder, and as one archive per split."""
    reference = {split: as_set(read_rows(prepared, split)) for split in COUNTS}
    per_split = tmp_path / "per_split"
    per_split.mkdir()
    tar_directory(folder / "train", per_split / "train.tgz", prefix="train/")
    zip_directory(folder / "test", per_split / "test.zip")  # no split level inside: the name says "test"
    sources = {
        "tgz": tar_directory(folder, tmp_path / "all.tgz"),
        "zip": zip_directory(folder, tmp_path / "all.zip", prefix="wrapper/"),
        "per_split": per_split,
    }
    for kind, source in sources.items():
        out = tmp_path / f"out_{kind}"
        manifest = prepare_dataset(str(source), str(out), workers=0)
        assert manifest["source_kind"] == "archives"
        for split in COUNTS:
            assert as_set(read_rows(out, split)) == reference[split], (kind, split)


def test_single_split_tree_and_split_renaming(tmp_path):
    write_imagefolder(tmp_path / "flat", {"": {"a": 3, "b": 2}})
    manifest = prepare_dataset(str(tmp_path / "flat"), str(tmp_path / "o1"), workers=0)
    assert set(manifest["splits"]) == {"train"}
    assert manifest["splits"]["train"]["class_counts"] == {"a": 3, "b": 2}

    write_imagefolder(tmp_path / "tree", {"train": {"a": 2}, "val": {"a": 2}, "extra": {"a": 1}})
    manifest = prepare_dataset(str(tmp_path / "tree"), str(tmp_path / "o2"), split_names=["train", "val=test"],
                               workers=0)
    assert set(manifest["splits"]) == {"train", "test"}
    assert manifest["splits"]["test"]["num_rows"] == 2
    with pytest.raises(PrepareError, match="nosuch"):
        prepare_dataset(str(tmp_path / "tree"), str(tmp_path / "o3"), split_names=["nosuch"], workers=0)


def _tar_add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def test_webdataset_shards(tmp_path):
    rng = np.random.default_rng(1)
    shards = tmp_path / "wds"
    shards.mkdir()
    expected = {}
    for shard, split in (("train-000000.tar", "train"), ("train-000001.tar", "train"), ("test-000000.tar", "test")):
        with tarfile.open(shards / shard, "w") as tar:
            for i in range(4):
                key = f"{shard[:-4]}_{i:03d}"
                image = encode(random_pixels(rng, 20, 20))
                label = (i * 3) % 5
                _tar_add(tar, f"{key}.jpg", image)
                _tar_add(tar, f"{key}.cls", f"{label}\n".encode())
                _tar_add(tar, f"{key}.json", b"{}")
                expected[image] = (split, label)
            _tar_add(tar, "nolabel.jpg", encode(random_pixels(rng, 20, 20)))
    out = tmp_path / "out"
    manifest = prepare_dataset(str(shards), str(out), workers=0)
    assert manifest["source_kind"] == "webdataset"
    assert manifest["classes"] == ["0", "1", "2", "3", "4"]
    assert sorted(r["reason"] for r in manifest["rejected"]) == ["no .cls label"] * 3
    got = {}
    for split in ("train", "test"):
        for row in read_rows(out, split).to_pylist():
            got[row["image"]] = (split, row["label"])
    assert got == expected


def test_parquet_source_with_hugging_face_class_names(tmp_path):
    rng = np.random.default_rng(2)
    images = [encode(random_pixels(rng, 16, 16), "PNG") for _ in range(6)]
    labels = [2, 0, 1, 2, 0, 1]
    table = pa.table({
        "image": pa.array([{"bytes": b, "path": None} for b in images],
                          type=pa.struct([("bytes", pa.binary()), ("path", pa.string())])),
        "label": pa.array(labels, type=pa.int64()),
    })
    features = {"info": {"features": {"label": {"names": ["zero", "one", "two"], "_type": "ClassLabel"}}}}
    table = table.replace_schema_metadata({"huggingface": json.dumps(features)})
    (tmp_path / "src" / "data").mkdir(parents=True)
    pq.write_table(table, tmp_path / "src" / "data" / "train-00000-of-00001.parquet")
    out = tmp_path / "out"
    manifest = prepare_dataset(str(tmp_path / "src"), str(out), workers=0)
    assert manifest["source_kind"] == "parquet"
    assert manifest["classes"] == ["zero", "one", "two"]
    rows = read_rows(out, "train")
    assert dict(zip(rows.column("image").to_pylist(), rows.column("label").to_pylist())) == dict(zip(images, labels))


def test_uris_through_pyarrow_filesystems(folder, prepared, tmp_path):
    out = f"file://{tmp_path}/uri_out"
    manifest = prepare_dataset(f"file://{folder}", out, workers=0)
    assert manifest["source"] == f"file://{folder}"
    for split in COUNTS:
        assert as_set(read_rows(tmp_path / "uri_out", split)) == as_set(read_rows(prepared, split))
    assert load_manifest(out)["splits"] == manifest["splits"]


def test_shards_mix_classes_sorted_by_id(monkeypatch, tmp_path):
    """Sources arrive class by class; every shard must still hold a random mix (training only shuffles locally)."""
    write_imagefolder(tmp_path / "src", {"train": {f"c{k}": 40 for k in range(4)}}, sizes=((16, 16),))
    monkeypatch.setattr(shards_module, "MIN_SHARDS", 4)  # about 40 rows per shard
    monkeypatch.setattr(shards_module, "MIN_SHARD_BYTES", 1024)
    monkeypatch.setattr(shards_module, "ROW_GROUP_BYTES", 4096)
    manifest = prepare_dataset(str(tmp_path / "src"), str(tmp_path / "out"), workers=0)
    files = manifest["splits"]["train"]["shards"]
    assert len(files) == 4
    for shard in files:
        table = pq.read_table(tmp_path / "out" / shard["path"])
        ids = table.column("id").to_numpy()
        assert (np.diff(ids) > 0).all()
        assert len(set(table.column("label").to_pylist())) == 4, "a shard holds a single class"
        assert pq.ParquetFile(tmp_path / "out" / shard["path"]).metadata.num_row_groups > 1
    assert sum(s["num_rows"] for s in files) == 160


def test_checksum_follows_content(folder, tmp_path):
    copy = tmp_path / "copy"
    for path in folder.rglob("*"):
        if path.is_file():
            (copy / path.relative_to(folder)).parent.mkdir(parents=True, exist_ok=True)
            (copy / path.relative_to(folder)).write_bytes(path.read_bytes())
    first = prepare_dataset(str(copy), str(tmp_path / "a"), workers=0)["checksum"]
    assert prepare_dataset(str(copy), str(tmp_path / "b"), workers=0)["checksum"] == first
    victim = next(copy.rglob("*.jpg"))
    victim.write_bytes(encode(random_pixels(np.random.default_rng(9), 20, 20)))
    assert prepare_dataset(str(copy), str(tmp_path / "c"), workers=0)["checksum"] != first


def test_worker_processes_give_the_same_result(folder, prepared, tmp_path):
    prepare_dataset(str(folder), str(tmp_path / "pool"), workers=2)
    for split in COUNTS:
        assert as_set(read_rows(tmp_path / "pool", split)) == as_set(read_rows(prepared, split))


def test_ensure_prepared_prepares_once_under_concurrency(folder, tmp_path, monkeypatch):
    from pipelines.data import cache

    calls = []
    real = cache.prepare_dataset

    def counting(*args, **kwargs):
        calls.append(args)
        time.sleep(0.5)  # widen the race window
        return real(*args, **kwargs)

    monkeypatch.setattr(cache, "prepare_dataset", counting)
    monkeypatch.chdir(tmp_path)
    results = []
    threads = [threading.Thread(target=lambda: results.append(ensure_prepared(str(folder), workers=0)))
               for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and len(results) == 2 and results[0] == results[1]
    target = results[0]
    assert target.is_relative_to(tmp_path / ".vit-study")
    assert not list(target.parent.glob("*.partial-*")), "temporary directory left behind"
    assert ensure_prepared(str(folder)) == target and len(calls) == 1
    assert ensure_prepared(str(target)) == target  # a prepared directory is returned as is


def test_ensure_prepared_refuses_a_directory_from_other_files(folder, tmp_path):
    source = tmp_path / "src"
    write_imagefolder(source, {"train": {"a": 2}})
    out = tmp_path / "out"
    ensure_prepared(str(source), str(out), workers=0)
    write_imagefolder(source, {"train": {"b": 1}}, seed=3)
    with pytest.raises(PrepareError, match="not from the current files"):
        ensure_prepared(str(source), str(out), workers=0)


def test_cli_prepare(folder, tmp_path, capsys):
    out = tmp_path / "cli_out"
    assert cli_main(["prepare", str(folder), "--out", str(out), "--no-progress", "--workers", "0"]) == 0
    assert "train 18" in capsys.readouterr().out
    assert load_manifest(out)["splits"]["train"]["num_rows"] == 18
    assert cli_main(["prepare", str(folder), "--out", str(out), "--no-progress"]) == 1
    assert "already holds a prepared dataset" in capsys.readouterr().err


@pytest.mark.skipif(not (SHARED / "hymenoptera").is_dir(), reason="shared hymenoptera data not present")
def test_hymenoptera_accepts_the_gif(tmp_path):
    source = SHARED / "hymenoptera"
    manifest = prepare_dataset(str(source), str(tmp_path / "out"))
    assert manifest["num_rejected"] == 0
    for split in ("train", "val"):
        for name in ("ants", "bees"):
            on_disk = len([p for p in (source / split / name).iterdir() if p.is_file()])
            assert manifest["splits"][split]["class_counts"][name] == on_disk
    gif = [r for r in read_rows(tmp_path / "out", "train").to_pylist() if r["path"].endswith(".gif")]
    assert [r["path"] for r in gif] == ["train/ants/imageNotFound.gif"]


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED / "cifar10-jpg").is_dir(), reason="shared CIFAR-10 data not present")
def test_cifar10_tarballs(tmp_path):
    started = time.perf_counter()
    manifest = prepare_dataset(str(SHARED / "cifar10-jpg"), str(tmp_path / "out"))
    print(f"prepare cifar10-jpg: {time.perf_counter() - started:.1f} s")
    expected = {"train": 5000, "test": 1000}
    assert manifest["classes"] == ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                                   "truck"]
    assert manifest["num_rejected"] == 0
    for split, per_class in expected.items():
        info = manifest["splits"][split]
        assert info["class_counts"] == {name: per_class for name in manifest["classes"]}
        rows = read_rows(tmp_path / "out", split)
        assert rows.num_rows == info["num_rows"] == 10 * per_class
        assert np.bincount(rows.column("label").to_numpy()).tolist() == [per_class] * 10
        assert len(set(rows.column("id").to_pylist())) == rows.num_rows

"""`vit-study download cifar10`, without the network: a small archive in the publisher's binary format, served from a
file:// URL, becomes an ImageFolder tree whose pixels and labels are the records', and the prepare step reads it."""

import hashlib
import io
import tarfile

import numpy as np
import pytest
from PIL import Image

from pipelines.cli import main as cli_main
from pipelines.fetch.cifar10 import RECORD, FetchError, decode_records, fetch_cifar10

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def _records(rng, n):
    labels = rng.integers(0, 10, n, dtype=np.uint8)
    images = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    planes = images.transpose(0, 3, 1, 2).reshape(n, -1)  # the release stores R, G, B planes
    return labels, images, np.concatenate([labels[:, None], planes], axis=1).tobytes()


def _archive(tmp_path, per_batch=3):
    rng = np.random.default_rng(0)
    expected = {"train": [], "test": []}
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "cifar-10-binary.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        def add(name, data):
            info = tarfile.TarInfo(f"cifar-10-batches-bin/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        add("batches.meta.txt", ("\n".join(CLASSES) + "\n\n").encode())
        for name, split in [(f"data_batch_{i}.bin", "train") for i in range(1, 6)] + [("test_batch.bin", "test")]:
            labels, images, data = _records(rng, per_batch)
            expected[split] += list(zip(labels, images, strict=True))
            add(name, data)
    return path, expected


def test_records_decode_to_labels_and_hwc_images():
    labels, images, data = _records(np.random.default_rng(1), 4)
    got_labels, got_images = decode_records(data, "x.bin")
    assert (got_labels == labels).all() and (got_images == images).all()
    with pytest.raises(FetchError, match="x.bin"):
        decode_records(data[:-1], "x.bin")
    assert RECORD == 3073


def test_download_writes_an_image_folder_with_the_records_pixels(tmp_path):
    archive, expected = _archive(tmp_path / "src")
    md5 = hashlib.md5(archive.read_bytes()).hexdigest()
    out = fetch_cifar10(tmp_path / "cifar10", url=archive.as_uri(), md5=md5, cache=tmp_path / "cache", log=print)
    for split, records in expected.items():
        files = sorted((out / split).glob("*/*.png"), key=lambda p: p.name)
        assert len(files) == len(records)
        for file, (label, image) in zip(files, records, strict=True):
            assert file.parent.name == CLASSES[label]
            assert (np.asarray(Image.open(file)) == image).all()  # PNG: exact pixels
    with pytest.raises(FetchError, match="already exists"):
        fetch_cifar10(out, url=archive.as_uri(), md5=md5, cache=tmp_path / "cache")


def test_a_corrupted_download_is_refused_by_its_md5(tmp_path):
    archive, _ = _archive(tmp_path / "src")
    with pytest.raises(FetchError, match="MD5"):
        fetch_cifar10(tmp_path / "cifar10", url=archive.as_uri(), md5="0" * 32, cache=tmp_path / "cache")
    assert not (tmp_path / "cifar10").exists()


def test_the_command_fails_cleanly_without_network(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("pipelines.fetch.cifar10.URL", (tmp_path / "nowhere.tar.gz").as_uri())
    assert cli_main(["download", "cifar10", "--out", str(tmp_path / "c")]) == 1
    assert "vit-study download: error:" in capsys.readouterr().err


def test_the_tree_prepares_like_any_image_folder(tmp_path):
    from pipelines.data import load_manifest
    from pipelines.data.prepare import prepare_dataset

    archive, expected = _archive(tmp_path / "src")
    out = fetch_cifar10(tmp_path / "cifar10", url=archive.as_uri(), md5=None, cache=tmp_path / "cache")
    prepare_dataset(str(out), str(tmp_path / "prepared"), progress=False, workers=1)
    manifest = load_manifest(tmp_path / "prepared")
    assert {s: manifest["splits"][s]["num_rows"] for s in ("train", "test")} == {"train": 15, "test": 3}
    assert manifest["classes"] == sorted({CLASSES[label] for records in expected.values() for label, _ in records})

"""CIFAR-10 from its publisher's binary release into ``<out>/{train,test}/<class>/<index>.png``.

The binary version (not the Python one) is read: each record is one label byte and 3,072 pixel bytes (1,024 red,
then green, then blue, row-major), so nothing is unpickled. The archive is checked against its published MD5 before
it is opened, and the tree is written beside ``out`` and renamed into place, so a half-written tree never exists.
"""

from __future__ import annotations

import hashlib
import shutil
import tarfile
import urllib.request
from pathlib import Path

import numpy as np
from PIL import Image

URL = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
MD5 = "c32a1d4ab5d03f1284b67883e8d87530"
SIDE, RECORD = 32, 1 + 3 * 32 * 32
SPLITS = {"train": [f"data_batch_{i}.bin" for i in range(1, 6)], "test": ["test_batch.bin"]}
CLASSES_FILE = "batches.meta.txt"


class FetchError(RuntimeError):
    pass


def download(url: str, destination: Path, md5: str | None, log=print) -> Path:
    """``url`` to ``destination`` (kept for next time when its MD5 matches); a mismatch is an error naming both."""
    if not (destination.exists() and (md5 is None or file_md5(destination) == md5)):
        destination.parent.mkdir(parents=True, exist_ok=True)
        partial = destination.with_name(destination.name + ".part")
        log(f"downloading {url} -> {destination}")
        with urllib.request.urlopen(url, timeout=60) as response, open(partial, "wb") as out:
            shutil.copyfileobj(response, out, length=1 << 20)
        partial.replace(destination)
    if md5 is not None and (found := file_md5(destination)) != md5:
        raise FetchError(f"{destination} (from {url}): MD5 {found}, expected {md5}; delete it and download again")
    return destination


def file_md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def decode_records(data: bytes, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(labels ``[N]``, images ``[N, 32, 32, 3]`` uint8) of one binary batch file."""
    if len(data) % RECORD:
        raise FetchError(f"{name}: {len(data)} bytes is not a whole number of {RECORD}-byte CIFAR-10 records")
    records = np.frombuffer(data, dtype=np.uint8).reshape(-1, RECORD)
    images = records[:, 1:].reshape(-1, 3, SIDE, SIDE).transpose(0, 2, 3, 1)
    return records[:, 0].copy(), np.ascontiguousarray(images)


def write_image_folder(archive: Path, out: Path, log=print) -> Path:
    """Unpack the binary release ``archive`` into an ImageFolder tree at ``out`` (PNG: lossless, as published)."""
    if out.exists():
        raise FetchError(f"{out} already exists; remove it or choose another --out")
    members = _read_members(archive)
    classes = [line.strip() for line in members[CLASSES_FILE].decode().splitlines() if line.strip()]
    staging = out.with_name(out.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    for split, files in SPLITS.items():
        index = 0
        for file in files:
            labels, images = decode_records(members[file], file)
            for label, image in zip(labels, images, strict=True):
                if label >= len(classes):
                    raise FetchError(f"{archive}:{file}: label {label} but only {len(classes)} classes")
                folder = staging / split / classes[label]
                folder.mkdir(parents=True, exist_ok=True)
                Image.fromarray(image).save(folder / f"{index:05d}.png")
                index += 1
        log(f"{split}: {index} images")
    staging.rename(out)
    return out


def _read_members(archive: Path) -> dict[str, bytes]:
    wanted = {CLASSES_FILE, *(f for files in SPLITS.values() for f in files)}
    found = {}
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar:
            name = Path(member.name).name
            if member.isfile() and name in wanted:
                found[name] = tar.extractfile(member).read()
    missing = sorted(wanted - set(found))
    if missing:
        raise FetchError(f"{archive}: not the CIFAR-10 binary release, missing {missing}")
    return found


def fetch_cifar10(out: Path, *, url: str = URL, md5: str | None = MD5, cache: Path | None = None, log=print) -> Path:
    """Download (or reuse) the binary release and write the ImageFolder tree at ``out``; returns ``out``."""
    archive = download(url, (cache or out.parent) / Path(url).name, md5, log)
    return write_image_folder(archive, out, log)

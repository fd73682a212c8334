"""Sample images for the figures: from a folder (ImageFolder or flat), a .tar/.tgz of one, or Parquet shards.

Images are decoded with ``torchvision.io.decode_image`` as RGB, resized so the shorter side covers the model's
resolution, centre-cropped, and kept as uint8 ``[C, H, W]``: the model normalises uint8 input itself.
"""

from __future__ import annotations

import sys
import tarfile
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

import torch
from torchvision.io import ImageReadMode, decode_image
from torchvision.transforms.v2 import functional as TF

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
ARCHIVE_SUFFIXES = (".tar", ".tgz", ".tar.gz")


def _spread_over_classes(names: Iterable[str], count: int) -> list[str]:
    """Up to ``count`` names, taken in turn from each parent folder (class), each folder in sorted order."""
    by_class: dict[str, list[str]] = defaultdict(list)
    for name in sorted(names):
        by_class[str(Path(name).parent)].append(name)
    queues = [by_class[key] for key in sorted(by_class)]
    picked: list[str] = []
    while len(picked) < count and any(queues):
        for queue in queues:
            if queue and len(picked) < count:
                picked.append(queue.pop(0))
    return picked


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_SUFFIXES)


def _from_folder(root: Path, count: int) -> list[tuple[str, bytes]]:
    parquet = sorted(root.rglob("*.parquet"))
    names = [str(p) for p in root.rglob("*") if p.is_file() and _is_image(p.name)]
    if not names and parquet:
        return _from_parquet(parquet, count)
    return [(name, Path(name).read_bytes()) for name in _spread_over_classes(names, count * 2)]


def _from_archive(path: Path, count: int) -> list[tuple[str, bytes]]:
    with tarfile.open(path) as tar:
        members = {m.name: m for m in tar.getmembers() if m.isfile() and _is_image(m.name)}
        picked = _spread_over_classes(members, count * 2)
        return [(f"{path}:{name}", tar.extractfile(members[name]).read()) for name in picked]


def _from_parquet(files: list[Path], count: int) -> list[tuple[str, bytes]]:
    """Encoded images from the ``image`` column (binary) of prepared Parquet shards."""
    import pyarrow.parquet as pq

    found: list[tuple[str, bytes]] = []
    for file in files:
        table = pq.read_table(file)
        if "image" not in table.column_names:
            raise ValueError(f"{file}: no 'image' column (columns: {table.column_names})")
        column = table.column("image").to_pylist()
        found += [(f"{file}[{i}]", value["bytes"] if isinstance(value, dict) else value)
                  for i, value in enumerate(column[: count * 2 - len(found)])]
        if len(found) >= count * 2:
            break
    return found


def decode_rgb(data: bytes, name: str) -> torch.Tensor:
    """Encoded bytes to uint8 ``[3, H, W]`` (first frame of an animation); errors name the file."""
    try:
        image = decode_image(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=ImageReadMode.RGB)
    except (RuntimeError, ValueError) as exc:
        raise ValueError(f"{name}: cannot decode image ({exc})") from exc
    return image[0] if image.dim() == 4 else image


def fit_to_size(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize (shorter side covering ``size``, antialiased) and centre-crop a ``[C, H, W]`` image to ``size``."""
    h, w = image.shape[-2:]
    scale = max(size[0] / h, size[1] / w)
    resized = TF.resize(image, [max(size[0], round(h * scale)), max(size[1], round(w * scale))], antialias=True)
    return TF.center_crop(resized, list(size))


def load_sample_images(source, size: tuple[int, int], count: int = 8) -> tuple[torch.Tensor, list[str]]:
    """Up to ``count`` images from ``source`` (folder, archive or Parquet folder) as uint8 ``[B, 3, H, W]``.

    Files that do not decode are skipped with a warning that names them; no decodable image is an error.
    """
    source = Path(source)
    if source.is_dir():
        encoded = _from_folder(source, count)
    elif source.is_file() and source.name.lower().endswith(ARCHIVE_SUFFIXES):
        encoded = _from_archive(source, count)
    else:
        raise ValueError(f"{source}: not a folder of images, a .tar/.tgz of one, or a folder of Parquet shards")
    images, names = [], []
    for name, data in encoded:
        if len(images) == count:
            break
        try:
            images.append(fit_to_size(decode_rgb(data, name), size))
            names.append(name)
        except ValueError as exc:
            print(f"warning: skipped {exc}", file=sys.stderr)
    if not images:
        raise ValueError(f"{source}: no decodable images found")
    return torch.stack(images), names

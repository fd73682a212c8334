"""Small image datasets written on the fly for the data tests (real encoders: Pillow)."""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image


def encode(pixels: np.ndarray, fmt: str = "JPEG", mode: str | None = None, **options) -> bytes:
    """Encode ``uint8 [H, W, 3]`` pixels with Pillow, converted to ``mode`` first (``L``, ``P``, ``RGBA``...)."""
    image = Image.fromarray(pixels)
    if mode is not None:
        image = image.convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def random_pixels(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Smooth random colour fields (JPEG-friendly, so decoded pixels stay close to the originals)."""
    coarse = rng.integers(0, 256, size=(max(2, height // 8), max(2, width // 8), 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(coarse).resize((width, height), Image.BILINEAR))


def write_imagefolder(root: Path, counts: dict[str, dict[str, int]], *, seed: int = 0,
                      sizes: tuple[tuple[int, int], ...] = ((24, 32), (40, 30), (33, 33), (64, 48)),
                      fmt: str = "JPEG") -> list[Path]:
    """``root/<split>/<class>/<i>.jpg`` (or ``root/<class>/<i>.jpg`` when the split is ``""``)."""
    rng = np.random.default_rng(seed)
    suffix = {"JPEG": ".jpg", "PNG": ".png"}[fmt]
    paths = []
    for split, classes in counts.items():
        for name, n in classes.items():
            folder = root / split / name if split else root / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                height, width = sizes[(i + len(paths)) % len(sizes)]
                path = folder / f"{i:04d}{suffix}"
                path.write_bytes(encode(random_pixels(rng, height, width), fmt))
                paths.append(path)
    return paths


def tar_directory(source: Path, archive: Path, *, prefix: str = "") -> Path:
    """Pack every file under ``source`` into ``archive`` (``.tgz``/``.tar``), paths under ``prefix``."""
    mode = "w:gz" if archive.name.endswith((".tgz", ".tar.gz")) else "w"
    with tarfile.open(archive, mode) as tar:
        for path in sorted(source.rglob("*")):
            tar.add(path, arcname=prefix + path.relative_to(source).as_posix(), recursive=False)
    return archive


def zip_directory(source: Path, archive: Path, *, prefix: str = "") -> Path:
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(source.rglob("*")):
            if path.is_file():
                zf.write(path, prefix + path.relative_to(source).as_posix())
    return archive


def broken_files(rng: np.random.Generator) -> dict[str, tuple[str, bytes]]:
    """``name -> (file name, bytes)`` of inputs that real datasets contain."""
    pixels = random_pixels(rng, 30, 40)
    jpeg = encode(pixels)
    frames = [Image.fromarray(pixels).convert("P"), Image.fromarray(255 - pixels).convert("P")]
    animated = io.BytesIO()
    frames[0].save(animated, "GIF", save_all=True, append_images=frames[1:])
    return {
        "zero_byte": ("empty.jpg", b""),
        "truncated_jpeg": ("truncated.jpg", jpeg[: len(jpeg) // 2]),
        "text_as_jpeg": ("notes.jpg", b"this is not an image, just text\n" * 4),
        "bmp_as_jpeg": ("bitmap.jpg", encode(pixels, "BMP")),
        "cmyk_jpeg": ("cmyk.jpg", encode(pixels, "JPEG", mode="CMYK")),
        "grayscale_png": ("gray.png", encode(pixels, "PNG", mode="L")),
        "rgba_png": ("rgba.png", encode(pixels, "PNG", mode="RGBA")),
        "palette_png": ("palette.png", encode(pixels, "PNG", mode="P")),
        "gif": ("still.gif", encode(pixels, "GIF", mode="P")),
        "animated_gif": ("animated.gif", animated.getvalue()),
    }

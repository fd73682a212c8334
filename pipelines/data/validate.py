"""Checking images at prepare time with the decoder that training uses, so training never meets a bad file.

An image is accepted when :func:`pipelines.data.transforms.decode_rgb` decodes it completely (JPEG, PNG, GIF,
WebP; grayscale, palette, RGBA and CMYK are converted to RGB at decode time). Everything else gets a reason:
empty file, not an image, an image format the decoder does not read (BMP, TIFF, ...), corrupt or truncated.
Checks run in a pool of worker processes, because decoding dominates the cost of ``prepare``.
"""

from __future__ import annotations

import multiprocessing
import os
import re
import sys
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass

MAGIC = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
)
UNSUPPORTED_MAGIC = ((b"BM", "BMP"), (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"), (b"\x00\x00\x00\x0cjP", "JPEG 2000"))


@dataclass(frozen=True)
class ImageCheck:
    """``reason`` is ``None`` for an accepted image; ``width``/``height`` are those of the decoded image."""

    width: int = 0
    height: int = 0
    reason: str | None = None


def image_format(data: bytes) -> str | None:
    """The name of the format the decoder reads, from the magic bytes, or ``None``."""
    for magic, name in MAGIC:
        if data.startswith(magic):
            return name
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WebP"
    return None


def check_image(data: bytes | None) -> ImageCheck:
    """Decode ``data`` fully and say whether (and why not) it can be used."""
    from .transforms import decode_rgb  # torch/torchvision load in the worker processes only when needed

    if not data:
        return ImageCheck(reason="empty file (0 bytes)")
    fmt = image_format(data)
    if fmt is None:
        other = next((name for magic, name in UNSUPPORTED_MAGIC if data.startswith(magic)), None)
        if other is not None:
            return ImageCheck(reason=f"unsupported image format {other} (JPEG, PNG, GIF and WebP are read)")
        return ImageCheck(reason="not an image (no JPEG, PNG, GIF or WebP signature)")
    try:
        image = decode_rgb(data)
    except RuntimeError as exc:
        return ImageCheck(reason=f"corrupt or truncated {fmt}: {_decoder_message(exc)}")
    height, width = image.shape[1], image.shape[2]
    if height == 0 or width == 0:
        return ImageCheck(reason=f"{fmt} of size {width}x{height}")
    return ImageCheck(width, height)


def check_images(batch: Sequence[bytes | None]) -> list[ImageCheck]:
    return [check_image(data) for data in batch]


def _decoder_message(exc: Exception) -> str:
    """torchvision prefixes messages with a C++ source location; keep the human part."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    match = re.search(r"\.cpp:\d+,\s*(.*)", text)
    return match.group(1) if match else text


def default_workers() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


class Checker:
    """Runs :func:`check_images` on chunks, in order, in ``workers`` processes (``0``: in this process).

    At most ``2 * workers + 2`` chunks are in flight, so a source is streamed, never held in memory.
    Workers are forked (where the OS can) after torch and torchvision are imported here, as torch's DataLoader
    does: a spawned worker would spend seconds importing torch before its first check. In a process running a
    Ray driver (threads) they are spawned instead.
    """

    def __init__(self, workers: int | None = None):
        self.workers = default_workers() if workers is None else workers
        self._pool = None

    def __enter__(self) -> Checker:
        if self.workers > 0:
            from . import transforms  # noqa: F401  (imported once, inherited by forked workers)

            ray = sys.modules.get("ray")
            threaded = ray is not None and ray.is_initialized()  # a Ray driver has gRPC threads: do not fork
            method = "fork" if "fork" in multiprocessing.get_all_start_methods() and sys.platform != "darwin" \
                and not threaded else "spawn"
            self._pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context(method))
        return self

    def __exit__(self, *exc_info) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)

    def map(self, chunks: Iterable[tuple[object, Sequence[bytes | None]]]) -> Iterator[tuple[object, list[ImageCheck]]]:
        """``(tag, checks)`` for every ``(tag, images)`` chunk, in input order."""
        if self._pool is None:
            for tag, images in chunks:
                yield tag, check_images(images)
            return
        pending: deque[tuple[object, Future]] = deque()
        for tag, images in chunks:
            pending.append((tag, self._pool.submit(check_images, list(images))))
            if len(pending) >= 2 * self.workers + 2:
                done_tag, future = pending.popleft()
                yield done_tag, future.result()
        while pending:
            done_tag, future = pending.popleft()
            yield done_tag, future.result()

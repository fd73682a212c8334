"""Decode, augment and patchify encoded images on CPU workers (Ray Data tasks, or DataLoader workers in the
benchmark): the same functions, so both do exactly the same work.

* Decode: ``torchvision.io.decode_image`` on a ``torch.frombuffer`` view of the bytes, in RGB mode, which also
  converts grayscale, palette, RGBA, CMYK and GIF images; animated GIFs give their first frame; 16-bit PNGs are
  scaled to 8 bits.
* Train: Inception-style random-resized crop (area fraction ``crop_scale`` of the image, aspect ratio in
  ``[3/4, 4/3]``, ten tries, then a centre crop) to ``image_size`` and a horizontal flip with probability 1/2.
  The random numbers of an example are a hash of ``(seed, epoch, id)``: reproducible, independent of how rows
  are grouped into blocks or workers, and different every epoch.
* Eval: resize the shorter side to ``image_size`` (antialiased bilinear), then centre-crop ``image_size``.
* Patchify with :func:`vit_model.patchify_numpy` to ``uint8 [B, N, P*P*C]``; normalisation happens on the
  training device, so the host ships one byte per channel.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import torch
from torchvision.io import ImageReadMode, decode_image
from torchvision.transforms.v2 import functional as F

from vit_model import patchify_numpy

# torchvision 0.29 deprecates its decoders in favour of TorchCodec (not installed here); the call is still the
# fastest CPU decoder available, and the warning would repeat in every worker.
warnings.filterwarnings("ignore", message="The image decoding and encoding capabilities", category=DeprecationWarning)
# Buffers coming out of Ray's object store are read-only; decoding never writes to them.
warnings.filterwarnings("ignore", message="The given (buffer|NumPy array) is not writable", category=UserWarning)

TRAIN_CROP_SCALE = (0.08, 1.0)
TRAIN_CROP_RATIO = (3 / 4, 4 / 3)
CROP_ATTEMPTS = 10
UNIFORMS_PER_ROW = 4 * CROP_ATTEMPTS + 1  # four per crop attempt, one for the flip


def decode_rgb(data: bytes | memoryview | torch.Tensor) -> torch.Tensor:
    """``uint8 [3, H, W]`` RGB from encoded JPEG/PNG/GIF/WebP bytes; raises ``RuntimeError`` if undecodable."""
    if isinstance(data, bytes):
        data = bytearray(data)  # writable: torch warns about views of read-only memory (a copy costs ~1% here)
    if not isinstance(data, torch.Tensor):
        data = torch.frombuffer(data, dtype=torch.uint8)
    image = decode_image(data, mode=ImageReadMode.RGB)
    if image.ndim == 4:  # animated GIF
        image = image[0]
    if image.dtype != torch.uint8:  # 16-bit PNG
        image = F.to_dtype(image, torch.uint8, scale=True)
    return image


def binary_views(column: pa.Array | pa.ChunkedArray) -> list[torch.Tensor]:
    """Zero-copy ``uint8`` tensor views of every value of an Arrow binary column."""
    chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
    views: list[torch.Tensor] = []
    for chunk in chunks:
        if chunk.null_count:
            raise ValueError("image column has nulls")
        offset_type = np.int64 if pa.types.is_large_binary(chunk.type) else np.int32
        _, offsets_buffer, data_buffer = chunk.buffers()[:3]
        offsets = np.frombuffer(offsets_buffer, dtype=offset_type)[chunk.offset: chunk.offset + len(chunk) + 1]
        # torch.frombuffer refuses read-only Arrow buffers (what Ray's object store hands out); numpy takes them.
        data = torch.from_numpy(np.frombuffer(data_buffer, dtype=np.uint8)) if data_buffer is not None \
            and data_buffer.size else torch.empty(0, dtype=torch.uint8)
        views.extend(data[start:stop] for start, stop in zip(offsets[:-1].tolist(), offsets[1:].tolist()))
    return views


def augment_key(seed: int, epoch: int) -> int:
    """One 64-bit key per (seed, epoch) for :func:`row_uniforms`."""
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1, np.uint64)[0])


def row_uniforms(ids: np.ndarray, key: int, count: int) -> np.ndarray:
    """``[len(ids), count]`` uniforms in ``[0, 1)``, a pure function of ``(key, id)`` (splitmix64 hashes)."""
    with np.errstate(over="ignore"):
        base = ids.astype(np.int64).view(np.uint64) ^ np.uint64(key)
        x = base[:, None] + (np.arange(1, count + 1, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15))[None, :]
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        x = x ^ (x >> np.uint64(31))
    return (x >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


def inception_crops(uniforms: np.ndarray, heights: np.ndarray, widths: np.ndarray,
                    scale: tuple[float, float] = TRAIN_CROP_SCALE,
                    ratio: tuple[float, float] = TRAIN_CROP_RATIO) -> tuple[np.ndarray, ...]:
    """Random-resized-crop boxes ``(top, left, height, width)`` for a batch, from ``[B, 4*CROP_ATTEMPTS]``
    uniforms: try an area fraction in ``scale`` and a log-uniform aspect ratio in ``ratio`` up to
    ``CROP_ATTEMPTS`` times; images where no try fits get the largest centred box within ``ratio``."""
    heights, widths = heights.astype(np.int64), widths.astype(np.int64)
    area = (heights * widths).astype(np.float64)
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    top, left = np.zeros_like(heights), np.zeros_like(heights)
    crop_h, crop_w = heights.copy(), widths.copy()
    done = np.zeros(len(heights), dtype=bool)
    for attempt in range(CROP_ATTEMPTS):
        u = uniforms[:, 4 * attempt: 4 * attempt + 4]
        target = area * (scale[0] + u[:, 0] * (scale[1] - scale[0]))
        aspect = np.exp(log_lo + u[:, 1] * (log_hi - log_lo))
        w = np.rint(np.sqrt(target * aspect)).astype(np.int64)
        h = np.rint(np.sqrt(target / aspect)).astype(np.int64)
        fits = ~done & (w > 0) & (h > 0) & (w <= widths) & (h <= heights)
        top = np.where(fits, np.floor(u[:, 2] * (heights - h + 1)).astype(np.int64), top)
        left = np.where(fits, np.floor(u[:, 3] * (widths - w + 1)).astype(np.int64), left)
        crop_h, crop_w = np.where(fits, h, crop_h), np.where(fits, w, crop_w)
        done |= fits
    aspect_in = widths / np.maximum(heights, 1)
    fallback_w = np.where(aspect_in > ratio[1], np.rint(heights * ratio[1]), widths).astype(np.int64)
    fallback_h = np.where(aspect_in < ratio[0], np.rint(widths / ratio[0]), heights).astype(np.int64)
    crop_w, crop_h = np.where(done, crop_w, fallback_w), np.where(done, crop_h, fallback_h)
    top = np.where(done, top, (heights - crop_h) // 2)
    left = np.where(done, left, (widths - crop_w) // 2)
    return top, left, crop_h, crop_w


def eval_view(image: torch.Tensor, image_size: int) -> torch.Tensor:
    """Resize the shorter side to ``image_size``, then centre-crop a square."""
    return F.center_crop(F.resize(image, [image_size], antialias=True), [image_size, image_size])


def images_to_patches(encoded: Sequence[bytes | torch.Tensor], *, image_size: int, patch_size: int, train: bool,
                      ids: np.ndarray | None = None, key: int = 0,
                      crop_scale: tuple[float, float] = TRAIN_CROP_SCALE) -> np.ndarray:
    """Decode a batch, apply the train (needs ``ids`` and ``key``) or eval view, and patchify.

    Returns ``uint8 [B, (image_size / patch_size)**2, patch_size**2 * 3]``.
    """
    images = [decode_rgb(data) for data in encoded]
    if train and images:
        heights = np.array([im.shape[1] for im in images])
        widths = np.array([im.shape[2] for im in images])
        uniforms = row_uniforms(np.asarray(ids), key, UNIFORMS_PER_ROW)
        top, left, crop_h, crop_w = inception_crops(uniforms[:, :-1], heights, widths, scale=crop_scale)
        flips = (uniforms[:, -1] < 0.5).tolist()
        views = [
            F.resized_crop(im, t, lf, h, w, [image_size, image_size], antialias=True)
            for im, t, lf, h, w in zip(images, top.tolist(), left.tolist(), crop_h.tolist(), crop_w.tolist())
        ]
        views = [v.flip(-1) if flip else v for v, flip in zip(views, flips)]
    else:
        views = [eval_view(im, image_size) for im in images]
    batch = torch.stack(views) if views else torch.empty((0, 3, image_size, image_size), dtype=torch.uint8)
    return patchify_numpy(batch.numpy(), patch_size)

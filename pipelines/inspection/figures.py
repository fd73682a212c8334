"""The inspection figures as PNG files (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

MAX_ROLLOUT_IMAGES = 8
DPI = 120


def _save(fig, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_rollout(images: torch.Tensor, maps: torch.Tensor, path, titles: list[str] | None = None) -> Path:
    """Input images (uint8 ``[B, 3, H, W]``) above the same images with their rollout map (``[B, H, W]`` in [0, 1])
    drawn over them."""
    n = min(len(images), MAX_ROLLOUT_IMAGES)
    fig, axes = plt.subplots(2, n, figsize=(1.9 * n, 4.0), squeeze=False)
    for i in range(n):
        picture = images[i].permute(1, 2, 0).cpu().numpy()
        axes[0, i].imshow(picture)
        axes[1, i].imshow(picture)
        axes[1, i].imshow(maps[i].cpu().numpy(), cmap="inferno", alpha=0.6, vmin=0.0, vmax=1.0)
        if titles:
            axes[0, i].set_title(titles[i], fontsize=8)
        for ax in axes[:, i]:
            ax.set_axis_off()
    fig.suptitle("Attention rollout: class-token attention to the input", fontsize=10)
    return _save(fig, path)


def plot_attention_distance(distances: torch.Tensor, path, image_size: tuple[int, int],
                            uniform: float | None = None) -> Path:
    """Mean attention distance ``[layers, heads]`` (pixels) against depth, one dot per head (paper Fig. 7 right);
    ``uniform``, the distance of a head that attends to all patches equally, is drawn as a dashed reference."""
    values = distances.cpu().numpy()
    layers, heads = values.shape
    fig, ax = plt.subplots(figsize=(4.2, 3.4))
    depth = np.arange(1, layers + 1)
    if uniform is not None:
        ax.axhline(uniform, color="gray", linestyle="--", linewidth=1, label="uniform attention")
    for head in range(heads):
        ax.scatter(depth, values[:, head], s=14, label=f"head {head + 1}" if heads <= 16 else None)
    ax.set_xlabel("network depth (layer)")
    ax.set_ylabel("mean attention distance (pixels)")
    ax.set_xticks(depth)
    ax.set_ylim(0, max(float(np.hypot(*image_size)) / 2, 1.05 * float(values.max())))
    ax.set_title(f"{heads} heads x {layers} layers, {image_size[0]}x{image_size[1]} input", fontsize=9)
    if heads <= 16 or uniform is not None:
        ax.legend(fontsize=6, ncol=2 if heads > 8 else 1, loc="upper left", frameon=False)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def _mosaic(tiles: np.ndarray, rows: int, columns: int, gap: int = 1) -> np.ndarray:
    """Tiles ``[K, h, w, ...]`` laid out row-major on a ``rows x columns`` board, ``gap`` NaN pixels between them
    (and above the first row, where labels go, when ``gap > 1``)."""
    k, h, w = tiles.shape[:3]
    top = gap if gap > 1 else 0
    board = np.full((top + rows * (h + gap) - gap, columns * (w + gap) - gap, *tiles.shape[3:]), np.nan)
    for i in range(k):
        r, c = divmod(i, columns)
        y, x = top + r * (h + gap), c * (w + gap)
        board[y:y + h, x:x + w] = tiles[i]
    return board


def plot_position_similarity(similarity: torch.Tensor, path, max_positions: int = 16) -> Path:
    """One small map per patch position: its embedding's cosine similarity with every position (Fig. 7 centre).

    Grids larger than ``max_positions`` per side show evenly spaced positions only.
    """
    gh, gw = similarity.shape[:2]
    rows = np.unique(np.linspace(0, gh - 1, min(gh, max_positions)).round().astype(int))
    cols = np.unique(np.linspace(0, gw - 1, min(gw, max_positions)).round().astype(int))
    sim = similarity.cpu().numpy()
    board = _mosaic(sim[rows][:, cols].reshape(len(rows) * len(cols), gh, gw), len(rows), len(cols))
    fig, ax = plt.subplots(figsize=(5.6, 5.0))
    cmap = plt.get_cmap("viridis").with_extremes(bad="white")  # the gaps between maps
    image = ax.imshow(board, cmap=cmap, vmin=-1.0, vmax=1.0, interpolation="nearest")
    ax.set_xticks(np.arange(len(cols)) * (gw + 1) + (gw - 1) / 2, [str(c + 1) for c in cols], fontsize=7)
    ax.set_yticks(np.arange(len(rows)) * (gh + 1) + (gh - 1) / 2, [str(r + 1) for r in rows], fontsize=7)
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.set_xlabel("input patch column")
    ax.set_ylabel("input patch row")
    ax.set_title("Position embedding similarity", fontsize=10)
    fig.colorbar(image, ax=ax, shrink=0.8, label="cosine similarity")
    return _save(fig, path)


def plot_filters(components: torch.Tensor, explained: torch.Tensor, path, columns: int = 7) -> Path:
    """Principal components ``[K, P, P, C]`` of the embedding filters as RGB patches, each scaled to [0, 1]."""
    tiles = components.cpu().numpy()
    if tiles.shape[-1] != 3:  # not RGB: show the mean over channels in grey
        tiles = np.repeat(tiles.mean(-1, keepdims=True), 3, axis=-1)
    low = tiles.min(axis=(1, 2, 3), keepdims=True)
    tiles = (tiles - low) / np.maximum(tiles.max(axis=(1, 2, 3), keepdims=True) - low, 1e-12)
    k, p = len(tiles), tiles.shape[1]
    rows, gap = -(-k // columns), max(2, round(0.4 * p))  # room for a label above each tile
    board = np.nan_to_num(_mosaic(tiles, rows, columns, gap), nan=1.0)
    fig, ax = plt.subplots(figsize=(1.0 * columns, 1.1 * rows + 0.3))
    ax.imshow(board, interpolation="nearest")
    for i, share in enumerate(explained.cpu().numpy()):
        r, c = divmod(i, columns)
        ax.text(c * (p + gap) + (p - 1) / 2, gap + r * (p + gap) - 0.6, f"{i + 1}: {100 * share:.1f}%",
                fontsize=6, ha="center", va="bottom")
    ax.set_axis_off()
    ax.set_title("RGB embedding filters (first principal components, % of variance)", fontsize=9)
    return _save(fig, path)

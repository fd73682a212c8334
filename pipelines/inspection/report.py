"""All four analyses on one model, and their figures: what ``vit-study inspect`` (and a study) calls.

``inspect_checkpoint`` is the whole command as a function: resolve the checkpoint (a saved directory, a file, or
an MLflow run), load sample images at the model's resolution, write the figures and log them back to the run.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from . import NUM_SAMPLE_IMAGES
from .attention import attention_maps
from .distance import attention_distances, patch_center_distances
from .filters import embedding_filters
from .pos_similarity import position_similarity
from .rollout import attention_rollout, class_token_map, upsample_map

FIGURES = {
    "rollout": "attention_rollout.png",
    "distance": "attention_distance.png",
    "pos_similarity": "position_embedding_similarity.png",
    "filters": "embedding_filters.png",
}
SUMMARY_FILE = "inspection.json"


@dataclass
class Inspection:
    """What the figures show, as numbers."""

    rollout_maps: torch.Tensor | None  # [B, gh, gw] class-token rollout per image
    distances: torch.Tensor | None  # [layers, heads] mean attention distance in pixels, averaged over images
    similarity: torch.Tensor  # [gh, gw, gh, gw] cosine similarity of position embeddings
    filters: torch.Tensor | None  # [K, P, P, C] principal components of the patch-embedding weight
    explained: torch.Tensor | None  # [K] variance fraction per component


def token_stride(model: nn.Module) -> tuple[int, int]:
    """Input pixels per grid step (the patch size for a plain ViT, the stem's stride for hybrids)."""
    (h, w), (gh, gw) = model.config.image_size, model.patch_embed.grid
    return h // gh, w // gw


def inspect_model(model: nn.Module, images: torch.Tensor | None = None) -> Inspection:
    """Run every analysis; attention ones need ``images`` (uint8 ``[B, 3, H, W]`` at the model's resolution).

    Images go through the model one at a time, so attention of large grids fits in memory.
    """
    if not all(hasattr(model, name) for name in ("patch_embed", "pos_embed", "blocks")):
        raise ValueError(f"{getattr(model, 'model_name', type(model).__name__)} is not a vision transformer "
                         "(no patch_embed, pos_embed and blocks): nothing to inspect")
    grid, prefix = tuple(model.patch_embed.grid), model.num_prefix_tokens
    device = next(model.parameters()).device
    maps, distances = None, None
    if images is not None and len(images):
        per_image_maps, distance_sum = [], None
        for image in images:
            attentions = attention_maps(model, image[None].to(device))
            per_image_maps.append(class_token_map(attention_rollout(attentions), prefix, grid).cpu())
            d = attention_distances(attentions, grid, token_stride(model), prefix).cpu()
            distance_sum = d if distance_sum is None else distance_sum + d
            del attentions
        maps, distances = torch.cat(per_image_maps), distance_sum / len(images)
    proj = getattr(model.patch_embed, "proj", None)
    filters = explained = None
    pixels = model.config.patch_size ** 2 * model.config.in_chans
    if isinstance(proj, nn.Linear) and proj.in_features == pixels:  # of pixels (a hybrid's projects CNN features)
        filters, explained = embedding_filters(proj.weight, model.config.patch_size, model.config.in_chans)
    return Inspection(maps, distances, position_similarity(model.pos_embed, grid, prefix), filters, explained)


def write_figures(model: nn.Module, images: torch.Tensor | None, out_dir,
                  titles: list[str] | None = None) -> list[Path]:
    """Inspect ``model`` and write the PNGs plus ``inspection.json`` (the numbers behind them) into ``out_dir``."""
    from . import figures

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    result = inspect_model(model, images)
    size = tuple(model.config.image_size)
    uniform = patch_center_distances(tuple(model.patch_embed.grid), token_stride(model)).mean().item()
    written = [figures.plot_position_similarity(result.similarity, out_dir / FIGURES["pos_similarity"])]
    if result.rollout_maps is not None:
        overlays = upsample_map(result.rollout_maps, size)
        written.append(figures.plot_rollout(images, overlays, out_dir / FIGURES["rollout"], titles))
        written.append(figures.plot_attention_distance(result.distances, out_dir / FIGURES["distance"], size, uniform))
    if result.filters is not None:
        written.append(figures.plot_filters(result.filters, result.explained, out_dir / FIGURES["filters"]))
    summary = {
        "model": getattr(model, "model_name", None),
        "image_size": list(size),
        "num_images": 0 if images is None else len(images),
        "images": titles,
        "mean_attention_distance_px": None if result.distances is None else result.distances.tolist(),
        "uniform_attention_distance_px": uniform,
        "filter_variance_explained": None if result.explained is None else result.explained.tolist(),
    }
    (out_dir / SUMMARY_FILE).write_text(json.dumps(summary, indent=2))
    return written + [out_dir / SUMMARY_FILE]


def _titles(names: list[str]) -> list[str]:
    """Class folder names when the images come from several folders, else file names."""
    paths = [Path(name.split(":")[-1]) for name in names]
    if len({p.parent.name for p in paths}) > 1:
        return [p.parent.name for p in paths]
    return [p.stem[:14] for p in paths]


def inspect_checkpoint(checkpoint: str, out_dir, *, images=None, num_images: int = NUM_SAMPLE_IMAGES,
                       model_name: str | None = None, image_size: int | None = None, tracking_uri: str | None = None,
                       device: str | None = None) -> list[Path]:
    """Figures for ``checkpoint`` (see :func:`.checkpoint.parse_checkpoint`) in ``out_dir``; when it names an
    MLflow run, they are also logged to that run under ``inspection/``. ``images``: see
    :func:`.images.load_sample_images` (without it the attention figures are skipped). Returns the files written.
    """
    from .checkpoint import RunArtifact, download_run_model, load_inspected_model, parse_checkpoint
    from .images import load_sample_images
    from .tracking import log_figures

    source = parse_checkpoint(checkpoint)
    with tempfile.TemporaryDirectory(prefix="vit-inspect-") as scratch:
        path = download_run_model(source, tracking_uri, Path(scratch)) if isinstance(source, RunArtifact) else source
        model = load_inspected_model(path, model_name, image_size)
    model.to(torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu")))
    samples = names = None
    if images is not None:
        samples, names = load_sample_images(images, tuple(model.config.image_size), num_images)
    written = write_figures(model, samples, out_dir, _titles(names) if names else None)
    if isinstance(source, RunArtifact):
        log_figures(source.run_id, written, tracking_uri)
    return written

"""The size table of the Vision Transformer and the ``vit-<size>/<patch>`` names built from it.

Ti/S/B/L/H are the paper's and DeiT's sizes. ``pi`` (pico) and ``mu`` (micro) are smaller widths of our own
for scaling studies on a CPU: the paper's sizes keep the MLP at 4x width and 64-dim heads, and so do these.
"""

from __future__ import annotations

from .registry import register_family
from .vit import VisionTransformer, ViTConfig

# size letter: (width, depth, mlp_dim, num_heads)
VIT_SIZES: dict[str, tuple[int, int, int, int]] = {
    "pi": (64, 4, 256, 1),
    "mu": (128, 6, 512, 2),
    "ti": (192, 12, 768, 3),
    "s": (384, 12, 1536, 6),
    "b": (768, 12, 3072, 12),
    "l": (1024, 24, 4096, 16),
    "h": (1280, 32, 5120, 16),
}
LISTED_PATCHES = {"pi": (4, 8), "mu": (4, 8), "ti": (4, 8, 16), "s": (4, 8, 16, 32), "b": (8, 16, 32),
                  "l": (16, 32), "h": (14,)}


def decode_vit_variant(size: str, patch: int) -> dict:
    """``("b", 16)`` -> width/depth/MLP/heads/patch: the one place these numbers live."""
    size = size.lower()
    if size not in VIT_SIZES:
        raise ValueError(f"unknown ViT size {size!r}; known: {list(VIT_SIZES)}")
    width, depth, mlp_dim, num_heads = VIT_SIZES[size]
    return {"width": width, "depth": depth, "mlp_dim": mlp_dim, "num_heads": num_heads, "patch_size": int(patch)}


register_family(
    "vit",
    r"vit-(?P<size>" + "|".join(VIT_SIZES) + r")/(?P<patch>\d+)",
    ViTConfig,
    VisionTransformer,
    lambda m: decode_vit_variant(m["size"], int(m["patch"])),
    tuple(f"vit-{s}/{p}" for s, patches in LISTED_PATCHES.items() for p in patches),
)

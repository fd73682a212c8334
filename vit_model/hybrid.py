"""The paper's hybrids: a ResNet's feature map, cut into 1x1 "patches", is the token sequence of a ViT.

``hybrid-r50+vit-b/16`` follows the paper (section 3.1, table 6): the ``/16`` is the effective patch size. Stride 16
drops ResNet-50's stage 4 and moves its blocks into stage 3 (layers 3, 4, 9); stride 32 keeps the usual four stages
(3, 4, 6, 3). The backbone is BiT-style (GroupNorm, weight standardisation) without pre-activation and with
TensorFlow SAME padding, as in the paper's Flax code and timm's ``vit_base_r50_s16_224``. Weight standardisation
uses timm's epsilon (1e-8 inside the variance); the Flax code adds 1e-5 to the standard deviation, a relative
difference of about 1e-3 in a filter's scale that the GroupNorm after every convolution largely absorbs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .flops import linear_macs
from .image_input import images_from_input
from .layers import lecun_normal_
from .patches import patchify
from .registry import register_family
from .resnetv2 import RESNET_LAYERS, ResNetV2Backbone
from .variants import VIT_SIZES, decode_vit_variant
from .vit import VisionTransformer, ViTConfig

HYBRID_DEPTHS = (26, 50)
HYBRID_STRIDES = (16, 32)


def hybrid_layers(depth: int, stride: int) -> tuple[int, ...]:
    """ResNet blocks per stage for an effective patch size: 32 keeps all four stages, 16 folds stage 4 into 3."""
    if depth not in HYBRID_DEPTHS or stride not in HYBRID_STRIDES:
        raise ValueError(f"hybrids exist for ResNet depths {HYBRID_DEPTHS} at strides {HYBRID_STRIDES}, "
                         f"got R{depth} at /{stride}")
    layers = RESNET_LAYERS[depth]
    return layers if stride == 32 else (*layers[:2], layers[2] + layers[3])


@dataclass
class HybridConfig(ViTConfig):
    """A ViT config plus its ResNet: ``patch_size`` is counted in feature-map cells (1 in the paper)."""

    patch_size: int = 1
    backbone_layers: tuple[int, ...] = (3, 4, 9)
    backbone_width: int = 1

    def __post_init__(self):
        self.backbone_layers = tuple(int(n) for n in self.backbone_layers)
        super().__post_init__()

    def validate(self) -> None:
        super().validate()
        if not 1 <= len(self.backbone_layers) <= 4 or min(self.backbone_layers) < 1:
            raise ValueError(f"backbone_layers must be 1 to 4 positive block counts, got {self.backbone_layers}")
        h, w = self.image_size
        if h % self.embed_stride or w % self.embed_stride:
            raise ValueError(f"image_size {h}x{w} is not divisible by the hybrid's stride {self.embed_stride} "
                             f"(ResNet stride x patch_size {self.patch_size})")

    @property
    def backbone_stride(self) -> int:
        return 4 * 2 ** (len(self.backbone_layers) - 1)

    @property
    def embed_stride(self) -> int:
        """Pixels per token side: the ResNet's stride times the patch size on its feature map."""
        return self.backbone_stride * self.patch_size

    @property
    def grid(self) -> tuple[int, int]:
        return self.image_size[0] // self.embed_stride, self.image_size[1] // self.embed_stride


class HybridEmbed(nn.Module):
    """ResNet feature map -> ``patch_size`` patches of it -> linear embedding: the hybrid's token source."""

    def __init__(self, cfg: HybridConfig):
        super().__init__()
        self.in_chans, self.mean, self.std = cfg.in_chans, cfg.mean, cfg.std
        self.patch_size, self.embed_stride = cfg.patch_size, cfg.embed_stride
        self.backbone = ResNetV2Backbone(layers=cfg.backbone_layers, width_factor=cfg.backbone_width,
                                         in_chans=cfg.in_chans, preact=False, padding="same", stem_pool="same")
        self.proj = nn.Linear(self.backbone.num_features * cfg.patch_size ** 2, cfg.width)
        self.grid = cfg.grid

    @property
    def num_patches(self) -> int:
        return self.grid[0] * self.grid[1]

    @property
    def image_size(self) -> tuple[int, int]:
        return self.grid[0] * self.embed_stride, self.grid[1] * self.embed_stride

    def set_image_size(self, image_size: tuple[int, int]) -> None:
        self.grid = (image_size[0] // self.embed_stride, image_size[1] // self.embed_stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = images_from_input(x, in_chans=self.in_chans, mean=self.mean, std=self.std, patch_size=self.embed_stride,
                              grid=self.grid, dtype=self.proj.weight.dtype)
        if tuple(x.shape[2:]) != self.image_size:
            raise ValueError(f"images of {x.shape[2]}x{x.shape[3]} do not match the model's "
                             f"{self.image_size[0]}x{self.image_size[1]}; call set_image_size first")
        return self.proj(patchify(self.backbone(x), self.patch_size))

    @torch.no_grad()
    def init_weights(self) -> None:
        self.backbone.init_weights()
        lecun_normal_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward_macs(self) -> int:
        return self.backbone.macs(self.image_size) + linear_macs(self.num_patches, self.proj.in_features,
                                                                 self.proj.out_features)


def build_hybrid(config: HybridConfig) -> VisionTransformer:
    """A :class:`VisionTransformer` whose tokens come from a ResNet (see :class:`HybridEmbed`)."""
    return VisionTransformer(config, patch_embed=HybridEmbed(config))


def _hybrid_defaults(match) -> dict:
    depth, stride = int(match["depth"]), int(match["stride"])
    values = decode_vit_variant(match["size"], 1)
    values.update(backbone_layers=hybrid_layers(depth, stride), backbone_width=int(match["width"] or 1))
    return values


register_family(
    "hybrid",
    r"hybrid-r(?P<depth>\d+)(?:x(?P<width>\d+))?\+vit-(?P<size>" + "|".join(VIT_SIZES) + r")/(?P<stride>\d+)",
    HybridConfig,
    build_hybrid,
    _hybrid_defaults,
    ("hybrid-r26+vit-s/32", "hybrid-r26+vit-b/32", "hybrid-r50+vit-s/16", "hybrid-r50+vit-b/16",
     "hybrid-r50+vit-b/32", "hybrid-r50+vit-l/16", "hybrid-r50+vit-l/32"),
)

"""BiT ResNet-v2 (Kolesnikov et al., 2020): the paper's ResNet baselines, and the CNN half of the hybrids.

Pre-activation bottlenecks with GroupNorm(32) and weight-standardised convolutions, the stride on the 3x3
convolution, a 7x7 stem and a zero-padded max-pool ("fixed" SAME approximation, as BiT's released weights expect).
The hybrids use the same blocks without pre-activation (ResNet v1.5 order, GroupNorm after each convolution) and
TensorFlow's SAME padding, as the paper's Flax code does. Parameter names follow timm's ``ResNetV2``.

Names: ``bit-r50x1``, ``bit-r101x3``, ... (depth 50/101/152, any integer width factor) and ``resnet-50`` /
``resnet-101`` / ``resnet-152`` for the x1 widths.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import torch
import torch.nn.functional as F
from torch import nn

from .flops import conv2d_macs, head_macs
from .image_input import images_from_input
from .layers import DropPath
from .registry import register_family
from .vit import _pair

# blocks per stage for each depth (26 exists for the R26 hybrids)
RESNET_LAYERS: dict[int, tuple[int, ...]] = {26: (2, 2, 2, 2), 50: (3, 4, 6, 3), 101: (3, 4, 23, 3),
                                             152: (3, 8, 36, 3)}
STAGE_CHANNELS = (256, 512, 1024, 2048)  # output channels per stage at width factor 1 (bottleneck: a quarter)
STEM_WIDTH = 64
GROUPS = 32
PADDINGS = ("symmetric", "same")  # PyTorch's k//2 on both sides, or TensorFlow's SAME (more after than before)
STEM_POOLS = ("fixed", "same", "symmetric")


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow SAME padding (before, after) along one axis: output ceil(size / stride)."""
    total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _pad_same(x: torch.Tensor, kernel: int, stride: int, value: float = 0.0) -> torch.Tensor:
    top, bottom = same_padding(x.shape[-2], kernel, stride)
    left, right = same_padding(x.shape[-1], kernel, stride)
    if top or bottom or left or right:
        x = F.pad(x, (left, right, top, bottom), value=value)
    return x


def conv_output_size(size: int, stride: int) -> int:
    """Every convolution and pooling here (odd kernel, k//2 or SAME padding) maps ``size`` to ceil(size / stride)."""
    return -(-size // stride)


class StdConv2d(nn.Conv2d):
    """Conv2d whose filters are standardised (zero mean, unit variance over fan-in) on every forward pass.

    The standardisation runs in float32 whatever the parameter dtype, so it stays exact under bf16 training.
    """

    def __init__(self, in_chans: int, out_chans: int, kernel: int, stride: int = 1, padding: str = "symmetric",
                 eps: float = 1e-8):
        if padding not in PADDINGS:
            raise ValueError(f"padding must be one of {PADDINGS}, got {padding!r}")
        super().__init__(in_chans, out_chans, kernel, stride, padding=kernel // 2 if padding == "symmetric" else 0,
                         bias=False)
        self.same, self.eps = padding == "same", eps

    def standardized_weight(self) -> torch.Tensor:
        flat = self.weight.float().reshape(self.out_channels, -1)
        var, mean = torch.var_mean(flat, dim=1, unbiased=False, keepdim=True)
        return ((flat - mean) * torch.rsqrt(var + self.eps)).reshape_as(self.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.same:
            x = _pad_same(x, self.kernel_size[0], self.stride[0])
        return F.conv2d(x, self.standardized_weight().to(x.dtype), None, self.stride, self.padding)


class GroupNormAct(nn.GroupNorm):
    """GroupNorm(32 groups), optionally followed by ReLU."""

    def __init__(self, channels: int, act: bool = True, eps: float = 1e-5):
        super().__init__(GROUPS, channels, eps=eps)
        self.act = act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = super().forward(x)
        return F.relu(x) if self.act else x


class Projection(nn.Module):
    """The shortcut's 1x1 (strided) convolution; without pre-activation it is followed by a norm."""

    def __init__(self, in_chans: int, out_chans: int, stride: int, preact: bool, padding: str, eps: float):
        super().__init__()
        self.conv = StdConv2d(in_chans, out_chans, 1, stride, padding, eps)
        self.norm = nn.Identity() if preact else GroupNormAct(out_chans, act=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.conv(x))


class PreActBottleneck(nn.Module):
    """BiT's unit: ``x + conv3(gn3(conv2(gn2(conv1(gn1(x))))))``; the shortcut projects the pre-activated input."""

    def __init__(self, in_chans: int, out_chans: int, stride: int, project: bool, padding: str, eps: float,
                 drop_path: float = 0.0):
        super().__init__()
        mid = out_chans // 4
        self.downsample = Projection(in_chans, out_chans, stride, True, padding, eps) if project else None
        self.norm1 = GroupNormAct(in_chans)
        self.conv1 = StdConv2d(in_chans, mid, 1, 1, padding, eps)
        self.norm2 = GroupNormAct(mid)
        self.conv2 = StdConv2d(mid, mid, 3, stride, padding, eps)
        self.norm3 = GroupNormAct(mid)
        self.conv3 = StdConv2d(mid, out_chans, 1, 1, padding, eps)
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        preact = self.norm1(x)
        shortcut = self.downsample(preact) if self.downsample is not None else x
        x = self.conv1(preact)
        x = self.conv2(self.norm2(x))
        x = self.conv3(self.norm3(x))
        return self.drop_path(x) + shortcut


class Bottleneck(nn.Module):
    """The hybrids' unit (v1.5 order): ``relu(x + gn3(conv3(relu(gn2(conv2(relu(gn1(conv1(x)))))))))``."""

    def __init__(self, in_chans: int, out_chans: int, stride: int, project: bool, padding: str, eps: float,
                 drop_path: float = 0.0):
        super().__init__()
        mid = out_chans // 4
        self.downsample = Projection(in_chans, out_chans, stride, False, padding, eps) if project else None
        self.conv1 = StdConv2d(in_chans, mid, 1, 1, padding, eps)
        self.norm1 = GroupNormAct(mid)
        self.conv2 = StdConv2d(mid, mid, 3, stride, padding, eps)
        self.norm2 = GroupNormAct(mid)
        self.conv3 = StdConv2d(mid, out_chans, 1, 1, padding, eps)
        self.norm3 = GroupNormAct(out_chans, act=False)
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = self.downsample(x) if self.downsample is not None else x
        x = self.norm1(self.conv1(x))
        x = self.norm2(self.conv2(x))
        x = self.norm3(self.conv3(x))
        return F.relu(self.drop_path(x) + shortcut)


class Stem(nn.Module):
    """7x7/2 convolution (with GroupNorm + ReLU when not pre-activated) and a 3x3/2 max-pool."""

    def __init__(self, in_chans: int, width: int, preact: bool, padding: str, pool: str, eps: float):
        super().__init__()
        if pool not in STEM_POOLS:
            raise ValueError(f"stem pool must be one of {STEM_POOLS}, got {pool!r}")
        self.conv = StdConv2d(in_chans, width, 7, 2, padding, eps)
        self.norm = None if preact else GroupNormAct(width)
        self.pool_mode = pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if self.norm is not None:
            x = self.norm(x)
        if self.pool_mode == "fixed":  # BiT: zero padding (the input is not rectified), then an unpadded pool
            return F.max_pool2d(F.pad(x, (1, 1, 1, 1)), 3, 2)
        if self.pool_mode == "same":
            return F.max_pool2d(_pad_same(x, 3, 2, value=float("-inf")), 3, 2)
        return F.max_pool2d(x, 3, 2, padding=1)


class ResNetStage(nn.Module):
    def __init__(self, blocks: list[nn.Module]):
        super().__init__()
        self.blocks = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(x)


class ResNetV2Backbone(nn.Module):
    """Stem and bottleneck stages; ``forward`` returns the last stage's feature map ``[B, num_features, h, w]``.

    Args:
        layers: blocks per stage; stage ``i`` has ``STAGE_CHANNELS[i] * width_factor`` output channels and all but
            the first halve the resolution.
        width_factor: BiT's channel multiplier (x1, x2, x3, x4).
        in_chans: input channels.
        preact: pre-activation units (BiT) or GroupNorm after each convolution (hybrids).
        padding: ``"symmetric"`` (BiT) or TensorFlow ``"same"`` (the paper's hybrids).
        stem_pool: ``"fixed"`` (BiT), ``"same"`` or ``"symmetric"``.
        drop_path: stochastic depth of the last block; earlier blocks get linearly less.
        ws_eps: epsilon of the weight standardisation.
    """

    def __init__(self, *, layers: tuple[int, ...], width_factor: int = 1, in_chans: int = 3, preact: bool = True,
                 padding: str = "symmetric", stem_pool: str = "fixed", drop_path: float = 0.0, ws_eps: float = 1e-8):
        super().__init__()
        if not layers or len(layers) > len(STAGE_CHANNELS) or min(layers) < 1:
            raise ValueError(f"layers must be 1 to {len(STAGE_CHANNELS)} positive block counts, got {layers}")
        self.layers, self.width_factor, self.in_chans = tuple(layers), int(width_factor), in_chans
        self.stem_width = STEM_WIDTH * self.width_factor
        self.stem = Stem(in_chans, self.stem_width, preact, padding, stem_pool, ws_eps)
        block_cls = PreActBottleneck if preact else Bottleneck
        total = sum(self.layers)
        rates = iter([drop_path * i / max(total - 1, 1) for i in range(total)])
        self.stages = nn.Sequential()
        chans = self.stem_width
        for index, depth in enumerate(self.layers):
            out_chans = STAGE_CHANNELS[index] * self.width_factor
            stride = 1 if index == 0 else 2
            blocks = [block_cls(chans if j == 0 else out_chans, out_chans, stride if j == 0 else 1, j == 0, padding,
                                ws_eps, next(rates)) for j in range(depth)]
            self.stages.append(ResNetStage(blocks))
            chans = out_chans
        self.num_features = chans
        self.output_stride = 4 * 2 ** (len(self.layers) - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(self.stem(x))

    def feature_size(self, image_size: tuple[int, int]) -> tuple[int, int]:
        h, w = image_size
        for stride in [2, 2] + [2] * (len(self.layers) - 1):  # stem conv, stem pool, stage transitions
            h, w = conv_output_size(h, stride), conv_output_size(w, stride)
        return h, w

    def macs(self, image_size: tuple[int, int]) -> int:
        """Convolution multiply-accumulates for one image of ``image_size``, from the architecture by formula."""
        h, w = conv_output_size(image_size[0], 2), conv_output_size(image_size[1], 2)
        total = conv2d_macs(h, w, self.in_chans, self.stem_width, 7)
        h, w = conv_output_size(h, 2), conv_output_size(w, 2)
        chans = self.stem_width
        for index, depth in enumerate(self.layers):
            out_chans = STAGE_CHANNELS[index] * self.width_factor
            mid = out_chans // 4
            for j in range(depth):
                stride = 2 if index > 0 and j == 0 else 1
                oh, ow = conv_output_size(h, stride), conv_output_size(w, stride)
                total += conv2d_macs(h, w, chans, mid, 1)  # conv1 (1x1, at the input resolution)
                total += conv2d_macs(oh, ow, mid, mid, 3) + conv2d_macs(oh, ow, mid, out_chans, 1)
                if j == 0:
                    total += conv2d_macs(oh, ow, chans, out_chans, 1)  # shortcut projection
                h, w, chans = oh, ow, out_chans
        return total

    @torch.no_grad()
    def init_weights(self) -> None:
        """He-normal convolutions (fan-out), unit GroupNorms."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.GroupNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)


@dataclass
class ResNetV2Config:
    """Every hyper-parameter of a BiT ResNet-v2 classifier; ``create_model`` fills it from the name."""

    depth: int
    width_factor: int = 1
    image_size: tuple[int, int] = (224, 224)
    in_chans: int = 3
    num_classes: int = 1000
    drop_path: float = 0.0
    ws_eps: float = 1e-8  # weight-standardisation epsilon of BiT's released models
    mean: tuple[float, ...] = (0.5, 0.5, 0.5)  # BiT maps pixels to [-1, 1]
    std: tuple[float, ...] = (0.5, 0.5, 0.5)
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        self.image_size = _pair(self.image_size)
        self.mean, self.std = tuple(self.mean), tuple(self.std)
        if self.depth not in RESNET_LAYERS:
            raise ValueError(f"unknown ResNet depth {self.depth}; known: {sorted(RESNET_LAYERS)}")
        if self.width_factor < 1:
            raise ValueError(f"width_factor must be a positive integer, got {self.width_factor}")
        if len(self.mean) != self.in_chans or len(self.std) != self.in_chans:
            raise ValueError(f"mean/std need {self.in_chans} values (in_chans), got {self.mean} / {self.std}")
        if not 0.0 <= self.drop_path < 1.0:
            raise ValueError(f"drop_path must be in [0, 1), got {self.drop_path}")

    @property
    def layers(self) -> tuple[int, ...]:
        return RESNET_LAYERS[self.depth]

    @property
    def embed_stride(self) -> int:
        """Pixels per output cell; also the patch size of patch input (see :mod:`vit_model.image_input`)."""
        return 32

    @property
    def grid(self) -> tuple[int, int]:
        return self.image_size[0] // self.embed_stride, self.image_size[1] // self.embed_stride


class ResNetV2(ResNetV2Backbone):
    """BiT classifier: backbone, a final GroupNorm + ReLU, global average pooling and a linear head."""

    def __init__(self, config: ResNetV2Config):
        super().__init__(layers=config.layers, width_factor=config.width_factor, in_chans=config.in_chans,
                         preact=True, padding="symmetric", stem_pool="fixed", drop_path=config.drop_path,
                         ws_eps=config.ws_eps)
        self.config = config
        self.norm = GroupNormAct(self.num_features)
        self.head = nn.Linear(self.num_features, config.num_classes) if config.num_classes > 0 else nn.Identity()
        self.init_weights()

    @torch.no_grad()
    def init_weights(self) -> None:
        """He-normal convolutions, unit norms, zero classifier (logits start at zero, as BiT fine-tunes)."""
        super().init_weights()
        if isinstance(self.head, nn.Linear):
            nn.init.zeros_(self.head.weight)
            nn.init.zeros_(self.head.bias)

    def no_weight_decay(self) -> set[str]:
        """GroupNorm scales/offsets and the classifier bias."""
        return {name for name, p in self.named_parameters() if p.ndim <= 1}

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Images or patches to the final feature map ``[B, num_features, h, w]``."""
        cfg = self.config
        x = images_from_input(x, in_chans=cfg.in_chans, mean=cfg.mean, std=cfg.std, patch_size=cfg.embed_stride,
                              grid=cfg.grid, dtype=self.stem.conv.weight.dtype)
        return self.norm(super().forward(x))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = x.mean(dim=(2, 3))
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def reset_head(self, num_classes: int) -> None:
        """Install a zero-initialised linear head for ``num_classes`` (0: no head)."""
        ref = self.norm.weight
        self.config.num_classes = num_classes
        self.head = nn.Linear(self.num_features, num_classes, device=ref.device, dtype=ref.dtype) \
            if num_classes > 0 else nn.Identity()
        if isinstance(self.head, nn.Linear):
            with torch.no_grad():
                self.head.weight.zero_()
                self.head.bias.zero_()

    def set_image_size(self, image_size) -> None:
        """A CNN takes any size; this sets the size FLOPs are counted at and patch input is tiled to."""
        self.config.image_size = replace(self.config, image_size=image_size).image_size

    def forward_macs(self) -> int:
        """Multiply-accumulates of one forward pass for one image at the configured size."""
        return self.macs(self.config.image_size) + head_macs(self)


def _bit_defaults(match) -> dict:
    return {"depth": int(match["depth"] or match["alias"]), "width_factor": int(match["width"] or 1)}


register_family(
    "bit",
    r"(?:bit-r(?P<depth>\d+)x(?P<width>\d+)|resnet-(?P<alias>\d+))",
    ResNetV2Config,
    ResNetV2,
    _bit_defaults,
    ("bit-r50x1", "bit-r50x2", "bit-r50x3", "bit-r101x1", "bit-r101x3", "bit-r152x1", "bit-r152x2", "bit-r152x4",
     "resnet-50", "resnet-101", "resnet-152"),
)

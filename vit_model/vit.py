"""The Vision Transformer of Dosovitskiy et al. (2020), faithful to the paper.

Images are cut into P x P patches, each flattened and linearly embedded; a learnable class token and learnable 1D
position embeddings are added, a stack of pre-norm Transformer blocks follows, and the class token (or the mean of
the patch tokens) is classified by an MLP head with one tanh hidden layer (pre-training) or a linear head.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch
from torch import nn

from .layers import Block, init_transformer_, lecun_normal_
from .patches import patchify
from .pos_embed import resample_pos_embed


def _pair(value) -> tuple[int, int]:
    if isinstance(value, int):
        return (value, value)
    value = tuple(int(v) for v in value)
    if len(value) != 2:
        raise ValueError(f"image_size must be an int or (height, width), got {value}")
    return value


@dataclass
class ViTConfig:
    """Every hyper-parameter of a ViT. ``create_model`` fills it from a variant name plus overrides."""

    width: int
    depth: int
    mlp_dim: int
    num_heads: int
    patch_size: int
    image_size: tuple[int, int] = (224, 224)
    in_chans: int = 3
    num_classes: int = 1000
    pool: str = "token"  # "token" (class token) or "gap" (global average pooling of patch tokens)
    class_token: bool | None = None  # default: present exactly when pool == "token"
    fc_norm: bool = False  # with gap: normalise after pooling (timm/MAE) instead of before (paper)
    head: str = "linear"  # "linear" or "mlp" (one tanh hidden layer, the paper's pre-training head)
    representation_size: int | None = None  # hidden width of the mlp head; default: width
    dropout: float = 0.0
    attn_dropout: float = 0.0
    drop_path: float = 0.0
    qkv_bias: bool = True
    norm_eps: float = 1e-6
    mean: tuple[float, ...] = (0.5, 0.5, 0.5)  # how uint8 input is normalised on the device
    std: tuple[float, ...] = (0.5, 0.5, 0.5)
    extra: dict = field(default_factory=dict)  # free-form notes carried with the config (e.g. its source)

    def __post_init__(self):
        self.image_size = _pair(self.image_size)
        self.mean, self.std = tuple(self.mean), tuple(self.std)
        if self.class_token is None:
            self.class_token = self.pool == "token"
        self.validate()

    def validate(self) -> None:
        h, w = self.image_size
        if self.patch_size <= 0 or h % self.patch_size or w % self.patch_size:
            raise ValueError(f"image_size {h}x{w} is not divisible by patch_size {self.patch_size}")
        if self.width % self.num_heads:
            raise ValueError(f"width {self.width} is not divisible by num_heads {self.num_heads}")
        if self.pool not in ("token", "gap"):
            raise ValueError(f"pool must be 'token' or 'gap', got {self.pool!r}")
        if self.pool == "token" and not self.class_token:
            raise ValueError("pool='token' needs class_token=True")
        if self.head not in ("linear", "mlp"):
            raise ValueError(f"head must be 'linear' or 'mlp', got {self.head!r}")
        if len(self.mean) != self.in_chans or len(self.std) != self.in_chans:
            raise ValueError(f"mean/std need {self.in_chans} values (in_chans), got {self.mean} / {self.std}")
        for name in ("dropout", "attn_dropout", "drop_path"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")

    @property
    def grid(self) -> tuple[int, int]:
        return self.image_size[0] // self.patch_size, self.image_size[1] // self.patch_size

    @property
    def num_prefix_tokens(self) -> int:
        return int(bool(self.class_token))


def normalize_uint8(x: torch.Tensor, mean, std, dtype: torch.dtype) -> torch.Tensor:
    """uint8 pixels (channel last) to normalised floats on whatever device ``x`` lives on."""
    mean = torch.tensor(mean, device=x.device, dtype=torch.float32) * 255.0
    inv_std = 1.0 / (torch.tensor(std, device=x.device, dtype=torch.float32) * 255.0)
    return ((x.float() - mean) * inv_std).to(dtype)


class PatchEmbed(nn.Module):
    """Linear embedding of flattened patches; takes images ``[B, C, H, W]`` or patches ``[B, N, P*P*C]``.

    uint8 input is normalised here with the model's mean/std; float input is taken as already normalised. The
    weight is stored as a linear layer over the patch layout of :mod:`vit_model.patches`.
    """

    def __init__(self, cfg: ViTConfig):
        super().__init__()
        self.patch_size, self.in_chans = cfg.patch_size, cfg.in_chans
        self.grid = cfg.grid
        self.mean, self.std = cfg.mean, cfg.std
        self.proj = nn.Linear(cfg.patch_size * cfg.patch_size * cfg.in_chans, cfg.width)

    @property
    def num_patches(self) -> int:
        return self.grid[0] * self.grid[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 4:
            if x.shape[1] != self.in_chans:
                raise ValueError(f"expected {self.in_chans}-channel images [B, C, H, W], got {tuple(x.shape)}")
            size = (x.shape[2] // self.patch_size, x.shape[3] // self.patch_size)
            if size != self.grid or x.shape[2] % self.patch_size or x.shape[3] % self.patch_size:
                raise ValueError(
                    f"images of {x.shape[2]}x{x.shape[3]} do not match the model's grid {self.grid} "
                    f"of {self.patch_size}px patches; call set_image_size first"
                )
            if x.dtype == torch.uint8:
                x = x.permute(0, 2, 3, 1)  # channel last, then back, so normalisation broadcasts per channel
                x = normalize_uint8(x, self.mean, self.std, self.proj.weight.dtype).permute(0, 3, 1, 2)
            x = patchify(x, self.patch_size)
        elif x.dim() == 3:
            if x.shape[1] != self.num_patches or x.shape[2] != self.proj.in_features:
                raise ValueError(
                    f"expected patches [B, {self.num_patches}, {self.proj.in_features}], got {tuple(x.shape)}"
                )
            if x.dtype == torch.uint8:
                b, n, d = x.shape
                x = x.view(b, n, d // self.in_chans, self.in_chans)
                x = normalize_uint8(x, self.mean, self.std, self.proj.weight.dtype).view(b, n, d)
        else:
            raise ValueError(f"expected images [B, C, H, W] or patches [B, N, P*P*C], got {tuple(x.shape)}")
        return self.proj(x.to(self.proj.weight.dtype))

    def init_weights(self) -> None:
        lecun_normal_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)


class VisionTransformer(nn.Module):
    """ViT classifier. ``forward = forward_head(forward_features(x))``.

    Args:
        config: all hyper-parameters (see :class:`ViTConfig`).
        patch_embed: optional replacement token source with the :class:`PatchEmbed` interface (``grid``,
            ``num_patches``, ``init_weights``), used by the hybrid models.
    """

    def __init__(self, config: ViTConfig, patch_embed: nn.Module | None = None):
        super().__init__()
        self.config = cfg = config
        self.patch_embed = patch_embed if patch_embed is not None else PatchEmbed(cfg)
        self.num_prefix_tokens = cfg.num_prefix_tokens
        self.cls_token = nn.Parameter(torch.zeros(1, 1, cfg.width)) if cfg.class_token else None
        self.pos_embed = nn.Parameter(torch.zeros(1, self.patch_embed.num_patches + self.num_prefix_tokens, cfg.width))
        self.pos_drop = nn.Dropout(cfg.dropout)
        rates = [cfg.drop_path * i / max(cfg.depth - 1, 1) for i in range(cfg.depth)]  # linear stochastic depth
        self.blocks = nn.ModuleList(
            Block(cfg.width, cfg.num_heads, cfg.mlp_dim, cfg.qkv_bias, cfg.dropout, cfg.attn_dropout, rate,
                  cfg.norm_eps)
            for rate in rates
        )
        self.norm = nn.Identity() if cfg.fc_norm else nn.LayerNorm(cfg.width, eps=cfg.norm_eps)
        self.fc_norm = nn.LayerNorm(cfg.width, eps=cfg.norm_eps) if cfg.fc_norm else nn.Identity()
        self._build_head(cfg.num_classes, cfg.head, cfg.representation_size or cfg.width)
        self.init_weights()

    def _build_head(self, num_classes: int, head: str, representation_size: int) -> None:
        width = self.config.width
        if head == "mlp":
            self.pre_logits = nn.Sequential(nn.Linear(width, representation_size), nn.Tanh())
            width = representation_size
        else:
            self.pre_logits = nn.Identity()
        self.head = nn.Linear(width, num_classes) if num_classes > 0 else nn.Identity()

    @property
    def num_features(self) -> int:
        """Width of the pre-logit features (what few-shot evaluation reads)."""
        return self.head.in_features if isinstance(self.head, nn.Linear) else self.config.width

    @torch.no_grad()
    def init_weights(self) -> None:
        """(Re-)initialise every parameter; call after materialising a model built on the meta device."""
        self.patch_embed.init_weights()
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        if self.cls_token is not None:
            nn.init.zeros_(self.cls_token)
        init_transformer_(self.blocks)
        for norm in (self.norm, self.fc_norm):
            if isinstance(norm, nn.LayerNorm):
                nn.init.ones_(norm.weight)
                nn.init.zeros_(norm.bias)
        if isinstance(self.pre_logits, nn.Sequential):
            lecun_normal_(self.pre_logits[0].weight)
            nn.init.zeros_(self.pre_logits[0].bias)
        if isinstance(self.head, nn.Linear):
            nn.init.zeros_(self.head.weight)  # as in the paper's code: the classifier starts at zero logits
            nn.init.zeros_(self.head.bias)

    def no_weight_decay(self) -> set[str]:
        """Parameter names that get no weight decay: position embedding, class token, norms and biases."""
        return {name for name, p in self.named_parameters() if p.ndim <= 1 or name in ("pos_embed", "cls_token")}

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Images or patches to the normalised token sequence ``[B, prefix + N, D]``."""
        return self.encode(self.patch_embed(x))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Patch embeddings ``[B, N, D]`` to the normalised token sequence (class token, positions, blocks, norm).

        Split from :meth:`forward_features` so that objectives which alter embeddings (masked patch prediction)
        reuse the encoder as it is.
        """
        if self.cls_token is not None:
            x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1).to(x.dtype), x], dim=1)
        x = self.pos_drop(x + self.pos_embed.to(x.dtype))
        for block in self.blocks:
            x = block(x)
        return self.norm(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Pool the tokens and classify; ``pre_logits=True`` returns the features before the last linear layer."""
        if self.config.pool == "token":
            x = x[:, 0]
        else:
            x = x[:, self.num_prefix_tokens:].mean(dim=1)
        x = self.pre_logits(self.fc_norm(x))
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def reset_head(self, num_classes: int) -> None:
        """Drop the pre-training head and install a zero-initialised linear head (the paper's fine-tuning set-up)."""
        ref = self.pos_embed
        self.config.num_classes, self.config.head, self.config.representation_size = num_classes, "linear", None
        self._build_head(num_classes, "linear", self.config.width)
        self.pre_logits.to(ref.device)
        if isinstance(self.head, nn.Linear):
            self.head.to(device=ref.device, dtype=ref.dtype)
            with torch.no_grad():
                self.head.weight.zero_()
                self.head.bias.zero_()

    def set_image_size(self, image_size, interpolation: str = "bicubic") -> None:
        """Change the input resolution, keeping the patch size and resampling position embeddings in 2D."""
        new_size = replace(self.config, image_size=image_size).image_size  # validates divisibility
        old_grid = tuple(self.patch_embed.grid)
        if isinstance(self.patch_embed, PatchEmbed):
            self.patch_embed.grid = (new_size[0] // self.config.patch_size, new_size[1] // self.config.patch_size)
        else:
            self.patch_embed.set_image_size(new_size)
        with torch.no_grad():
            resampled = resample_pos_embed(
                self.pos_embed.data, self.patch_embed.grid, old_grid, self.num_prefix_tokens, interpolation
            )
        self.pos_embed = nn.Parameter(resampled, requires_grad=self.pos_embed.requires_grad)
        self.config.image_size = new_size

    def forward_macs(self) -> int:
        """Multiply-accumulates of one forward pass for one image (matmuls only: the FLOP accounting's unit)."""
        from .flops import vit_forward_macs

        return vit_forward_macs(self)

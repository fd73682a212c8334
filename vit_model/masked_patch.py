"""Masked patch prediction, the paper's self-supervised objective (Section 4.6, Appendix B.1.2).

50% of patch embeddings are corrupted: 80% of those are replaced by a learnable [mask] embedding, 10% by a random
other patch embedding and 10% kept as they are; the model predicts each corrupted patch's 3-bit mean colour
(8 levels per channel, 512 classes for RGB) from its output token.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .vit import VisionTransformer


@dataclass(frozen=True)
class Corruption:
    ratio: float = 0.5  # share of patches corrupted
    mask: float = 0.8  # of those: replaced by the [mask] embedding
    random: float = 0.1  # of those: replaced by another patch's embedding (the rest are kept)

    def __post_init__(self):
        if not 0 < self.ratio <= 1 or self.mask < 0 or self.random < 0 or self.mask + self.random > 1:
            raise ValueError(f"corruption shares must satisfy 0<ratio<=1 and mask+random<=1, got {self}")


def mean_colour_targets(patches: torch.Tensor, channels: int = 3, bits: int = 3) -> torch.Tensor:
    """Class index of each uint8 patch's mean colour quantised to ``bits`` per channel.

    ``patches`` is ``[B, N, P*P*C]`` uint8 in the layout of :mod:`vit_model.patches`; the class is the channels'
    levels read as one base-``2**bits`` number, red most significant (512 classes for 3 bits of RGB).
    """
    if patches.dtype != torch.uint8:
        raise ValueError(f"mean colour targets need uint8 patches, got {patches.dtype}")
    b, n, d = patches.shape
    mean = patches.view(b, n, d // channels, channels).float().mean(dim=2)  # [B, N, C] in 0..255
    levels = 2**bits
    quantised = (mean * levels / 256.0).floor().clamp_(0, levels - 1).long()
    weights = levels ** torch.arange(channels - 1, -1, -1, device=patches.device)
    return (quantised * weights).sum(-1)


def corrupt_embeddings(embeddings: torch.Tensor, mask_embedding: torch.Tensor, spec: Corruption = Corruption(),
                       generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Corrupt patch embeddings ``[B, N, D]``; returns the new embeddings and the boolean ``[B, N]`` corrupted mask.

    Exactly ``round(ratio * N)`` patches per image are corrupted; each of them is independently masked, swapped for
    a random other patch's embedding from the batch, or kept, with the shares of ``spec``.
    """
    b, n, d = embeddings.shape
    device = embeddings.device
    count = max(1, round(spec.ratio * n))
    order = torch.rand(b, n, generator=generator, device=device).argsort(dim=1)
    corrupted = torch.zeros(b, n, dtype=torch.bool, device=device)
    corrupted.scatter_(1, order[:, :count], True)
    action = torch.rand(b, n, generator=generator, device=device)
    use_mask = corrupted & (action < spec.mask)
    use_random = corrupted & (action >= spec.mask) & (action < spec.mask + spec.random)
    flat = embeddings.reshape(b * n, d)
    source = torch.randint(b * n - 1, (b, n), generator=generator, device=device)
    own = torch.arange(b * n, device=device).view(b, n)
    source = source + (source >= own).long()  # another patch, never the patch itself
    out = torch.where(use_mask[..., None], mask_embedding.to(embeddings.dtype).expand(b, n, d), embeddings)
    out = torch.where(use_random[..., None], flat[source], out)
    return out, corrupted


class MaskedPatchPredictor(nn.Module):
    """A ViT with a [mask] embedding and a per-token colour head; ``backbone`` is the ViT to pre-train.

    ``forward(patches)`` returns the loss over corrupted patches and their prediction accuracy. The backbone's own
    head is untouched, so after pre-training the backbone is saved and fine-tuned like any other checkpoint.
    """

    def __init__(self, backbone: VisionTransformer, spec: Corruption = Corruption(), bits: int = 3):
        super().__init__()
        self.backbone, self.spec, self.bits = backbone, spec, bits
        width, channels = backbone.config.width, backbone.config.in_chans
        self.mask_embedding = nn.Parameter(torch.zeros(width))
        self.colour_head = nn.Linear(width, (2**bits) ** channels)
        self._init_own_weights()  # the backbone keeps its weights (it may be pre-trained)

    @torch.no_grad()
    def init_weights(self) -> None:
        """(Re-)initialise every parameter, the backbone's included (after materialising on the meta device)."""
        self.backbone.init_weights()
        self._init_own_weights()

    @torch.no_grad()
    def _init_own_weights(self) -> None:
        nn.init.normal_(self.mask_embedding, std=0.02)
        nn.init.zeros_(self.colour_head.weight)
        nn.init.zeros_(self.colour_head.bias)

    def no_weight_decay(self) -> set[str]:
        return {f"backbone.{n}" for n in self.backbone.no_weight_decay()} | {"mask_embedding", "colour_head.bias"}

    def forward(self, patches: torch.Tensor, generator: torch.Generator | None = None):
        if patches.dim() != 3 or patches.dtype != torch.uint8:
            raise ValueError(f"masked patch prediction takes uint8 patches [B, N, P*P*C], got {patches.dtype} "
                             f"{tuple(patches.shape)}")
        targets = mean_colour_targets(patches, self.backbone.config.in_chans, self.bits)
        embeddings = self.backbone.patch_embed(patches)
        embeddings, corrupted = corrupt_embeddings(embeddings, self.mask_embedding, self.spec, generator)
        tokens = self.backbone.encode(embeddings)[:, self.backbone.num_prefix_tokens:]
        logits = self.colour_head(tokens[corrupted])
        loss = F.cross_entropy(logits.float(), targets[corrupted])
        accuracy = (logits.argmax(-1) == targets[corrupted]).float().mean()
        return loss, accuracy

    def forward_macs(self) -> int:
        return self.backbone.forward_macs() + self.colour_head.in_features * self.colour_head.out_features

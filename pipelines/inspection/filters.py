"""Principal components of the patch-embedding filters (the paper's Figure 7, left)."""

from __future__ import annotations

import torch


def embedding_filters(weight: torch.Tensor, patch_size: int, in_chans: int,
                      num_components: int = 28) -> tuple[torch.Tensor, torch.Tensor]:
    """The first principal components of a linear patch embedding, as patches ``[K, P, P, C]``.

    ``weight`` is ``[D, P*P*C]`` (``patch_embed.proj.weight``; inputs flattened as ``[P, P, C]``, see
    :mod:`vit_model.patches`). The D filters are the observations: they are centred and their covariance over the
    ``P*P*C`` pixel values is decomposed. Returns the components (unit norm, sign arbitrary) and the fraction of
    variance each explains.
    """
    features = patch_size * patch_size * in_chans
    if weight.dim() != 2 or weight.shape[1] != features:
        raise ValueError(f"patch-embedding weight must be [D, {features}] for {patch_size}px patches with "
                         f"{in_chans} channels, got {tuple(weight.shape)}")
    w = weight.detach().double()
    w = w - w.mean(dim=0, keepdim=True)
    _, singular, components = torch.linalg.svd(w, full_matrices=False)
    variance = singular**2
    k = min(num_components, components.shape[0])
    explained = variance[:k] / variance.sum().clamp_min(1e-30)
    return components[:k].reshape(k, patch_size, patch_size, in_chans).float(), explained.float()

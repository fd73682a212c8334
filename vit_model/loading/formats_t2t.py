"""The official T2T-ViT checkpoints (yitu-opensource/T2T-ViT ``*.pth.tar``; the EMA weights when present).

The authors' keys differ from ours only inside the T2T module: ``tokens_to_token.`` is our ``patch_embed.``, the
Transformer token layer's ``attn.qkv``/``attn.proj`` sit directly on the layer, the Performer token layer's MLP is
``mlp.0``/``mlp.2`` (ours ``mlp.fc1``/``mlp.fc2``) and its random features ``w`` are ``random_features``.
The released weights are evaluated by the authors with the default attention scale (head_dim ** -0.5), which is
ours. Whether a checkpoint has a Performer or a Transformer T2T module is fixed by the model name
(``t2t-vit-14`` or ``t2t-vit_t-14``); a mismatch is reported key by key.
"""

from __future__ import annotations

from .formats import Converted, Format, head_config, register_format, rename

_RULES = [
    (r"^tokens_to_token\.attention(\d)\.attn\.(qkv|proj)\.", r"patch_embed.attention\1.\2."),
    (r"^tokens_to_token\.attention(\d)\.mlp\.0\.", r"patch_embed.attention\1.mlp.fc1."),
    (r"^tokens_to_token\.attention(\d)\.mlp\.2\.", r"patch_embed.attention\1.mlp.fc2."),
    (r"^tokens_to_token\.attention(\d)\.w$", r"patch_embed.attention\1.random_features"),
    (r"^tokens_to_token\.", "patch_embed."),
]


def _convert_t2t(state: dict) -> Converted:
    out = rename(state, _RULES)
    return Converted(out, head_config(out))


register_format(Format(
    "t2t-vit-official", ("t2t",),
    lambda s: "tokens_to_token.project.weight" in s,
    _convert_t2t,
))

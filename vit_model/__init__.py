"""vit_model: the Vision Transformer family in plain PyTorch (no Ray, no torch.distributed, no MLflow).

    >>> import vit_model
    >>> model = vit_model.create_model("vit-ti/4", num_classes=10, image_size=32)
"""

from . import variants  # noqa: F401, I001  (registers the ViT family first: it leads the list of names)
from . import hybrid, resnetv2, t2t  # noqa: F401  (then BiT ResNets, hybrids and T2T-ViT)
from .flops import forward_flops, forward_macs, training_flops
from .hybrid import HybridConfig
from .loading import load_pretrained
from .loading.read import CheckpointError
from .patches import patchify, patchify_numpy, unpatchify, unpatchify_numpy
from .pos_embed import resample_pos_embed
from .registry import create_model, family_of, list_families, list_models, model_config
from .resnetv2 import ResNetV2, ResNetV2Config
from .t2t import T2TConfig, T2TViT
from .variants import VIT_SIZES, decode_vit_variant
from .vit import VisionTransformer, ViTConfig
from .weights import load_model, save_model

__all__ = [
    "CheckpointError", "HybridConfig", "ResNetV2", "ResNetV2Config", "T2TConfig", "T2TViT", "VIT_SIZES",
    "ViTConfig", "VisionTransformer", "create_model", "decode_vit_variant",
    "family_of", "forward_flops", "forward_macs", "list_families", "list_models", "load_model", "load_pretrained",
    "model_config", "patchify", "patchify_numpy", "resample_pos_embed", "save_model", "training_flops",
    "unpatchify", "unpatchify_numpy",
]

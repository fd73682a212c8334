"""``load_pretrained(model_name, path)``: published checkpoints in the formats people have, into our models.

Each format is a converter (``formats.py``) that recognises a state dict by its keys and renames/reshapes it to
ours, returning what the checkpoint says about the model (classes, head, grid). Reading never unpickles code.
"""

from . import formats_google, formats_hf, formats_t2t, formats_timm_resnet  # noqa: F401  (register the formats)
from .api import load_pretrained
from .formats import register_format
from .read import read_state_dict

__all__ = ["load_pretrained", "read_state_dict", "register_format"]

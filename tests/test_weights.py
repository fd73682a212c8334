"""Our safetensors + JSON format, and load_pretrained's format detection and errors."""

import json

import pytest
import torch

import vit_model
from vit_model import CheckpointError


def test_save_and_load_round_trip(tmp_path):
    model = vit_model.create_model("vit-pi/4", num_classes=6, image_size=(32, 48), head="mlp", pool="gap").eval()
    torch.nn.init.normal_(model.head.weight)
    path = vit_model.save_model(model, tmp_path / "run")
    assert path.name == "model.safetensors"
    record = json.loads((tmp_path / "run" / "config.json").read_text())
    assert record["model"] == "vit-pi/4" and record["family"] == "vit"
    loaded = vit_model.load_model(tmp_path / "run").eval()
    x = torch.randint(0, 256, (2, 3, 32, 48), dtype=torch.uint8)
    assert torch.equal(model(x), loaded(x))
    assert loaded.config == model.config


def test_config_travels_inside_safetensors_metadata(tmp_path):
    model = vit_model.create_model("vit-pi/8", num_classes=2, image_size=32)
    vit_model.save_model(model, tmp_path)
    (tmp_path / "config.json").unlink()
    assert vit_model.load_model(tmp_path / "model.safetensors").config == model.config


def test_load_pretrained_reads_our_format_at_new_resolution(tmp_path):
    model = vit_model.create_model("vit-pi/4", num_classes=6, image_size=32)
    vit_model.save_model(model, tmp_path)
    bigger = vit_model.load_pretrained("vit-pi/4", tmp_path, image_size=64)
    assert bigger.config.num_classes == 6 and bigger.pos_embed.shape[1] == 1 + 256


def _timm_state(tmp_path, **kwargs):
    import timm

    peer = timm.models.vision_transformer.VisionTransformer(
        img_size=32, patch_size=4, embed_dim=64, depth=4, num_heads=1, mlp_ratio=4, num_classes=3, **kwargs)
    return peer.state_dict()


def test_missing_key_is_named(tmp_path):
    state = _timm_state(tmp_path)
    del state["blocks.2.mlp.fc1.bias"]
    torch.save(state, tmp_path / "ckpt.pth")
    with pytest.raises(CheckpointError, match=r"missing keys \['blocks.2.mlp.fc1.bias'\]"):
        vit_model.load_pretrained("vit-pi/4", tmp_path / "ckpt.pth")


def test_extra_key_is_named(tmp_path):
    state = _timm_state(tmp_path)
    state["blocks.0.attn.q_norm.weight"] = torch.ones(64)
    torch.save(state, tmp_path / "ckpt.pth")
    with pytest.raises(CheckpointError, match=r"unexpected keys \['blocks.0.attn.q_norm.weight'\]"):
        vit_model.load_pretrained("vit-pi/4", tmp_path / "ckpt.pth")


def test_wrong_architecture_names_shapes(tmp_path):
    torch.save(_timm_state(tmp_path), tmp_path / "ckpt.pth")
    with pytest.raises(CheckpointError, match=r"ckpt.pth does not fit vit-mu/4.*blocks.0.attn.qkv.weight"):
        vit_model.load_pretrained("vit-mu/4", tmp_path / "ckpt.pth")


def test_not_a_checkpoint_names_the_file(tmp_path):
    path = tmp_path / "notes.pth"
    path.write_text("this is not a checkpoint")
    with pytest.raises(CheckpointError, match="notes.pth: not a readable checkpoint"):
        vit_model.load_pretrained("vit-pi/4", path)
    with pytest.raises(CheckpointError, match="no such checkpoint file"):
        vit_model.load_pretrained("vit-pi/4", tmp_path / "absent.pth")


class Exploit:
    def __reduce__(self):
        import os

        return (os.system, ("echo pwned > /dev/null",))


def test_pickled_code_is_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"pos_embed": torch.zeros(1), "payload": Exploit()}, path)
    with pytest.raises(CheckpointError, match="evil.pth: not a readable checkpoint"):
        vit_model.load_pretrained("vit-pi/4", path)


def test_nested_training_checkpoint_and_num_classes_from_head(tmp_path):
    torch.save({"model": _timm_state(tmp_path), "epoch": 3}, tmp_path / "train.pth")
    model = vit_model.load_pretrained("vit-pi/4", tmp_path / "train.pth")
    assert model.config.num_classes == 3 and model.config.image_size == (32, 32)

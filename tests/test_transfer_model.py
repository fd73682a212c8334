"""The fine-tuning model-building path: checkpoints of every kind we write load as their backbone, the new head
starts at exactly zero logits, and the resolution changes keep the patch size with the expected sequence lengths."""

import json

import pytest
import torch
import torch.distributed.checkpoint as dcp
import yaml

import vit_model
from pipelines.train.config import load_config
from pipelines.transfer.checkpoints import architecture_overrides, checkpoint_dir, load_source_model, read_record
from pipelines.transfer.initial_weights import adapt_for_finetuning, initial_state
from vit_model.masked_patch import MaskedPatchPredictor


def _pretrained(name="vit-pi/4", image_size=32, num_classes=10) -> torch.nn.Module:
    model = vit_model.create_model(name, num_classes=num_classes, image_size=image_size, head="mlp")
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)  # a head that is far from zero, as after pre-training
    return model


def _finetune_config(checkpoint, *, num_classes=2, image_size=64, extra=()):
    cfg = load_config(None, [f"data.num_classes={num_classes}", f"data.image_size={image_size}",
                             f"init.checkpoint={checkpoint}", *extra])
    record = read_record(str(checkpoint), None)
    return cfg.replace(architecture_overrides(record, reset_head=True)) if record else cfg


def _finetune_model(cfg):
    """What every rank builds (the config's architecture) with what rank 0 loads into it."""
    from pipelines.train.config import model_options

    model = vit_model.create_model(cfg.model.name, num_classes=cfg.data.num_classes, image_size=cfg.data.image_size,
                                   **model_options(cfg))
    model.load_state_dict(initial_state(cfg, num_classes=cfg.data.num_classes, tracking_uri=None), strict=True)
    return model


def test_head_starts_at_exactly_zero_logits_and_the_backbone_is_kept(tmp_path):
    source = _pretrained()
    vit_model.save_model(source, tmp_path / "export")
    cfg = _finetune_config(tmp_path / "export")
    assert (cfg.model.name, cfg.model.head, cfg.model.options) == ("vit-pi/4", "linear", {})
    model = _finetune_model(cfg)
    logits = model(torch.randint(0, 256, (4, 3, 64, 64), dtype=torch.uint8))
    assert logits.shape == (4, 2) and torch.equal(logits, torch.zeros_like(logits))
    assert torch.equal(model.blocks[2].mlp.fc1.weight, source.blocks[2].mlp.fc1.weight)
    assert torch.equal(model.pos_embed[:, 0], source.pos_embed[:, 0])  # class token position kept


@pytest.mark.parametrize(("name", "old", "new"), [("vit-pi/4", 32, 64), ("vit-ti/16", 224, 384)])
def test_resolution_change_gives_the_expected_sequence_length(tmp_path, name, old, new):
    vit_model.save_model(_pretrained(name, old), tmp_path / "export")
    model = _finetune_model(_finetune_config(tmp_path / "export", image_size=new))
    patch = model.config.patch_size
    assert patch == int(name.split("/")[1])
    expected = 1 + (new // patch) ** 2  # 1 + 256 for 32->64 at 4 px; 1 + 576 for 224->384 at 16 px
    assert model.pos_embed.shape[1] == expected
    assert model.forward_features(torch.zeros(1, 3, new, new)).shape[1] == expected


def test_reset_head_false_keeps_the_head_or_says_why_not(tmp_path):
    source = _pretrained()
    vit_model.save_model(source, tmp_path / "export")
    kept = adapt_for_finetuning(vit_model.load_model(tmp_path / "export"), num_classes=10, image_size=32,
                                reset_head=False)
    assert torch.equal(kept.head.weight, source.head.weight)
    with pytest.raises(ValueError, match="init.reset_head"):
        adapt_for_finetuning(vit_model.load_model(tmp_path / "export"), num_classes=2, image_size=32,
                             reset_head=False)


def _write_sharded_checkpoint(directory, module, run_config):
    """The layout of pipelines.train.checkpointing without an export: DCP shards + run config + train state."""
    dcp.save({"train": {"model": module.state_dict()}}, checkpoint_id=str(directory))
    (directory / "run_config.yaml").write_text(yaml.safe_dump(run_config))
    (directory / "train_state.json").write_text(json.dumps({"step": 5}))


@pytest.mark.filterwarnings("ignore:torch.distributed is disabled")
def test_masked_patch_checkpoint_loads_its_backbone_and_drops_the_colour_head(tmp_path):
    backbone = _pretrained()
    mpp = MaskedPatchPredictor(backbone)
    run = load_config(None, ["data.num_classes=10", "objective=masked_patch", "model.name=vit-pi/4",
                             "model.head=mlp"]).to_dict()
    step = tmp_path / "run" / "step-00000005"
    step.mkdir(parents=True)
    _write_sharded_checkpoint(step, mpp, run)
    assert checkpoint_dir(tmp_path / "run") == step  # a run directory means its newest checkpoint
    loaded = load_source_model(tmp_path / "run", model_name="unused", options={})
    assert set(loaded.state_dict()) == set(backbone.state_dict())
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in backbone.state_dict().items())
    model = _finetune_model(_finetune_config(tmp_path / "run"))
    assert torch.equal(model(torch.zeros(2, 3, 64, 64)), torch.zeros(2, 2))


def test_a_foreign_checkpoint_uses_model_name(tmp_path):
    timm = pytest.importorskip("timm")
    peer = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=5)
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in peer.state_dict().items()}, str(tmp_path / "timm.safetensors"))
    cfg = _finetune_config(tmp_path / "timm.safetensors", num_classes=3, image_size=384,
                           extra=["model.name=vit-ti/16"])
    assert read_record(str(tmp_path / "timm.safetensors"), None) is None
    model = _finetune_model(cfg)
    assert model.pos_embed.shape[1] == 1 + 24 * 24
    assert torch.equal(model.blocks[0].attn.proj.weight, peer.blocks[0].attn.proj.weight)
    assert torch.equal(model(torch.zeros(1, 3, 384, 384)), torch.zeros(1, 3))


def test_unknown_checkpoint_is_an_error_naming_the_field(tmp_path):
    from pipelines.transfer.checkpoints import locate

    with pytest.raises(ValueError, match="init.checkpoint"):
        locate(str(tmp_path / "missing"))

"""Checkpoint formats: Google .npz (ViT, hybrid, BiT) against timm's own npz loaders, Hugging Face against
``transformers``, and the errors for checkpoints that do not fit."""

import os
import pickle
import shutil
from functools import partial

import numpy as np
import pytest
import timm
import torch
from timm.layers import HybridEmbed, StdConv2dSame
from timm.layers import resample_abs_pos_embed as timm_resample
from timm.models.resnetv2 import ResNetV2 as TimmResNetV2
from timm.models.vision_transformer import VisionTransformer as TimmViT
from timm.models.vision_transformer import _load_weights as timm_load_vit_npz

import vit_model
from vit_model import CheckpointError


def _randomise(model: torch.nn.Module) -> torch.nn.Module:
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.05)
    return model.eval()


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().float().numpy().copy()


def _hwio(conv_weight: torch.Tensor) -> np.ndarray:
    return _np(conv_weight.permute(2, 3, 1, 0))


# --- Google's layout, written from a timm model (the inverse of timm's npz loader) --------------------------------

def _google_vit_weights(model: TimmViT, naming: str = "original") -> dict:
    """``naming``: the original repository's, big_vision's, or big_vision's with scanned (stacked) blocks."""
    big_vision = naming != "original"
    ln2, mha, mlp = ("LayerNorm_1", "MultiHeadDotProductAttention_0", "MlpBlock_0") if big_vision else \
        ("LayerNorm_2", "MultiHeadDotProductAttention_1", "MlpBlock_3")
    w = {"embedding/kernel": _hwio(model.patch_embed.proj.weight), "embedding/bias": _np(model.patch_embed.proj.bias),
         "Transformer/encoder_norm/scale": _np(model.norm.weight),
         "Transformer/encoder_norm/bias": _np(model.norm.bias)}
    w["pos_embedding" if big_vision else "Transformer/posembed_input/pos_embedding"] = _np(model.pos_embed)
    if model.cls_token is not None:
        w["cls"] = _np(model.cls_token)
    if isinstance(model.head, torch.nn.Linear):
        w["head/kernel"], w["head/bias"] = _np(model.head.weight.t()), _np(model.head.bias)
    blocks = []
    for blk in model.blocks:
        d = blk.attn.qkv.in_features
        heads = blk.attn.num_heads
        b = {"LayerNorm_0/scale": _np(blk.norm1.weight), "LayerNorm_0/bias": _np(blk.norm1.bias),
             f"{ln2}/scale": _np(blk.norm2.weight), f"{ln2}/bias": _np(blk.norm2.bias),
             f"{mha}/out/kernel": _np(blk.attn.proj.weight.t().reshape(heads, d // heads, d)),
             f"{mha}/out/bias": _np(blk.attn.proj.bias)}
        for which, weight, bias in zip(("query", "key", "value"), blk.attn.qkv.weight.chunk(3),
                                       blk.attn.qkv.bias.chunk(3)):
            b[f"{mha}/{which}/kernel"] = _np(weight.t().reshape(d, heads, d // heads))
            b[f"{mha}/{which}/bias"] = _np(bias.reshape(heads, d // heads))
        for r, fc in enumerate((blk.mlp.fc1, blk.mlp.fc2)):
            b[f"{mlp}/Dense_{r}/kernel"], b[f"{mlp}/Dense_{r}/bias"] = _np(fc.weight.t()), _np(fc.bias)
        blocks.append(b)
    if naming == "scanned":
        for key in blocks[0]:
            w[f"Transformer/encoderblock/{key}"] = np.stack([b[key] for b in blocks])
    else:
        for i, b in enumerate(blocks):
            w.update({f"Transformer/encoderblock_{i}/{k}": v for k, v in b.items()})
    backbone = getattr(model.patch_embed, "backbone", None)
    if backbone is not None:  # hybrid: the ResNet, units numbered from 1
        w["conv_root/kernel"] = _hwio(backbone.stem.conv.weight)
        w["gn_root/scale"], w["gn_root/bias"] = _np(backbone.stem.norm.weight), _np(backbone.stem.norm.bias)
        for i, stage in enumerate(backbone.stages):
            for j, block in enumerate(stage.blocks):
                p = f"block{i + 1}/unit{j + 1}/"
                for r in (1, 2, 3):
                    w[f"{p}conv{r}/kernel"] = _hwio(getattr(block, f"conv{r}").weight)
                    norm = getattr(block, f"norm{r}")
                    w[f"{p}gn{r}/scale"], w[f"{p}gn{r}/bias"] = _np(norm.weight), _np(norm.bias)
                if block.downsample is not None:
                    w[f"{p}conv_proj/kernel"] = _hwio(block.downsample.conv.weight)
                    w[f"{p}gn_proj/scale"] = _np(block.downsample.norm.weight)
                    w[f"{p}gn_proj/bias"] = _np(block.downsample.norm.bias)
    prefix = "params/" if big_vision else ""
    return {prefix + k: v for k, v in w.items()}


def _small_timm_vit(**kwargs) -> TimmViT:
    """The shape of our ``vit-pi/4`` (width 64, depth 4, one head, MLP 256) at 32 px."""
    args = dict(img_size=32, patch_size=4, embed_dim=64, depth=4, num_heads=1, mlp_ratio=4, num_classes=5)
    return _randomise(TimmViT(**{**args, **kwargs}))


def _timm_from_npz(path, **kwargs) -> TimmViT:
    model = _small_timm_vit(**kwargs)
    timm_load_vit_npz(model, str(path))
    return model.eval()


@pytest.mark.parametrize("naming", ["original", "big_vision", "scanned"])
def test_google_vit_npz_matches_timms_npz_loader(naming, tmp_path):
    path = tmp_path / "ViT-pi_4.npz"
    np.savez(path, **_google_vit_weights(_small_timm_vit(), naming))
    reference = _timm_from_npz(path)  # a fresh, differently initialised timm model, filled by timm's loader
    ours = vit_model.load_pretrained("vit-pi/4", path).eval()
    assert ours.config.image_size == (32, 32) and ours.config.num_classes == 5
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert (ours(x) - reference(x)).abs().max().item() <= 1e-4


def test_google_gap_npz_without_class_token(tmp_path):
    kwargs = dict(class_token=False, global_pool="avg", fc_norm=False)  # big_vision's 'gap' head
    path = tmp_path / "gap.npz"
    np.savez(path, **_google_vit_weights(_small_timm_vit(**kwargs), "big_vision"))
    reference = _timm_from_npz(path, **kwargs)
    ours = vit_model.load_pretrained("vit-pi/4", path).eval()
    assert ours.config.pool == "gap" and ours.cls_token is None
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert (ours(x) - reference(x)).abs().max().item() <= 1e-4


def test_imagenet21k_npz_with_pre_logits_at_a_new_resolution(tmp_path):
    width, representation, classes = 64, 48, 7
    weights = _google_vit_weights(_small_timm_vit(num_classes=0))
    rng = np.random.default_rng(0)
    weights["pre_logits/kernel"] = rng.normal(0, 0.1, (width, representation)).astype(np.float32)
    weights["pre_logits/bias"] = rng.normal(0, 0.1, representation).astype(np.float32)
    weights["head/kernel"] = rng.normal(0, 0.1, (representation, classes)).astype(np.float32)
    weights["head/bias"] = rng.normal(0, 0.1, classes).astype(np.float32)
    path = tmp_path / "imagenet21k.npz"
    np.savez(path, **weights)

    reference = _timm_from_npz(path, num_classes=0, img_size=64)  # timm resamples bilinearly; we resample ...
    reference.pos_embed.data = timm_resample(torch.from_numpy(weights["Transformer/posembed_input/pos_embedding"]),
                                             (16, 16), num_prefix_tokens=1, interpolation="bicubic",
                                             antialias=False)  # ... bicubically, as the paper's fine-tuning does
    ours = vit_model.load_pretrained("vit-pi/4", path, image_size=64).eval()
    assert (ours.config.head, ours.config.representation_size, ours.config.num_classes) == ("mlp", 48, 7)
    assert ours.patch_embed.grid == (16, 16)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        feats = torch.tanh(reference(x) @ torch.from_numpy(weights["pre_logits/kernel"])
                           + torch.from_numpy(weights["pre_logits/bias"]))
        logits = feats @ torch.from_numpy(weights["head/kernel"]) + torch.from_numpy(weights["head/bias"])
        assert (ours.forward_head(ours.forward_features(x), pre_logits=True) - feats).abs().max().item() <= 1e-4
        assert (ours(x) - logits).abs().max().item() <= 1e-4


def test_google_hybrid_npz_matches_timms_npz_loader(tmp_path):
    def timm_hybrid():
        backbone = TimmResNetV2(layers=(1, 1, 1), num_classes=0, global_pool="", preact=False, stem_type="same",
                                conv_layer=partial(StdConv2dSame, eps=1e-8))
        return _randomise(TimmViT(img_size=64, patch_size=1, embed_dim=64, depth=2, num_heads=2, num_classes=5,
                                  embed_layer=partial(HybridEmbed, backbone=backbone)))

    path = tmp_path / "R50+ViT.npz"
    np.savez(path, **_google_vit_weights(timm_hybrid()))
    reference = timm_hybrid()
    timm_load_vit_npz(reference, str(path))
    ours = vit_model.load_pretrained("hybrid-r50+vit-pi/16", path, backbone_layers=(1, 1, 1), depth=2,
                                     num_heads=2).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert (ours(x) - reference(x)).abs().max().item() <= 1e-4


def _google_bit_weights(model: TimmResNetV2) -> dict:
    w = {"root_block/standardized_conv2d/kernel": _hwio(model.stem.conv.weight),
         "group_norm/gamma": _np(model.norm.weight), "group_norm/beta": _np(model.norm.bias),
         "head/conv2d/kernel": _hwio(model.head.fc.weight), "head/conv2d/bias": _np(model.head.fc.bias)}
    for i, stage in enumerate(model.stages):
        for j, block in enumerate(stage.blocks):
            p = f"block{i + 1}/unit{j + 1:02d}/"
            for letter, r in (("a", 1), ("b", 2), ("c", 3)):
                w[f"{p}{letter}/standardized_conv2d/kernel"] = _hwio(getattr(block, f"conv{r}").weight)
                w[f"{p}{letter}/group_norm/gamma"] = _np(getattr(block, f"norm{r}").weight)
                w[f"{p}{letter}/group_norm/beta"] = _np(getattr(block, f"norm{r}").bias)
            if block.downsample is not None:
                w[f"{p}a/proj/standardized_conv2d/kernel"] = _hwio(block.downsample.conv.weight)
    return {f"resnet/{k}": v for k, v in w.items()}


def test_google_bit_npz_matches_timms_npz_loader(tmp_path):
    path = tmp_path / "BiT-M-R50x1.npz"
    np.savez(path, **_google_bit_weights(_randomise(timm.create_model("resnetv2_50x1_bit", num_classes=9))))
    reference = _randomise(timm.create_model("resnetv2_50x1_bit", num_classes=9))
    reference.load_pretrained(str(path))
    ours = vit_model.load_pretrained("bit-r50x1", path).eval()
    assert ours.config.num_classes == 9
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert (ours(x) - reference(x)).abs().max().item() <= 1e-4


# --- Hugging Face -----------------------------------------------------------------------------------------------

transformers = pytest.importorskip("transformers")


def _hf_vit(pooler: bool = False):
    config = transformers.ViTConfig(image_size=32, patch_size=4, hidden_size=64, num_hidden_layers=4,
                                    num_attention_heads=1, intermediate_size=256, num_labels=5)
    model = transformers.ViTModel(config, add_pooling_layer=True) if pooler else \
        transformers.ViTForImageClassification(config)
    return _randomise(model)


def test_huggingface_safetensors_and_bin_match_transformers(tmp_path):
    hf = _hf_vit()
    hf.save_pretrained(tmp_path / "hf")
    weights = tmp_path / "weights"
    weights.mkdir()
    shutil.copy(tmp_path / "hf" / "model.safetensors", weights / "model.safetensors")
    torch.save(hf.state_dict(), tmp_path / "pytorch_model.bin")  # transformers 5's in-memory names
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = hf(pixel_values=x).logits
        for path in (weights / "model.safetensors", tmp_path / "pytorch_model.bin"):
            ours = vit_model.load_pretrained("vit-pi/4", path).eval()
            assert ours.config.norm_eps == 1e-12 and ours.config.num_classes == 5
            assert (ours(x) - expected).abs().max().item() <= 1e-4


def test_huggingface_save_pretrained_directory(tmp_path):
    hf = _hf_vit()
    hf.save_pretrained(tmp_path / "hf")
    ours = vit_model.load_pretrained("vit-pi/4", tmp_path / "hf").eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert (ours(x) - hf(pixel_values=x).logits).abs().max().item() <= 1e-4


def test_huggingface_vitmodel_pooler_is_the_pre_logits_head(tmp_path):
    hf = _hf_vit(pooler=True)
    torch.save(hf.state_dict(), tmp_path / "vit_in21k.bin")
    ours = vit_model.load_pretrained("vit-pi/4", tmp_path / "vit_in21k.bin").eval()
    assert (ours.config.head, ours.config.num_classes) == ("mlp", 0)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert (ours(x) - hf(pixel_values=x).pooler_output).abs().max().item() <= 1e-4


# --- checkpoints that do not fit --------------------------------------------------------------------------------

def _save(state: dict, path) -> str:
    torch.save(state, path)
    return str(path)


@pytest.fixture(scope="module")
def small_states():
    """State dicts in each family's peer layout, for models small enough to save quickly."""
    backbone = TimmResNetV2(layers=(1, 1, 1), num_classes=0, global_pool="", preact=False, stem_type="same",
                            conv_layer=partial(StdConv2dSame, eps=1e-8))
    hybrid = TimmViT(img_size=32, patch_size=1, embed_dim=64, depth=1, num_heads=1, num_classes=5,
                     embed_layer=partial(HybridEmbed, backbone=backbone))
    t2t = vit_model.create_model("t2t-vit-7", num_classes=5, image_size=32, depth=1)
    return {
        "vit-pi/4": ({}, _small_timm_vit().state_dict()),
        "hybrid-r50+vit-pi/16": ({"backbone_layers": (1, 1, 1), "depth": 1}, hybrid.state_dict()),
        "t2t-vit-7": ({"depth": 1}, {k.replace("patch_embed.", "tokens_to_token."): v
                                     for k, v in t2t.state_dict().items()}),
    }


@pytest.mark.parametrize("name", ["vit-pi/4", "hybrid-r50+vit-pi/16", "t2t-vit-7"])
def test_missing_extra_and_misshaped_keys_are_named(name, small_states, tmp_path):
    overrides, state = small_states[name]
    assert vit_model.load_pretrained(name, _save(state, tmp_path / "ok.pth"), **overrides) is not None
    missing = {k: v for k, v in state.items() if k != "blocks.0.norm1.weight"}
    with pytest.raises(CheckpointError, match=r"missing keys \['blocks\.0\.norm1\.weight'\]"):
        vit_model.load_pretrained(name, _save(missing, tmp_path / "missing.pth"), **overrides)
    extra = {**state, "blocks.0.attn.q_norm.weight": torch.ones(3)}
    with pytest.raises(CheckpointError, match=r"unexpected keys \['blocks\.0\.attn\.q_norm\.weight'\]"):
        vit_model.load_pretrained(name, _save(extra, tmp_path / "extra.pth"), **overrides)
    width = state["norm.bias"].shape[0]
    shaped = {**state, "norm.bias": torch.zeros(width + 1)}
    expected = rf"wrong shapes: norm\.bias: checkpoint \({width + 1},\) vs model \({width},\)"
    with pytest.raises(CheckpointError, match=expected):
        vit_model.load_pretrained(name, _save(shaped, tmp_path / "shape.pth"), **overrides)


def test_bit_missing_key_is_named(tmp_path):
    state = timm.create_model("resnetv2_50x1_bit", num_classes=3).state_dict()
    del state["stages.3.blocks.2.conv3.weight"]
    with pytest.raises(CheckpointError, match=r"missing keys \['stages\.3\.blocks\.2\.conv3\.weight'\]"):
        vit_model.load_pretrained("bit-r50x1", _save(state, tmp_path / "bit.pth"))


def test_npz_missing_query_is_named(tmp_path):
    weights = _google_vit_weights(_small_timm_vit())
    del weights["Transformer/encoderblock_2/MultiHeadDotProductAttention_1/query/kernel"]
    np.savez(tmp_path / "broken.npz", **weights)
    with pytest.raises(CheckpointError, match=r"broken\.npz.*encoderblock_2/MultiHeadDotProductAttention/query"):
        vit_model.load_pretrained("vit-pi/4", tmp_path / "broken.npz")


def test_text_file_is_one_clear_error_naming_it(tmp_path):
    path = tmp_path / "notes.pth"
    path.write_text("these are not weights\n")
    with pytest.raises(CheckpointError, match=r"notes\.pth: not a readable checkpoint"):
        vit_model.load_pretrained("bit-r50x1", path)


class _Exploit:
    def __reduce__(self):
        return (os.system, (f"touch {os.environ['EXPLOIT_MARKER']}",))


def test_malicious_pickle_is_refused_and_never_run(tmp_path, monkeypatch):
    marker = tmp_path / "pwned"
    monkeypatch.setenv("EXPLOIT_MARKER", str(marker))
    path = tmp_path / "T2T_ViT_7.pth.tar"
    with open(path, "wb") as f:
        pickle.dump({"state_dict": _Exploit()}, f, protocol=2)
    with pytest.raises(CheckpointError, match=r"T2T_ViT_7\.pth\.tar: not a readable checkpoint"):
        vit_model.load_pretrained("t2t-vit-7", path)
    assert not marker.exists()


def test_checkpoint_of_another_family_names_the_file(small_states, tmp_path):
    path = _save(small_states["t2t-vit-7"][1], tmp_path / "t2t.pth")
    with pytest.raises(CheckpointError, match=r"t2t\.pth: not a known bit checkpoint format"):
        vit_model.load_pretrained("bit-r50x1", path)

"""Masked patch prediction: corruption proportions, 3-bit colour targets on known images, and that it learns."""

import pytest
import torch

import vit_model
from vit_model.masked_patch import Corruption, MaskedPatchPredictor, corrupt_embeddings, mean_colour_targets


def test_corruption_proportions_statistically():
    b, n, d = 64, 256, 8
    emb = torch.randn(b, n, d)
    mask = torch.full((d,), 1234.0)  # recognisable
    gen = torch.Generator().manual_seed(0)
    out, corrupted = corrupt_embeddings(emb, mask, Corruption(), gen)
    assert (corrupted.sum(1) == n // 2).all()  # exactly half of each image's patches
    is_mask = (out == 1234.0).all(-1)
    changed = (out != emb).any(-1)
    is_random = changed & ~is_mask
    total = corrupted.sum().item()
    # binomial standard error with 8192 trials is ~0.45% (mask) and ~0.33% (random): allow 4 s.e.
    assert is_mask.sum().item() / total == pytest.approx(0.8, abs=0.02)
    assert is_random.sum().item() / total == pytest.approx(0.1, abs=0.015)
    assert not (changed & ~corrupted).any()  # untouched patches stay as they were
    # a random replacement is another real patch embedding of the batch, never the patch itself
    flat = emb.reshape(-1, d)
    for bi, ni in is_random.nonzero()[:50].tolist():
        matches = (flat == out[bi, ni]).all(-1).nonzero().flatten().tolist()
        assert matches and bi * n + ni not in matches


def test_mean_colour_targets_on_known_images():
    p = 4
    images = torch.zeros(1, 3, 8, 8, dtype=torch.uint8)
    images[0, :, :4, :4] = torch.tensor([255, 0, 0]).view(3, 1, 1)  # pure red -> levels (7, 0, 0)
    images[0, :, :4, 4:] = torch.tensor([31, 32, 100]).view(3, 1, 1)  # -> (0, 1, 3)
    images[0, :, 4:, :4] = 255  # white -> (7, 7, 7) = 511
    images[0, :, 4:, 4:4 + 2] = torch.tensor([0, 64, 200]).view(3, 1, 1)  # half the patch; mean (0, 32, 100)
    targets = mean_colour_targets(vit_model.patchify(images, p))
    assert targets.tolist() == [[7 * 64, 0 * 64 + 1 * 8 + 3, 511, 0 * 64 + 1 * 8 + 3]]
    assert mean_colour_targets(torch.zeros(1, 1, 48, dtype=torch.uint8)).item() == 0


def test_bad_corruption_spec_rejected():
    with pytest.raises(ValueError, match="mask\\+random<=1"):
        Corruption(mask=0.9, random=0.2)


def test_short_pretraining_lowers_the_loss():
    torch.manual_seed(0)
    backbone = vit_model.create_model("vit-pi/4", num_classes=10, image_size=16)
    model = MaskedPatchPredictor(backbone)
    # images with a few smooth colours: the mean colour of a hidden patch is predictable from its neighbours
    base = torch.randint(0, 256, (32, 3, 2, 2), dtype=torch.uint8)
    images = torch.nn.functional.interpolate(base.float(), size=16, mode="nearest").to(torch.uint8)
    patches = vit_model.patchify(images, 4)
    optim = torch.optim.AdamW(model.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(1)
    losses = []
    for _ in range(60):
        loss, _ = model(patches, gen)
        optim.zero_grad()
        loss.backward()
        optim.step()
        losses.append(loss.item())
    assert sum(losses[-5:]) / 5 < 0.7 * sum(losses[:5]) / 5

import numpy as np
import pytest
import torch

import vit_model
from vit_model import patchify, patchify_numpy, unpatchify, unpatchify_numpy


@pytest.mark.parametrize("shape,p", [((2, 3, 32, 32), 4), ((1, 3, 48, 64), 16), ((3, 1, 8, 12), 2)])
def test_patchify_round_trip_torch_and_numpy(shape, p):
    x = torch.randint(0, 256, shape, dtype=torch.uint8)
    patches = patchify(x, p)
    grid = (shape[2] // p, shape[3] // p)
    assert patches.shape == (shape[0], grid[0] * grid[1], p * p * shape[1])
    assert torch.equal(unpatchify(patches, p, grid, shape[1]), x)
    np_patches = patchify_numpy(x.numpy(), p)
    assert np.array_equal(np_patches, patches.numpy())
    assert np.array_equal(patchify_numpy(x.numpy().transpose(0, 2, 3, 1), p, channels_last=True), np_patches)
    assert np.array_equal(unpatchify_numpy(np_patches, p, grid, shape[1]), x.numpy())


def test_patch_layout_is_rows_then_columns_then_channels():
    # One 2x2 patch of a 2-channel image: flattened as [P, P, C].
    x = torch.arange(8).reshape(1, 2, 2, 2)  # [B, C, H, W]
    flat = patchify(x, 2)[0, 0]
    expected = [x[0, c, i, j].item() for i in range(2) for j in range(2) for c in range(2)]
    assert flat.tolist() == expected


def test_patches_ordered_row_major_over_grid():
    x = torch.zeros(1, 1, 4, 6)
    for gi in range(2):
        for gj in range(3):
            x[0, 0, gi * 2:(gi + 1) * 2, gj * 2:(gj + 1) * 2] = gi * 3 + gj
    assert patchify(x, 2)[0, :, 0].tolist() == [0, 1, 2, 3, 4, 5]


def test_indivisible_image_named_in_error():
    with pytest.raises(ValueError, match="30x32.*patch size 4"):
        patchify(torch.zeros(1, 3, 30, 32), 4)


def test_single_image_without_batch_axis():
    x = torch.rand(3, 8, 8)
    assert torch.equal(patchify(x, 4), patchify(x[None], 4)[0])


@pytest.mark.parametrize("name,size", [("vit-ti/4", 32), ("vit-pi/8", (32, 48))])
def test_image_and_patch_inputs_give_identical_outputs(name, size):
    model = vit_model.create_model(name, num_classes=7, image_size=size).eval()
    torch.nn.init.normal_(model.head.weight)  # a zero head would hide differences
    h, w = model.config.image_size
    images = torch.randint(0, 256, (3, 3, h, w), dtype=torch.uint8)
    p = model.config.patch_size
    with torch.no_grad():
        from_uint8_images = model(images)
        from_uint8_patches = model(patchify(images, p))
        from_numpy_patches = model(torch.from_numpy(patchify_numpy(images.numpy(), p)))
        mean = torch.tensor(model.config.mean).view(1, 3, 1, 1)
        std = torch.tensor(model.config.std).view(1, 3, 1, 1)
        normalised = (images.float() / 255 - mean) / std
        from_float_images = model(normalised)
        from_float_patches = model(patchify(normalised, p))
    assert torch.equal(from_uint8_images, from_uint8_patches)
    assert torch.equal(from_uint8_patches, from_numpy_patches)
    assert torch.equal(from_float_images, from_float_patches)
    assert torch.allclose(from_uint8_patches, from_float_patches, rtol=1e-5, atol=1e-4)


def test_wrong_patch_count_is_rejected_with_shapes():
    model = vit_model.create_model("vit-pi/4", num_classes=2, image_size=32)
    with pytest.raises(ValueError, match=r"\[B, 64, 48\]"):
        model(torch.zeros(1, 63, 48, dtype=torch.uint8))

import pytest
import torch

import vit_model
from vit_model import resample_pos_embed


def _pe(grid, prefix=1, dim=16):
    return torch.randn(1, prefix + grid[0] * grid[1], dim)


def test_same_size_is_identity():
    pe = _pe((14, 14))
    assert torch.equal(resample_pos_embed(pe, (14, 14)), pe)


@pytest.mark.parametrize("mode", ["bilinear", "bicubic"])
def test_round_trip_224_384_224_is_close(mode):
    # A smooth embedding (as learned ones are) survives up- then down-sampling.
    ys, xs = torch.meshgrid(torch.linspace(0, 1, 14), torch.linspace(0, 1, 14), indexing="ij")
    grid = torch.stack([torch.sin(2 * xs + 0.5 * k * ys) for k in range(8)], dim=-1).reshape(1, 196, 8)
    pe = torch.cat([torch.randn(1, 1, 8), grid], dim=1)
    up = resample_pos_embed(pe, (24, 24), interpolation=mode)
    assert up.shape == (1, 1 + 576, 8)
    back = resample_pos_embed(up, (14, 14), old_grid=(24, 24), interpolation=mode)
    # bilinear clamps at the borders; bicubic round-trips almost exactly
    assert (back - pe).abs().max() < {"bicubic": 0.01, "bilinear": 0.06}[mode]
    assert torch.equal(back[:, :1], pe[:, :1])


def test_class_token_untouched_and_dtype_kept():
    pe = _pe((7, 7)).to(torch.bfloat16)
    out = resample_pos_embed(pe, (10, 12))
    assert out.dtype == torch.bfloat16
    assert torch.equal(out[:, 0], pe[:, 0])


def test_non_square_grid_shapes():
    pe = _pe((14, 14))
    out = resample_pos_embed(pe, (24, 32))
    assert out.shape == (1, 1 + 24 * 32, 16)
    back = resample_pos_embed(out, (14, 14), old_grid=(24, 32))
    assert back.shape == pe.shape


def test_no_prefix_tokens():
    pe = _pe((4, 4), prefix=0)
    assert resample_pos_embed(pe, (8, 8), num_prefix_tokens=0).shape == (1, 64, 16)


def test_interpolation_matches_2d_resize_of_grid():
    # Every channel of the grid is resampled as an image: a constant stays constant, a ramp stays a ramp.
    pe = torch.cat([torch.zeros(1, 1, 2), torch.full((1, 16, 2), 3.0)], dim=1)
    assert torch.allclose(resample_pos_embed(pe, (8, 8), interpolation="bilinear")[:, 1:], torch.tensor(3.0))


def test_bad_inputs_named():
    with pytest.raises(ValueError, match="not a square grid"):
        resample_pos_embed(torch.zeros(1, 1 + 12, 4), (4, 4))
    with pytest.raises(ValueError, match="interpolation"):
        resample_pos_embed(_pe((2, 2)), (4, 4), interpolation="area")


def test_set_image_size_resamples_model_pos_embed():
    model = vit_model.create_model("vit-pi/4", num_classes=3, image_size=32)
    before = model.pos_embed.detach().clone()
    model.set_image_size(64)
    assert model.pos_embed.shape == (1, 1 + 16 * 16, 64)
    assert torch.equal(model.pos_embed[:, 0], before[:, 0])
    assert model(torch.zeros(2, 3, 64, 64)).shape == (2, 3)
    model.set_image_size((32, 48))
    assert model.pos_embed.shape == (1, 1 + 8 * 12, 64)
    assert model(torch.zeros(1, 3, 32, 48)).shape == (1, 3)
    with pytest.raises(ValueError, match="not divisible by patch_size 4"):
        model.set_image_size(30)

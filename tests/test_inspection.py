"""Inspection (pipelines.inspection): known answers for rollout, attention distance, position-embedding similarity
and embedding filters; attention capture against an independent computation; the command end to end."""

from __future__ import annotations

import itertools
import math
import tarfile
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torchvision.io import decode_image, write_png

import vit_model
from pipelines.cli import main as cli_main
from pipelines.inspection.attention import attention_maps, encoder_attention_modules
from pipelines.inspection.checkpoint import RunArtifact, find_model_artifact, load_inspected_model, parse_checkpoint
from pipelines.inspection.distance import attention_distances, mean_attention_distance
from pipelines.inspection.filters import embedding_filters
from pipelines.inspection.images import decode_rgb, load_sample_images
from pipelines.inspection.pos_similarity import position_similarity
from pipelines.inspection.report import FIGURES
from pipelines.inspection.rollout import attention_rollout, class_token_map

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
HYMENOPTERA = Path(__file__).resolve().parents[2] / "shared" / "data" / "hymenoptera"
needs_hymenoptera = pytest.mark.skipif(not HYMENOPTERA.is_dir(), reason="needs ../shared/data/hymenoptera")


def _stochastic(batch: int, heads: int, n: int) -> torch.Tensor:
    return torch.rand(batch, heads, n, n).softmax(dim=-1)


def _eye(batch: int, heads: int, n: int) -> torch.Tensor:
    return torch.eye(n).expand(batch, heads, n, n).clone()


# --- attention capture -------------------------------------------------------------------------------------------

def test_captured_attention_matches_an_independent_softmax_and_flags_are_restored():
    model = vit_model.create_model("vit-mu/4", num_classes=10, image_size=16)
    model.train()
    images = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        model.eval()
        reference_out = model.forward_features(images)
        model.train()
    maps = attention_maps(model, images)

    depth, heads, n = model.config.depth, model.config.num_heads, 1 + 16
    assert len(maps) == depth and all(m.shape == (2, heads, n, n) for m in maps)
    torch.testing.assert_close(maps[3].sum(-1), torch.ones(2, heads, n))
    # layer 0 by hand: tokens -> norm1 -> q, k -> softmax(q k^T / sqrt(d))
    block = model.blocks[0]
    with torch.no_grad():
        x = model.patch_embed(images)
        x = torch.cat([model.cls_token.expand(2, -1, -1), x], dim=1) + model.pos_embed
        q, k, _ = block.attn.qkv(block.norm1(x)).reshape(2, n, 3, heads, -1).permute(2, 0, 3, 1, 4)
        expected = (q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])).softmax(-1)
    torch.testing.assert_close(maps[0], expected, rtol=1e-5, atol=1e-6)
    # the option is switched off again, nothing is kept, the mode is restored and outputs are those of SDPA
    assert model.training
    assert all(not m.capture_attention and m.attention is None for m in encoder_attention_modules(model))
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model.forward_features(images), reference_out, rtol=1e-5, atol=1e-5)


# --- rollout -----------------------------------------------------------------------------------------------------

def test_rollout_of_identity_attention_is_the_identity():
    n = 1 + 9
    rollout = attention_rollout([_eye(2, 3, n) for _ in range(4)])
    torch.testing.assert_close(rollout, torch.eye(n).expand(2, n, n))


def test_rollout_averages_heads_adds_residual_and_multiplies_later_layers_on_the_left():
    a1, a2 = _stochastic(1, 2, 5), _stochastic(1, 2, 5)
    eye = torch.eye(5)
    step1, step2 = 0.5 * a1.mean(1) + 0.5 * eye, 0.5 * a2.mean(1) + 0.5 * eye
    rollout = attention_rollout([a1, a2])
    torch.testing.assert_close(rollout, step2 @ step1)
    assert not torch.allclose(step1 @ step2, step2 @ step1, atol=1e-4)  # the order is actually tested
    torch.testing.assert_close(rollout.sum(-1), torch.ones(1, 5))


def test_class_token_map_places_patches_row_major_and_pools_without_class_token():
    grid, prefix = (2, 3), 1
    rollout = torch.zeros(1, 7, 7)
    rollout[0, 0, prefix + 1 * 3 + 2] = 1.0  # class token draws on the patch in row 1, column 2
    expected = torch.zeros(1, 2, 3)
    expected[0, 1, 2] = 1.0
    torch.testing.assert_close(class_token_map(rollout, prefix, grid), expected)
    patches_only = torch.eye(6)[None]  # global average pooling: the mean of the patch rows
    torch.testing.assert_close(class_token_map(patches_only, 0, grid), torch.full((1, 2, 3), 1 / 6))


# --- mean attention distance -------------------------------------------------------------------------------------

def _centres(grid, stride):
    return [((r + 0.5) * stride[0], (c + 0.5) * stride[1]) for r in range(grid[0]) for c in range(grid[1])]


def test_identity_attention_has_zero_distance():
    grid = (4, 4)
    distances = attention_distances([_eye(2, 3, 1 + 16)] * 2, grid, (16, 16), num_prefix_tokens=1)
    assert distances.shape == (2, 3)
    assert torch.count_nonzero(distances) == 0


@pytest.mark.parametrize("grid, stride", [((4, 4), (16, 16)), ((3, 5), (8, 4))])
def test_uniform_attention_gives_the_average_pairwise_distance(grid, stride):
    centres = _centres(grid, stride)
    brute_force = sum(math.dist(p, q) for p, q in itertools.product(centres, centres)) / len(centres) ** 2
    n = 1 + len(centres)
    uniform = torch.full((2, 2, n, n), 1.0 / n)  # also onto the class token, which must not count
    distance = mean_attention_distance(uniform, grid, stride, num_prefix_tokens=1)
    torch.testing.assert_close(distance, torch.full((2,), brute_force))


@pytest.mark.parametrize("axis", [0, 1])
def test_attending_to_a_neighbour_is_one_stride_along_that_axis(axis):
    grid, stride = (3, 4), (8, 4)
    index = {(r, c): r * grid[1] + c for r in range(grid[0]) for c in range(grid[1])}
    attention = torch.zeros(1, 1, 12, 12)
    for (r, c), i in index.items():
        step = [0, 0]
        step[axis] = 1 if (r, c)[axis] + 1 < grid[axis] else -1
        attention[0, 0, i, index[(r + step[0], c + step[1])]] = 1.0
    distance = mean_attention_distance(attention, grid, stride, num_prefix_tokens=0)
    torch.testing.assert_close(distance, torch.tensor([float(stride[axis])]))


def test_class_token_queries_and_keys_are_excluded():
    grid, n = (2, 2), 5
    attention = torch.zeros(1, 1, n, n)
    attention[0, 0, 0] = 0.25  # the class token's own query looks everywhere: not a patch query, ignored
    for i in range(1, n):
        attention[0, 0, i, 0], attention[0, 0, i, i] = 0.9, 0.1  # patches: mostly the class token, else self
    assert mean_attention_distance(attention, grid, (16, 16), num_prefix_tokens=1).item() == 0.0


# --- position-embedding similarity -------------------------------------------------------------------------------

def _sinusoid(grid, width, rows_only=False):
    """Embedding of (r, c): [sin wr, cos wr, sin wc, cos wc] over frequencies with w * (g - 1) < pi."""
    k = width // 4
    omega = math.pi / max(grid) * torch.arange(1, k + 1) / k
    r, c = torch.meshgrid(torch.arange(grid[0]).float(), torch.arange(grid[1]).float(), indexing="ij")
    r, c = r.flatten()[:, None] * omega, c.flatten()[:, None] * omega
    column_part = torch.ones_like(c) if rows_only else c
    return torch.cat([r.sin(), r.cos(), column_part.sin(), column_part.cos()], dim=1)


def test_sinusoidal_position_embeddings_show_row_and_column_structure():
    model = vit_model.create_model("vit-pi/4", num_classes=10, image_size=32)
    grid = tuple(model.patch_embed.grid)
    with torch.no_grad():
        model.pos_embed[0, 1:] = _sinusoid(grid, model.config.width)
    sim = position_similarity(model.pos_embed, grid, model.num_prefix_tokens)
    g = grid[0]
    assert sim.shape == (g, g, g, g)
    for r, c in itertools.product(range(g), repeat=2):
        assert sim[r, c].argmax().item() == r * g + c
        assert sim[r, c, r, c].item() == pytest.approx(1.0, abs=1e-5)
    ref = sim[3, 3]
    along_row, along_column = ref[3, 3:], ref[3:, 3]
    assert torch.all(along_row[1:] < along_row[:-1]) and torch.all(along_column[1:] < along_column[:-1])
    torch.testing.assert_close(along_row, along_column)  # rows and columns play the same role
    for d in range(1, 5):
        assert ref[3, 3 + d] > ref[3 + d, 3 + d]  # same row beats the diagonal at the same offset
    torch.testing.assert_close(sim[1, 2, 3, 5], sim[4, 0, 6, 3])  # depends only on the offset


def test_similarity_maps_are_laid_out_by_grid_row_and_column():
    grid = (3, 5)
    pos = torch.cat([torch.randn(1, 16), _sinusoid(grid, 16, rows_only=True)])[None]  # class token first
    sim = position_similarity(pos, grid, num_prefix_tokens=1)
    torch.testing.assert_close(sim[1, 4, 1], torch.ones(5))  # every position of its own row: identical
    assert torch.all(sim[1, 4, 0] < 0.999) and torch.all(sim[1, 4, 2] < 0.999)


# --- embedding filters -------------------------------------------------------------------------------------------

def test_pca_recovers_known_components_in_patch_layout():
    p, c, d = 4, 3, 96
    red_ramp = torch.zeros(c, p, p)
    red_ramp[0] = torch.linspace(-1, 1, p)[None, :].expand(p, p)  # a horizontal ramp in the red channel only
    first = vit_model.patchify(red_ramp[None], p)[0, 0]  # our [P, P, C] flattening, by its own definition
    basis = torch.linalg.qr(torch.cat([first[:, None], torch.randn(p * p * c, 2)], dim=1)).Q.T  # orthonormal [3, F]
    centred = torch.randn(d, 3)
    centred = torch.linalg.qr(centred - centred.mean(0)).Q  # uncorrelated, zero-mean scores: no mixing of components
    scores = centred * torch.tensor([5.0, 3.0, 1.5]) * math.sqrt(d)
    weight = scores @ basis + 0.01 * torch.randn(d, p * p * c) + 0.3  # the constant offset is removed by PCA
    components, explained = embedding_filters(weight, p, c, num_components=3)
    assert components.shape == (3, p, p, c)
    cosines = (components.reshape(3, -1) * basis).sum(-1).abs()
    assert torch.all(cosines > 0.99)
    assert torch.all(explained[:-1] > explained[1:])
    assert components[0, ..., 1:].abs().max() < 0.05  # green and blue of the red ramp stay empty
    assert (components[0, 0, -1, 0] - components[0, 0, 0, 0]).abs() > 0.3  # and it ramps along columns


# --- images, checkpoints and the command -------------------------------------------------------------------------

def _image_folder(root, per_class=3, size=(40, 50)):
    for label in ("ants", "bees"):
        (root / label).mkdir(parents=True)
        for i in range(per_class):
            write_png(torch.randint(0, 256, (3, *size), dtype=torch.uint8), str(root / label / f"{i}.png"))
    return root


def test_sample_images_are_spread_over_classes_cropped_and_bad_files_skipped(tmp_path, capsys):
    folder = _image_folder(tmp_path / "images")
    (folder / "ants" / "broken.jpg").write_bytes(b"not an image")
    images, names = load_sample_images(folder, (32, 32), count=4)
    assert images.shape == (4, 3, 32, 32) and images.dtype == torch.uint8
    assert [n.split("/")[-2] for n in names] == ["ants", "bees", "ants", "bees"]
    images, names = load_sample_images(folder, (32, 32), count=7)  # reaches the broken file: 6 remain
    assert len(names) == 6 and not any("broken" in n for n in names)
    assert "broken.jpg" in capsys.readouterr().err
    with tarfile.open(tmp_path / "set.tgz", "w:gz") as tar:
        tar.add(folder, arcname="test")
    from_archive, _ = load_sample_images(tmp_path / "set.tgz", (16, 24), count=2)
    assert from_archive.shape == (2, 3, 16, 24)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "x.png").write_bytes(b"junk")
    with pytest.raises(ValueError, match="empty"):
        load_sample_images(empty, (32, 32))


def test_checkpoint_argument_forms(tmp_path):
    run_id = "0123456789abcdef0123456789abcdef"
    assert parse_checkpoint(f"runs:/{run_id}/model/final") == RunArtifact(run_id, "model/final")
    assert parse_checkpoint(run_id) == RunArtifact(run_id, "")
    assert parse_checkpoint(str(tmp_path)) == tmp_path
    with pytest.raises(ValueError, match="no-such-dir"):
        parse_checkpoint(str(tmp_path / "no-such-dir"))


class _FakeArtifacts:
    """``MlflowClient.list_artifacts`` over a fixed set of file paths."""

    def __init__(self, files):
        self.files = files

    def list_artifacts(self, run_id, path=None):
        prefix = f"{path}/" if path else ""
        children = {f[len(prefix):].split("/")[0] for f in self.files if f.startswith(prefix)}
        return [SimpleNamespace(path=prefix + c, is_dir=prefix + c not in self.files) for c in sorted(children)]


@pytest.mark.parametrize("files, expected", [
    (["model.safetensors", "config.json"], ""),
    (["metrics.json", "checkpoints/step_10/state.pt", "checkpoints/final/model.safetensors"], "checkpoints/final"),
])
def test_model_artifact_is_found_in_the_run(files, expected):
    assert find_model_artifact(_FakeArtifacts(files), "run") == expected


def test_a_run_without_a_saved_model_is_an_error_listing_its_artifacts():
    with pytest.raises(ValueError, match="plots/loss.png"):
        find_model_artifact(_FakeArtifacts(["plots/loss.png"]), "run")


def test_load_with_model_name_and_new_resolution(tmp_path):
    vit_model.save_model(vit_model.create_model("vit-pi/4", num_classes=10, image_size=32), tmp_path / "m")
    model = load_inspected_model(tmp_path / "m", "vit-pi/4", image_size=48)
    assert tuple(model.config.image_size) == (48, 48) and tuple(model.patch_embed.grid) == (12, 12)
    assert tuple(load_inspected_model(tmp_path / "m", None, 16).patch_embed.grid) == (4, 4)


def _assert_pngs(folder):
    for name in FIGURES.values():
        data = (folder / name).read_bytes()
        assert data.startswith(PNG_MAGIC), name
        assert decode_image(torch.frombuffer(bytearray(data), dtype=torch.uint8)).shape[1] > 100


def test_inspect_command_writes_every_figure(tmp_path):
    vit_model.save_model(vit_model.create_model("vit-pi/4", num_classes=10, image_size=32), tmp_path / "model")
    images = _image_folder(tmp_path / "images")
    out = tmp_path / "figures"
    rc = cli_main(["inspect", "--checkpoint", str(tmp_path / "model"), "--images", str(images),
                   "--out", str(out), "--num-images", "4"])
    assert rc == 0
    _assert_pngs(out)
    assert (out / "inspection.json").exists()


def test_inspect_command_reports_a_bad_checkpoint(tmp_path, capsys):
    assert cli_main(["inspect", "--checkpoint", str(tmp_path / "missing")]) == 2
    assert "missing" in capsys.readouterr().err


def test_inspect_command_reads_and_logs_to_an_mlflow_run(tmp_path):
    mlflow = pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path.resolve()}/mlflow.db"  # absolute path: four slashes in all
    client = MlflowClient(tracking_uri=uri)
    experiment = client.create_experiment("inspect", artifact_location=(tmp_path / "artifacts").resolve().as_uri())
    run_id = client.create_run(experiment).info.run_id
    model_dir = tmp_path / "model"
    vit_model.save_model(vit_model.create_model("vit-pi/4", num_classes=10, image_size=32), model_dir)
    client.log_artifacts(run_id, str(model_dir), "checkpoints/final")  # found by searching the run's artifacts
    client.set_terminated(run_id)
    images = _image_folder(tmp_path / "images", per_class=1)
    out = tmp_path / "figures"
    rc = cli_main(["inspect", "--checkpoint", run_id, "--tracking-uri", uri, "--images", str(images),
                   "--out", str(out)])
    assert rc == 0
    logged = {f.path for f in client.list_artifacts(run_id, "inspection")}
    assert {f"inspection/{name}" for name in FIGURES.values()} <= logged
    fetched = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="inspection", tracking_uri=uri,
                                                  dst_path=str(tmp_path / "fetched"))
    _assert_pngs(Path(fetched))



@needs_hymenoptera
def test_the_gif_placeholder_decodes_as_one_rgb_frame():
    gif = HYMENOPTERA / "train" / "ants" / "imageNotFound.gif"
    image = decode_rgb(gif.read_bytes(), str(gif))
    assert image.dim() == 3 and image.shape[0] == 3 and image.dtype == torch.uint8


@needs_hymenoptera
def test_inspect_command_on_real_photos_at_224_pixels(tmp_path):
    vit_model.save_model(vit_model.create_model("vit-pi/16", num_classes=2, image_size=224), tmp_path / "model")
    out = tmp_path / "figures"
    rc = cli_main(["inspect", "--checkpoint", str(tmp_path / "model"), "--images", str(HYMENOPTERA / "val"),
                   "--out", str(out), "--num-images", "2"])
    assert rc == 0
    _assert_pngs(out)


def test_a_hybrid_gets_attention_figures_but_no_pixel_filters(tmp_path):
    from pipelines.inspection.report import inspect_model

    model = vit_model.create_model("hybrid-r26+vit-pi/16", num_classes=10, image_size=64, head="mlp").eval()
    images = torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8)
    result = inspect_model(model, images)
    assert result.filters is None  # its projection reads 1,024 CNN channels, not P x P x 3 pixels
    assert result.rollout_maps.shape == (2, *model.patch_embed.grid)
    assert result.distances.shape == (model.config.depth, model.config.num_heads)

"""The Ray Data pipeline: exact eval patches, nested subsets through Ray, seeded per-epoch augmentation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import ray
import torch
from data_samples import broken_files, write_imagefolder
from torchvision.io import ImageReadMode, decode_image
from torchvision.transforms import v2

import vit_model
from pipelines.data import build_datasets, prepare_dataset, subset_sizes, train_iter_kwargs
from pipelines.data import shards as shards_module

IMAGE, PATCH = 32, 8
SIZES = ((24, 32), (40, 30), (33, 33), (64, 48), (17, 90), (32, 32))


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("pipeline") / "src"
    write_imagefolder(root, {"train": {"a": 40, "b": 30, "c": 20}, "test": {"a": 4, "b": 4, "c": 4}}, sizes=SIZES)
    odd = broken_files(np.random.default_rng(5))
    for case in ("grayscale_png", "rgba_png", "palette_png", "cmyk_jpeg", "animated_gif"):
        filename, data = odd[case]
        (root / "test" / "a" / filename).write_bytes(data)
    return root


@pytest.fixture(scope="module")
def prepared(source, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("prepared") / "out"
    prepare_dataset(str(source), str(out), workers=0)
    return out


@pytest.fixture(scope="module")
def prepared_one_shard(source, tmp_path_factory) -> Path:
    """The same data in a single shard per split (different files, blocks and read tasks)."""
    out = tmp_path_factory.mktemp("prepared1") / "out"
    saved = shards_module.MIN_SHARDS
    shards_module.MIN_SHARDS = 1
    try:
        prepare_dataset(str(source), str(out), workers=0)
    finally:
        shards_module.MIN_SHARDS = saved
    return out


def collect(ds: ray.data.Dataset) -> dict[int, tuple[np.ndarray, int]]:
    rows = {}
    for batch in ds.iter_batches(batch_size=64, batch_format="numpy"):
        for i, patches, label in zip(batch["id"], batch["patches"], batch["label"]):
            assert int(i) not in rows, "a row came twice"
            rows[int(i)] = (patches, int(label))
    return rows


def stored_images(prepared: Path) -> dict[int, bytes]:
    images = {}
    for path in sorted(prepared.glob("*/*.parquet")):
        table = pq.read_table(path, columns=["id", "image"])
        images.update(zip(table.column("id").to_pylist(), table.column("image").to_pylist()))
    return images


def reference_eval_patches(data: bytes) -> np.ndarray:
    """torchvision's decode + Resize + CenterCrop, then vit_model.patchify: the definition the pipeline meets."""
    image = decode_image(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=ImageReadMode.RGB)
    image = image[0] if image.ndim == 4 else image
    view = v2.Compose([v2.Resize(IMAGE, antialias=True), v2.CenterCrop(IMAGE)])(image)
    return vit_model.patchify(view.unsqueeze(0), PATCH)[0].numpy()


def test_eval_patches_equal_patchify_of_the_transformed_image(prepared):
    datasets = build_datasets(prepared, image_size=IMAGE, patch_size=PATCH, splits=("val", "test"),
                              val_fraction=0.2, with_ids=True)
    images = stored_images(prepared)
    checked = 0
    for name in ("val", "test"):
        rows = collect(datasets[name])
        assert len(rows) == subset_sizes(prepared, val_fraction=0.2)[name]
        for example, (patches, _) in rows.items():
            assert patches.dtype == np.uint8 and patches.shape == ((IMAGE // PATCH) ** 2, PATCH * PATCH * 3)
            np.testing.assert_array_equal(patches, reference_eval_patches(images[example]))
            checked += 1
    assert checked == 18 + 17  # 20% of 40 + 30 + 20, and the whole test split (12 + 5 odd formats)


def test_training_subsets_through_ray_are_nested_disjoint_and_blocking_independent(prepared, prepared_one_shard):
    previous = set()
    val = set(collect(build_datasets(prepared, image_size=16, patch_size=8, splits=("val",), with_ids=True)["val"]))
    for fraction in (0.1, 0.3, 1.0):
        sets = []
        for directory, read_tasks in ((prepared, None), (prepared, 1), (prepared, 7), (prepared_one_shard, None)):
            rows = collect(build_datasets(directory, image_size=16, patch_size=8, train_fraction=fraction,
                                          splits=("train",), with_ids=True, read_tasks=read_tasks)["train"])
            assert len(rows) == subset_sizes(directory, train_fraction=fraction)["train"]
            sets.append(set(rows))
        assert all(s == sets[0] for s in sets), "subset depends on the number of shards, blocks or tasks"
        assert previous <= sets[0] and not sets[0] & val
        previous = sets[0]


def test_train_crop_at_full_scale_is_the_resized_image_or_its_mirror(prepared):
    """With crop area 1, the Inception crop is the whole (square) image: only the flip remains random."""
    ds = build_datasets(prepared, image_size=IMAGE, patch_size=PATCH, splits=("train",), crop_scale=(1.0, 1.0),
                        with_ids=True)["train"]
    images = stored_images(prepared)
    flips = []
    for example, (patches, _) in collect(ds).items():
        image = decode_image(torch.frombuffer(bytearray(images[example]), dtype=torch.uint8), mode=ImageReadMode.RGB)
        if image.shape[1] != image.shape[2]:
            continue
        resized = v2.Resize((IMAGE, IMAGE), antialias=True)(image)
        plain = vit_model.patchify(resized.unsqueeze(0), PATCH)[0].numpy()
        mirror = vit_model.patchify(v2.functional.horizontal_flip(resized).unsqueeze(0), PATCH)[0].numpy()
        flipped = np.array_equal(patches, mirror)
        assert flipped or np.array_equal(patches, plain)
        flips.append(flipped)
    assert len(flips) >= 20 and 0.2 < np.mean(flips) < 0.8


def test_augmentation_is_seeded_per_row_and_new_every_epoch(prepared):
    def build(seed):
        return build_datasets(prepared, image_size=IMAGE, patch_size=PATCH, splits=("train",), seed=seed,
                              with_ids=True)["train"]

    ds = build(0)
    epoch0, epoch1 = collect(ds), collect(ds)  # a second iteration is the next epoch
    again = collect(build(0))
    other_seed = collect(build(1))
    assert epoch0.keys() == epoch1.keys() == again.keys() == other_seed.keys()
    same = lambda a, b: np.mean([np.array_equal(a[k][0], b[k][0]) for k in a])  # noqa: E731
    assert same(epoch0, again) == 1.0, "the same seed must give the same first epoch"
    assert same(epoch0, epoch1) < 0.1, "augmentations repeat across epochs"
    assert same(epoch0, other_seed) < 0.1


def test_train_iter_kwargs_drive_iter_torch_batches(prepared):
    ds = build_datasets(prepared, image_size=16, patch_size=8, splits=("train",))["train"]
    kwargs = [train_iter_kwargs(8, seed=0, epoch=e) for e in range(2)]
    assert kwargs[0]["local_shuffle_seed"] != kwargs[1]["local_shuffle_seed"]
    assert kwargs[0]["local_shuffle_buffer_size"] >= kwargs[0]["batch_size"]
    total = 0
    for batch in ds.iter_torch_batches(**kwargs[0]):
        assert batch["patches"].dtype == torch.uint8 and batch["patches"].shape[1:] == (4, 192)
        assert batch["label"].dtype == torch.int64
        total += len(batch["label"])
    assert total == subset_sizes(prepared)["train"]


def test_bad_arguments(prepared):
    with pytest.raises(ValueError, match="multiple of patch_size"):
        build_datasets(prepared, image_size=30, patch_size=8)
    with pytest.raises(ValueError, match="unknown split"):
        build_datasets(prepared, image_size=16, patch_size=8, splits=("training",))


@pytest.mark.slow
def test_torch_trainer_reads_the_shards(prepared, tmp_path):
    """The datasets work as ``TorchTrainer(datasets=...)``, each worker iterating its shard for two epochs."""
    import json

    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    def train_func(config):
        counts = {}
        for epoch in range(2):
            shard = ray.train.get_dataset_shard("train")
            counts[f"train_{epoch}"] = sum(len(b["label"]) for b in shard.iter_torch_batches(
                **train_iter_kwargs(16, seed=0, epoch=epoch)))
        counts["val"] = sum(len(b["label"]) for b in ray.train.get_dataset_shard("val").iter_torch_batches(
            batch_size=16))
        rank = ray.train.get_context().get_world_rank()
        Path(config["out"], f"rank{rank}.json").write_text(json.dumps(counts))
        ray.train.report(counts)

    datasets = build_datasets(prepared, image_size=16, patch_size=8, splits=("train", "val"), val_fraction=0.1)
    trainer = TorchTrainer(train_func, train_loop_config={"out": str(tmp_path)}, datasets=datasets,
                           scaling_config=ScalingConfig(num_workers=2, resources_per_worker={"CPU": 0.5}),
                           run_config=RunConfig(storage_path=str(tmp_path / "ray_results")))
    trainer.fit()
    counts = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in range(2)]
    sizes = subset_sizes(prepared, val_fraction=0.1)
    for key, total in (("train_0", sizes["train"]), ("train_1", sizes["train"]), ("val", sizes["val"])):
        # Ray Train splits datasets with equal=True: each worker gets floor(rows / workers) rows.
        assert [c[key] for c in counts] == [total // 2] * 2, key

"""Bad input: each broken file is rejected and counted, each odd-but-valid image is converted to RGB, and
``--strict`` stops at the first bad file, naming it."""

from __future__ import annotations

import io
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from data_samples import broken_files, encode, random_pixels, tar_directory, write_imagefolder
from PIL import Image

from pipelines.cli import main as cli_main
from pipelines.data import PrepareError, load_manifest, prepare_dataset
from pipelines.data.transforms import decode_rgb

REJECTED = {  # case -> words the reason must contain
    "zero_byte": "empty",
    "truncated_jpeg": "truncated",
    "text_as_jpeg": "not an image",
    "bmp_as_jpeg": "unsupported image format BMP",
}
CONVERTED = ("cmyk_jpeg", "grayscale_png", "rgba_png", "palette_png", "gif", "animated_gif")


@pytest.fixture(scope="module")
def bad_tree(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("bad") / "data"
    write_imagefolder(root, {"train": {"good": 4}})
    cases = broken_files(np.random.default_rng(0))
    (root / "train" / "odd").mkdir()
    for filename, data in cases.values():
        (root / "train" / "odd" / filename).write_bytes(data)
    (root / "train" / "stray.jpg").write_bytes(encode(random_pixels(np.random.default_rng(1), 8, 8)))
    (root / "train" / "odd" / ".hidden.jpg").write_bytes(b"")  # hidden files are not data
    (root / "train" / "odd" / "labels.txt").write_text("not an image extension")
    return root, cases


def pil_rgb(data: bytes) -> np.ndarray:
    """Pillow's conversion, the reference for the decoder's (first frame for animations)."""
    with Image.open(io.BytesIO(data)) as image:
        image.seek(0)
        return np.asarray(image.convert("RGB"))


def test_each_broken_file_is_rejected_and_counted(bad_tree, tmp_path):
    root, cases = bad_tree
    manifest = prepare_dataset(str(root), str(tmp_path / "out"), workers=0)
    reasons = {r["path"]: r["reason"] for r in manifest["rejected"]}
    for case, words in REJECTED.items():
        path = f"train/odd/{cases[case][0]}"
        assert words in reasons.pop(path), (case, reasons.get(path))
    assert "does not follow" in reasons.pop("train/stray.jpg")
    assert reasons == {}, f"unexpected rejections: {reasons}"
    assert manifest["num_rejected"] == len(REJECTED) + 1
    assert manifest["splits"]["train"]["class_counts"] == {"good": 4, "odd": len(CONVERTED)}
    assert manifest["skipped"] == ["train/odd/labels.txt"]


def test_odd_formats_are_converted_to_rgb(bad_tree, tmp_path):
    root, cases = bad_tree
    prepare_dataset(str(root), str(tmp_path / "out"), workers=0)
    rows = pq.read_table(tmp_path / "out" / "train").to_pylist()
    stored = {Path(r["path"]).name: r for r in rows}
    for case in CONVERTED:
        filename, data = cases[case]
        row = stored[filename]
        decoded = decode_rgb(row["image"])
        assert decoded.dtype == torch.uint8 and decoded.shape == (3, row["height"], row["width"]), case
        reference = pil_rgb(data)
        difference = np.abs(decoded.permute(1, 2, 0).numpy().astype(int) - reference.astype(int))
        # Lossless formats must match Pillow exactly; CMYK JPEG goes through two colour conversions.
        assert difference.max() <= (8 if case == "cmyk_jpeg" else 0), (case, difference.max())


def test_strict_stops_at_the_first_bad_file_naming_it(bad_tree, tmp_path, capsys):
    root, cases = bad_tree
    # Files are read in sorted order; the first bad one is the BMP.
    with pytest.raises(PrepareError, match=r"^rejected train/odd/bitmap.jpg: unsupported image format BMP"):
        prepare_dataset(str(root), str(tmp_path / "out"), strict=True, workers=0)
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob("out.partial-*"))

    only_truncated = tmp_path / "one_bad"
    write_imagefolder(only_truncated, {"train": {"good": 2}})
    shutil.copy(root / "train" / "odd" / cases["truncated_jpeg"][0], only_truncated / "train" / "good" / "t.jpg")
    assert cli_main(["prepare", str(only_truncated), "--out", str(tmp_path / "cli"), "--strict", "--no-progress",
                     "--workers", "0"]) == 1
    assert "train/good/t.jpg" in capsys.readouterr().err
    assert cli_main(["prepare", str(only_truncated), "--out", str(tmp_path / "cli"), "--no-progress",
                     "--workers", "0"]) == 0
    assert "rejected 1 file(s)" in capsys.readouterr().out


def test_broken_archives(tmp_path):
    """A truncated .tgz keeps what was read before the break; a zip member with a bad CRC is skipped alone."""
    tree = tmp_path / "tree"
    write_imagefolder(tree, {"train": {"a": 30}}, sizes=((40, 40),))
    archive = tar_directory(tree, tmp_path / "whole.tgz")
    truncated = tmp_path / "cut" / "train.tgz"
    truncated.parent.mkdir()
    truncated.write_bytes(archive.read_bytes()[: archive.stat().st_size * 2 // 3])
    manifest = prepare_dataset(str(truncated.parent), str(tmp_path / "out_tgz"), workers=0)
    assert 0 < manifest["splits"]["train"]["num_rows"] < 30
    assert [r["path"] for r in manifest["rejected"]] == ["train.tgz"]
    assert "archive unreadable" in manifest["rejected"][0]["reason"]

    zipped = tmp_path / "z.zip"
    with zipfile.ZipFile(zipped, "w", compression=zipfile.ZIP_STORED) as zf:
        for path in sorted(tree.rglob("*.jpg")):
            zf.write(path, path.relative_to(tree).as_posix())
    data = bytearray(zipped.read_bytes())
    with zipfile.ZipFile(zipped) as zf:
        victim = zf.infolist()[5]
        data[victim.header_offset + 30 + len(victim.filename) + 100] ^= 0xFF  # flip a byte of its contents
    zipped.write_bytes(bytes(data))
    manifest = prepare_dataset(str(zipped), str(tmp_path / "out_zip"), workers=0)
    assert manifest["splits"]["train"]["num_rows"] == 29
    assert [r["path"] for r in manifest["rejected"]] == [f"z.zip:{victim.filename}"]


def test_parquet_rows_without_bytes_or_label(tmp_path):
    good = encode(random_pixels(np.random.default_rng(3), 12, 12))
    table = pa.table({"img": pa.array([good, None, good[:10], good], type=pa.binary()),
                      "label": pa.array([0, 1, 1, None], type=pa.int64())})
    pq.write_table(table, tmp_path / "train.parquet")
    manifest = prepare_dataset(str(tmp_path / "train.parquet"), str(tmp_path / "out"), workers=0)
    assert manifest["splits"]["train"]["num_rows"] == 1
    assert [r["reason"].split(" ")[0] for r in manifest["rejected"]] == ["no", "corrupt", "no"]
    assert load_manifest(tmp_path / "out")["num_rejected"] == 3


@pytest.mark.slow
def test_training_on_data_with_bad_files_runs_to_the_end_and_its_run_lists_them(tmp_path):
    """A few percent of bad files mixed into a real ImageFolder: the run trains to its last step, and the manifest
    and the MLflow run both list exactly the rejected files."""
    import json
    import time

    import ray
    from mlflow.tracking import MlflowClient

    from pipelines.tracking import REJECTED_ARTIFACT
    from pipelines.train import load_config, ray_logs, run_training

    root = tmp_path / "data"
    write_imagefolder(root, {"train": {"a": 60, "b": 60}, "test": {"a": 20, "b": 20}}, sizes=((32, 32), (40, 36)))
    cases = broken_files(np.random.default_rng(0))
    planted = {}
    for case in (*REJECTED, *CONVERTED):
        filename, data = cases[case]
        (root / "train" / "a" / filename).write_bytes(data)
        if case in REJECTED:
            planted[f"train/a/{filename}"] = case
    (root / "test" / "b" / "cut.jpg").write_bytes(cases["truncated_jpeg"][1])
    planted["test/b/cut.jpg"] = "truncated_jpeg"
    files = sum(1 for p in root.rglob("*") if p.is_file())
    prepared = tmp_path / "prepared"
    manifest = prepare_dataset(str(root), str(prepared), workers=0)
    assert manifest["num_rejected"] == len(planted) and {r["path"] for r in manifest["rejected"]} == set(planted)

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    steps = 10
    cfg = load_config(None, [f"data.source={prepared}", "model.name=vit-pi/8", "data.image_size=32",
                             "schedule.global_batch_size=16", f"schedule.total={steps} steps",
                             "eval.fewshot_shots=[]", "eval.batch_size=32", "checkpoint.export=false",
                             f"tracking.uri={uri}", "tracking.experiment=bad-data"])
    started = time.monotonic()
    ray.init(num_cpus=2, include_dashboard=False, runtime_env=ray_logs.RUNTIME_ENV)
    try:
        result = run_training(cfg, run_name="bad-data", storage_path=str(tmp_path / "runs"))
    finally:
        ray.shutdown()
    assert result.metrics["step"] == steps

    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("bad-data").experiment_id])
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    assert runs[0].data.params["data.num_rejected"] == str(len(planted))
    listed = json.loads(Path(client.download_artifacts(runs[0].info.run_id, REJECTED_ARTIFACT,
                                                       str(tmp_path / "dl"))).read_text())
    assert {r["path"]: r["reason"] for r in listed["rejected"]} == {r["path"]: r["reason"]
                                                                    for r in manifest["rejected"]}
    print(f"\nFAULT | bad data | {len(planted)} bad of {files} files ({100 * len(planted) / files:.1f}%) rejected "
          f"and listed in the manifest and the MLflow run; {len(CONVERTED)} odd-mode images converted; trained "
          f"{result.metrics['step']}/{steps} steps in {time.monotonic() - started:.0f} s")

"""Make the figures of ``vit-study inspect`` shown in the README (written to docs/figures/).

    .venv/bin/python docs/make_inspection_figures.py                          # about 5 CPU-minutes, one thread
    .venv/bin/python docs/make_inspection_figures.py --train-images 10000     # a quick look (barely trained)

Trains a small ViT (``vit-pi/4`` with 4 heads of 16 dims, 32 px CIFAR-10) on a fixed number of images (2.6 epochs,
seeded) with a plain single-process PyTorch loop on one thread (nothing is downloaded: the CIFAR-10 JPEG tarball is
read with tarfile + torchvision.io), saves it with ``vit_model.save_model``, prints its test accuracy, then runs
``vit-study inspect`` on CIFAR-10 test images and on hymenoptera val photos (resized to the model's 32 px).
Expected: 49.9% CIFAR-10 test top-1 (measured: 4.6 CPU-minutes of training); what the figures then show is
described in docs/figures/README.md.
Figures land in ``--out``/{cifar10,hymenoptera}/.
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torchvision.io import ImageReadMode, decode_image

import vit_model

ROOT = Path(__file__).resolve().parents[1]
MODEL, OVERRIDES, IMAGE_SIZE = "vit-pi/4", {"num_heads": 4}, 32


def read_image_folder_tgz(path: Path, limit: int | None = None) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """All images of an ImageFolder ``.tgz`` (``split/<class>/file.jpg``) as uint8 ``[N, 3, H, W]`` plus labels."""
    images, classes_of = [], []
    with tarfile.open(path) as tar:
        for member in tar:
            if not (member.isfile() and member.name.lower().endswith((".jpg", ".jpeg", ".png"))):
                continue
            data = torch.frombuffer(bytearray(tar.extractfile(member).read()), dtype=torch.uint8)
            images.append(decode_image(data, mode=ImageReadMode.RGB))
            classes_of.append(Path(member.name).parent.name)
            if limit and len(images) >= limit:
                break
    classes = sorted(set(classes_of))
    labels = torch.tensor([classes.index(c) for c in classes_of])
    return torch.stack(images), labels, classes


def augment(batch: torch.Tensor) -> torch.Tensor:
    """Random 4-px-padded crop and horizontal flip of uint8 images (the usual CIFAR augmentation)."""
    b, _, h, w = batch.shape
    padded = F.pad(batch, (4, 4, 4, 4))
    dy, dx = torch.randint(0, 9, (2,)).tolist()  # one offset per batch: cheap, and enough for a demo
    out = padded[:, :, dy:dy + h, dx:dx + w]
    flip = torch.rand(b) < 0.5
    out[flip] = out[flip].flip(-1)
    return out


def train(model, images, labels, budget: int, batch_size: int = 64, lr: float = 2e-3) -> None:
    """AdamW, linear warm-up over 5% of the ``budget`` images, then cosine decay to zero."""
    no_decay = model.no_weight_decay()
    groups = [
        {"params": [p for n, p in model.named_parameters() if n not in no_decay], "weight_decay": 0.05},
        {"params": [p for n, p in model.named_parameters() if n in no_decay], "weight_decay": 0.0},
    ]
    optimizer = torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.999))
    start, cpu_start, seen, step = time.time(), time.process_time(), 0, 0
    model.train()
    while seen < budget:
        progress = seen / budget
        factor = progress / 0.05 if progress < 0.05 else 0.5 * (1 + math.cos(math.pi * (progress - 0.05) / 0.95))
        for group in optimizer.param_groups:
            group["lr"] = lr * factor
        index = torch.randint(0, len(images), (batch_size,))
        loss = F.cross_entropy(model(augment(images[index])), labels[index])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        seen, step = seen + batch_size, step + 1
        if step % 100 == 0:
            elapsed = time.time() - start
            print(f"step {step}  {seen} images  loss {loss.item():.3f}  {elapsed:.0f}s wall, "
                  f"{time.process_time() - cpu_start:.0f}s CPU, {seen / elapsed:.0f} img/s", flush=True)


@torch.no_grad()
def accuracy(model, images, labels, batch_size: int = 500) -> float:
    model.eval()
    correct = sum((model(images[i:i + batch_size]).argmax(-1) == labels[i:i + batch_size]).sum().item()
                  for i in range(0, len(images), batch_size))
    return correct / len(images)


def inspect(checkpoint: Path, images, out: Path) -> None:
    """Run the real command line, exactly as a user would."""
    command = [sys.executable, "-m", "pipelines.cli", "inspect", "--checkpoint", str(checkpoint),
               "--images", str(images), "--out", str(out), "--device", "cpu"]
    print("$", " ".join(command), flush=True)
    subprocess.run(command, check=True, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--train-images", type=int, default=130_000, help="training budget in images")
    parser.add_argument("--checkpoint", type=Path, default=ROOT / "outputs" / "inspection-demo" / "model")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "figures")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)

    train_images, train_labels, classes = read_image_folder_tgz(args.data / "cifar10-jpg" / "train.tgz")
    test_images, test_labels, _ = read_image_folder_tgz(args.data / "cifar10-jpg" / "test.tgz")
    print(f"CIFAR-10: {len(train_images)} train, {len(test_images)} test images, classes {classes}", flush=True)
    model = vit_model.create_model(MODEL, num_classes=len(classes), image_size=IMAGE_SIZE, **OVERRIDES)
    train(model, train_images, train_labels, args.train_images)
    top1 = accuracy(model, test_images, test_labels)
    print(f"{MODEL} {OVERRIDES}: {args.train_images} images ({args.train_images / len(train_images):.1f} epochs), "
          f"test top-1 {100 * top1:.1f}%", flush=True)
    vit_model.save_model(model, args.checkpoint)

    inspect(args.checkpoint, args.data / "cifar10-jpg" / "test.tgz", args.out / "cifar10")
    inspect(args.checkpoint, args.data / "hymenoptera" / "val", args.out / "hymenoptera")


if __name__ == "__main__":
    main()

"""``vit-study smoke``: a short single-process training of a small ViT on real images (no Ray, no MLflow).

A first check that the model learns on the machine at hand: it reads a few hundred images per class from an
ImageFolder tree (a directory, or ``train.tgz``/``test.tgz`` archives of one, as CIFAR-10 JPEGs ship here),
trains ``vit-pi/4`` for a few hundred steps and prints test top-1 against chance.
"""

from __future__ import annotations

import argparse
import tarfile
import time
from collections import defaultdict
from pathlib import Path

import torch
import torch.nn.functional as F
from torchvision.io import ImageReadMode, decode_image
from torchvision.transforms.v2.functional import resize

import vit_model

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def _members(root: Path, split: str):
    """(class name, encoded bytes) of one split from ``root/<split>.tgz`` or ``root/<split>/<class>/<file>``."""
    archive = root / f"{split}.tgz"
    if archive.exists():
        with tarfile.open(archive) as tar:
            for member in tar:
                parts = Path(member.name).parts
                if member.isfile() and len(parts) >= 2 and member.name.lower().endswith(IMAGE_SUFFIXES):
                    yield parts[-2], tar.extractfile(member).read()
    elif (root / split).is_dir():
        for path in sorted((root / split).glob("*/*")):
            if path.suffix.lower() in IMAGE_SUFFIXES:
                yield path.parent.name, path.read_bytes()
    else:
        raise FileNotFoundError(f"{root}: neither {split}.tgz nor a {split}/ ImageFolder directory")


def load_split(root: Path, split: str, per_class: int, size: int) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    by_class: dict[str, list[torch.Tensor]] = defaultdict(list)
    for name, data in _members(root, split):
        if len(by_class[name]) < per_class:
            image = decode_image(torch.frombuffer(bytearray(data), dtype=torch.uint8), ImageReadMode.RGB)
            by_class[name].append(resize(image, [size, size], antialias=True))
    classes = sorted(by_class)
    images = torch.stack([img for c in classes for img in by_class[c]])
    labels = torch.tensor([i for i, c in enumerate(classes) for _ in by_class[c]])
    return images, labels, classes


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, type=Path, help="ImageFolder dir, or a dir of train.tgz/test.tgz")
    parser.add_argument("--model", default="vit-pi/4")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--per-class", type=int, default=500, help="training images per class")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3)


def run(args: argparse.Namespace) -> int:
    torch.manual_seed(0)
    start = time.time()
    x_train, y_train, classes = load_split(args.data, "train", args.per_class, args.image_size)
    x_test, y_test, _ = load_split(args.data, "test", max(args.per_class // 5, 20), args.image_size)
    model = vit_model.create_model(args.model, num_classes=len(classes), image_size=args.image_size)
    print(f"{args.model}: {sum(p.numel() for p in model.parameters()):,} parameters, "
          f"{vit_model.forward_flops(model) / 1e6:.1f} MFLOPs/image; {len(x_train)} train / {len(x_test)} test "
          f"images of {len(classes)} classes from {args.data}")
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.05)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, args.lr, total_steps=args.steps, pct_start=0.1)
    generator = torch.Generator().manual_seed(0)
    for step in range(1, args.steps + 1):
        idx = torch.randint(len(x_train), (args.batch_size,), generator=generator)
        images = x_train[idx]
        flip = torch.rand(len(idx), generator=generator) < 0.5
        images[flip] = images[flip].flip(-1)
        loss = F.cross_entropy(model(images), y_train[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        if step % 50 == 0 or step == args.steps:
            print(f"step {step:4d}  loss {loss.item():.3f}")
    model.eval()
    with torch.no_grad():
        correct = sum((model(x_test[i:i + 256]).argmax(-1) == y_test[i:i + 256]).sum().item()
                      for i in range(0, len(x_test), 256))
    print(f"test top-1 {100 * correct / len(x_test):.1f}% (chance {100 / len(classes):.1f}%) "
          f"in {time.time() - start:.0f} s")
    return 0

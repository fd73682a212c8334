"""Training-step throughput of our ViT against timm's VisionTransformer with the identical configuration.

Forward + backward + AdamW step, same width/depth/heads/patch, same batch, same dtype. Rounds alternate between
the two models so that load from anything else on the machine hits both alike; the median of each is reported.

    .venv/bin/python benchmarks/model_step.py                 # CPU cases
    .venv/bin/python benchmarks/model_step.py --device cuda   # GPU cases (bf16 autocast, with/without compile)
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from datetime import date

import timm
import torch
import torch.nn.functional as F

import vit_model

CPU_CASES = [  # (our name, image size, batch)
    ("vit-ti/4", 32, 64),
    ("vit-mu/4", 32, 128),
    ("vit-ti/16", 224, 16),
    ("vit-s/16", 224, 8),
]
GPU_CASES = [("vit-b/16", 224, 128), ("vit-l/16", 224, 64)]


def timm_twin(model: torch.nn.Module) -> torch.nn.Module:
    cfg = model.config
    return timm.models.vision_transformer.VisionTransformer(
        img_size=cfg.image_size, patch_size=cfg.patch_size, embed_dim=cfg.width, depth=cfg.depth,
        num_heads=cfg.num_heads, mlp_ratio=cfg.mlp_dim / cfg.width, num_classes=cfg.num_classes)


def make_step(model, optimizer, images, labels, autocast: bool):
    def step():
        with torch.autocast(images.device.type, dtype=torch.bfloat16, enabled=autocast):
            loss = F.cross_entropy(model(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return step


def images_per_second(step, batch: int, iters: int, device: str) -> float:
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(iters):
        step()
    if device == "cuda":
        torch.cuda.synchronize()
    return batch * iters / (time.perf_counter() - start)


def bench(name: str, size: int, batch: int, device: str, compile_: bool, rounds: int, iters: int) -> dict:
    ours = vit_model.create_model(name, num_classes=100, image_size=size).to(device)
    peer = timm_twin(ours).to(device)
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in peer.parameters())
    images = torch.randn(batch, 3, size, size, device=device)
    labels = torch.randint(0, 100, (batch,), device=device)
    steps = {}
    for label, model in (("ours", ours), ("timm", peer)):
        runner = torch.compile(model) if compile_ else model
        fused = device == "cuda"
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=fused, foreach=not fused)
        steps[label] = make_step(runner, optimizer, images, labels, autocast=device == "cuda")
        for _ in range(3):
            steps[label]()  # warm-up (and compilation)
    results = {"ours": [], "timm": []}
    for _ in range(rounds):
        for label in results:
            results[label].append(images_per_second(steps[label], batch, iters, device))
    ours_ips, timm_ips = statistics.median(results["ours"]), statistics.median(results["timm"])
    return {"case": f"{name} @{size} b{batch}" + (" compile" if compile_ else ""), "ours": ours_ips,
            "timm": timm_ips, "ratio": ours_ips / timm_ips}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rows = []
    if args.device == "cpu":
        rows = [bench(n, s, b, "cpu", False, args.rounds, args.iters) for n, s, b in CPU_CASES]
    else:
        for compile_ in (False, True):
            rows += [bench(n, s, b, "cuda", compile_, args.rounds, args.iters) for n, s, b in GPU_CASES]
    machine = torch.cuda.get_device_name() if args.device == "cuda" else f"{platform.processor() or 'cpu'}, " \
        f"{torch.get_num_threads()} threads"
    print(f"\nmodel step, forward+backward+AdamW, images/s (median of {args.rounds} alternating rounds); "
          f"{date.today()}, {machine}, torch {torch.__version__}, timm {timm.__version__}")
    print("| case | ours | timm | ours/timm | goal |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['case']} | {r['ours']:.1f} | {r['timm']:.1f} | {r['ratio']:.3f} | >= 1.00 |")


if __name__ == "__main__":
    main()

"""Training-step throughput of our ViT against timm's VisionTransformer with the identical configuration.

Forward + backward + AdamW step, same width/depth/heads/patch, same batch, same dtype. Rounds alternate between
the two models (and which goes first) so that load from anything else on the machine hits both alike; the median
images/s of each and the median of the per-round ratios are reported.

    .venv/bin/python benchmarks/model_step.py                 # CPU cases
    .venv/bin/python benchmarks/model_step.py --threads 1 --clock cpu   # CPU cases on a shared machine
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

CPU_CASES = [  # (our name, image size, batch): the 32 px patch-4 and 224 px patch-16 small variants
    ("vit-ti/4", 32, 32),
    ("vit-ti/16", 224, 8),
    ("vit-s/16", 224, 8),
]
GPU_CASES = [("vit-b/16", 224, 128), ("vit-l/16", 224, 64)]
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


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


def images_per_second(step, batch: int, iters: int, device: str, clock=time.perf_counter) -> float:
    if device == "cuda":
        torch.cuda.synchronize()
    start = clock()
    for _ in range(iters):
        step()
    if device == "cuda":
        torch.cuda.synchronize()
    return batch * iters / (clock() - start)


def bench(name: str, size: int, batch: int, device: str, compile_: bool, rounds: int, iters: int,
          clock=time.perf_counter) -> dict:
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
    for r in range(rounds):
        for label in (("ours", "timm") if r % 2 == 0 else ("timm", "ours")):  # neither always goes first
            results[label].append(images_per_second(steps[label], batch, iters, device, clock))
    per_round = [o / t for o, t in zip(results["ours"], results["timm"], strict=True)]
    return {"case": f"{name} @{size} b{batch}" + (" compile" if compile_ else ""),
            "ours": statistics.median(results["ours"]), "timm": statistics.median(results["timm"]),
            "ratio": statistics.median(per_round), "per_round": per_round}


def _shown(row: dict) -> dict:
    print(row, flush=True)  # each case as it finishes; the table comes last
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--cases", nargs="+", type=int, help="indices into the case list (default: all)")
    parser.add_argument("--clock", default="wall", choices=sorted(CLOCKS),
                        help="cpu: images per CPU-second of this process (use with --threads 1 on a shared machine, "
                             "where wall time depends on what else runs)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.clock == "cpu" and torch.get_num_threads() != 1:
        parser.error("--clock cpu needs --threads 1 (idle intra-op threads spin and would count as work)")
    clock = CLOCKS[args.clock]
    torch.manual_seed(0)
    rows = []
    if args.device == "cpu":
        cases = [CPU_CASES[i] for i in args.cases] if args.cases else CPU_CASES
        rows = [_shown(bench(n, s, b, "cpu", False, args.rounds, args.iters, clock)) for n, s, b in cases]
    else:
        for compile_ in (False, True):
            rows += [_shown(bench(n, s, b, "cuda", compile_, args.rounds, args.iters)) for n, s, b in GPU_CASES]
    machine = torch.cuda.get_device_name() if args.device == "cuda" else f"{platform.processor() or 'cpu'}, " \
        f"{torch.get_num_threads()} threads"
    print(f"\nmodel step, forward+backward+AdamW, images per {args.clock} second (median of {args.rounds} "
          f"alternating rounds of {args.iters} steps); "
          f"{date.today()}, {machine}, torch {torch.__version__}, timm {timm.__version__}")
    print("| case | ours | timm | ours/timm (median of rounds) | per round | goal |\n|---|---|---|---|---|---|")
    for r in rows:
        rounds = ", ".join(f"{x:.2f}" for x in r["per_round"])
        print(f"| {r['case']} | {r['ours']:.1f} | {r['timm']:.1f} | {r['ratio']:.3f} | {rounds} | >= 1.00 |")


if __name__ == "__main__":
    main()

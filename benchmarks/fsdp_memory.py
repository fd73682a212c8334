"""Per-rank training-state memory under our FSDP2 sharding (``pipelines.train.parallelize.build_model``) for 1, 2
and 4 CPU workers, against the same model unsharded in one plain process (no FSDP, no process group).

Each worker is a process of a gloo group (``torch.multiprocessing.spawn``). It builds the model exactly as a
training run does (meta device -> ``fully_shard`` per block and root -> allocate shards -> initialise), builds the
run's AdamW (``pipelines.train.optim.build_optimizer``), takes one forward + backward + optimiser step on a tiny
batch so gradients and Adam moments exist, and then counts the bytes of the tensors it holds locally: parameter
shards, gradient shards and optimiser state (``exp_avg``, ``exp_avg_sq``, ``step``). Peak RSS is the process's
``ru_maxrss``; the current resident set is also taken after imports ("before"), after the model is built and
initialised ("built"), after the step, and after the step once glibc's ``malloc_trim`` has returned free heap
pages ("trimmed": live tensors, libraries and buffers, without memory freed but kept by the allocator).

    .venv/bin/python benchmarks/fsdp_memory.py                         # vit-b/16 at 224, 1/2/4 workers
    .venv/bin/python benchmarks/fsdp_memory.py --model vit-ti/16 --workers 1 2
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import platform
import resource
import socket
import tempfile
from dataclasses import replace
from datetime import date
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch.distributed.device_mesh import init_device_mesh

import vit_model
from pipelines.train.config import OptimSection, ParallelSection
from pipelines.train.optim import build_optimizer
from pipelines.train.parallelize import build_model

MiB = 2**20


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _local(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.to_local() if hasattr(tensor, "to_local") else tensor


def _bytes(tensors) -> int:
    return sum(_local(t).numel() * _local(t).element_size() for t in tensors)


def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / MiB


def _trimmed_rss_mib() -> float:
    """Resident set after glibc hands its free heap pages back: what live tensors and libraries occupy."""
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    return _rss_mib()


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def state_bytes(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, int]:
    """Bytes this process holds of parameters, gradients and optimiser state (local shards of DTensors)."""
    params = list(model.parameters())
    optim = [v for state in optimizer.state.values() for v in state.values() if isinstance(v, torch.Tensor)]
    return {"params": _bytes(params), "grads": _bytes(p.grad for p in params if p.grad is not None),
            "optim": _bytes(optim)}


def one_step(model, optimizer, *, image_size: int, batch: int) -> None:
    images = torch.randn(batch, 3, image_size, image_size)
    labels = torch.randint(0, 10, (batch,))
    F.cross_entropy(model(images), labels).backward()
    optimizer.step()


def _measure(rank: int, world: int, port: int, args: argparse.Namespace, out_dir: str) -> None:
    torch.set_num_threads(1)
    rss_before = _rss_mib()
    if world == 0:  # the peer: the plain model in this process, no FSDP
        model = vit_model.create_model(args.model, num_classes=args.num_classes, image_size=args.image_size)
    else:
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
        mesh = init_device_mesh("cpu", (world,))
        model = build_model(args.model, num_classes=args.num_classes, image_size=args.image_size, options={},
                            seed=0, parallel=replace(ParallelSection(), init=args.init), mesh=mesh,
                            device=torch.device("cpu"))
    rss_built = _rss_mib()
    optimizer = build_optimizer(model, OptimSection())
    one_step(model, optimizer, image_size=args.image_size, batch=args.batch)
    result = {"rank": rank, **state_bytes(model, optimizer), "rss_before_mib": rss_before,
              "rss_built_mib": rss_built, "rss_after_step_mib": _rss_mib(), "peak_rss_mib": _peak_rss_mib(),
              "rss_trimmed_mib": _trimmed_rss_mib()}
    if world:
        dist.barrier()
        dist.destroy_process_group()
    Path(out_dir, f"rank{rank}.json").write_text(json.dumps(result))


def run_case(world: int, args: argparse.Namespace) -> list[dict]:
    """``world`` = 0: the unsharded peer in one process; otherwise ``world`` FSDP workers."""
    with tempfile.TemporaryDirectory() as out_dir:
        mp.start_processes(_measure, args=(world, _free_port(), args, out_dir), nprocs=max(world, 1),
                           start_method="spawn")
        return [json.loads(p.read_text()) for p in sorted(Path(out_dir).glob("rank*.json"))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="vit-b/16")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--num-classes", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=1, help="images per worker for the one step")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--init", default=ParallelSection().init, choices=["broadcast", "sharded"])
    args = parser.parse_args()

    peer = run_case(0, args)[0]
    total = peer["params"] + peer["grads"] + peer["optim"]
    print(f"\nFSDP2 per-rank training state, {args.model} @{args.image_size} ({peer['params'] // 4:,} parameters, "
          f"fp32, AdamW), init={args.init}; {date.today()}, {platform.machine()} {os.cpu_count()} CPUs, "
          f"torch {torch.__version__}")
    print("| workers | rank | params MiB | grads MiB | optim MiB | total MiB | share of unsharded | goal 1/N +-2% "
          "| peak RSS MiB | RSS before model / built / after step / trimmed MiB |")
    print("|---|---|---|---|---|---|---|---|---|---|")

    def row(label, rank, r, world):
        mine = r["params"] + r["grads"] + r["optim"]
        share = mine / total
        ok = "" if world is None else ("met" if abs(share * world - 1) <= 0.02 else "MISSED")
        goal = "(peer)" if world is None else f"{1 / world:.4f} {ok}"
        print(f"| {label} | {rank} | {r['params'] / MiB:.1f} | {r['grads'] / MiB:.1f} | {r['optim'] / MiB:.1f} | "
              f"{mine / MiB:.1f} | {share:.4f} | {goal} | {r['peak_rss_mib']:.0f} | "
              f"{r['rss_before_mib']:.0f} / {r['rss_built_mib']:.0f} / {r['rss_after_step_mib']:.0f} / "
              f"{r['rss_trimmed_mib']:.0f} |")

    row("unsharded (plain)", "-", peer, None)
    for world in args.workers:
        for r in run_case(world, args):
            row(f"FSDP2 x{world}", r["rank"], r, world)


if __name__ == "__main__":
    main()

"""Per-step training metrics: loss, learning rate, gradient norm, throughput, time waiting for data, cumulative
training FLOPs (3 x forward FLOPs x images, from vit_model's accounting), achieved TFLOP/s and MFU.

Metric names are the keys below; they are what Ray Train reports, Tune sees and MLflow stores.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch

import vit_model
from pipelines.metric_names import (  # noqa: F401 (re-exported: the loop and the study use metrics.X)
    DATA_WAIT,
    EPOCH,
    FEWSHOT_PREFIX,
    GRAD_NORM,
    IMAGES_PER_S,
    IMAGES_SEEN,
    LOSS,
    LR,
    MFU,
    STEP,
    STEP_TIME,
    TEST_TOP1,
    TFLOPS,
    TRAIN_FLOPS,
    VAL_TOP1,
    WALL_TIME,
)

# Dense bf16 tensor-core peak of one device, TFLOP/s (vendor datasheets). Matched as a substring of the device
# name, longest key first; ``metrics.peak_tflops`` overrides it (and is the only way to get MFU on a CPU).
PEAK_TFLOPS = {
    "H200": 989.0,
    "H100 PCIe": 756.0,
    "H100": 989.0,
    "A100": 312.0,
    "L40S": 362.0,
    "L4": 121.0,
    "A10G": 70.0,
    "V100": 125.0,
    "T4": 65.0,
}



def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return device.type


def peak_flops(device: torch.device, override_tflops: float | None = None, table=PEAK_TFLOPS) -> float | None:
    """FLOP/s peak of one device: the override, else the table's entry for the device's name, else None."""
    if override_tflops is not None:
        return override_tflops * 1e12
    name = device_name(device)
    for key in sorted(table, key=len, reverse=True):
        if key.lower() in name.lower():
            return table[key] * 1e12
    return None


def forward_flops_per_image(model) -> int:
    return vit_model.forward_flops(model)


@dataclass
class StepMeter:
    """Times one optimiser step and the part of it spent waiting for batches."""

    started: float = field(default_factory=time.perf_counter)
    data_wait: float = 0.0

    def wait_for(self, iterator):
        t0 = time.perf_counter()
        item = next(iterator)
        self.data_wait += time.perf_counter() - t0
        return item


@dataclass
class Throughput:
    """Everything per step that follows from the step's duration and the FLOP accounting."""

    forward_flops: int  # per image
    global_batch: int
    num_devices: int
    peak_flops: float | None  # per device

    def step_metrics(self, *, step: int, loss: float, lr: float, grad_norm: float, meter: StepMeter,
                     images_seen: int, epoch_size: int | None) -> dict[str, float]:
        elapsed = max(time.perf_counter() - meter.started, 1e-9)
        achieved = vit_model.training_flops(self.forward_flops, self.global_batch) / elapsed
        metrics = {
            STEP: step, LOSS: loss, LR: lr, GRAD_NORM: grad_norm,
            IMAGES_PER_S: self.global_batch / elapsed, STEP_TIME: elapsed, DATA_WAIT: meter.data_wait / elapsed,
            IMAGES_SEEN: images_seen, TRAIN_FLOPS: vit_model.training_flops(self.forward_flops, images_seen),
            TFLOPS: achieved / 1e12,
        }
        if epoch_size:
            metrics[EPOCH] = images_seen / epoch_size
        if self.peak_flops:
            metrics[MFU] = achieved / (self.peak_flops * self.num_devices)
        return metrics

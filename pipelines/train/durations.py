"""Training lengths in steps, images or epochs, converted to optimiser steps in one place.

A duration is written ``"<amount> <unit>"`` with unit ``steps``, ``images`` or ``epochs`` (singular accepted):
``"500 steps"``, ``"1.2e6 images"``, ``"3 epochs"``; a bare whole number means steps.
One step consumes one global batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

UNITS = ("steps", "images", "epochs")


@dataclass(frozen=True)
class Duration:
    amount: float
    unit: str  # one of UNITS

    def __str__(self) -> str:
        return f"{self.amount:g} {self.unit}"


def parse_duration(value, field: str = "duration") -> Duration:
    """``"3 epochs"`` -> ``Duration(3.0, "epochs")``; errors name ``field``."""
    if isinstance(value, Duration):
        return value
    if isinstance(value, bool):
        raise ValueError(f"{field}: expected '<amount> steps|images|epochs', got {value!r}")
    if isinstance(value, int):
        value = f"{value} steps"
    if not isinstance(value, str):
        raise ValueError(f"{field}: expected '<amount> steps|images|epochs', got {value!r}")
    parts = value.replace("_", "").split()
    if len(parts) == 1 and parts[0].isdigit():  # a bare whole number (e.g. from a key=value override): steps
        parts.append("steps")
    if len(parts) != 2:
        raise ValueError(f"{field}: expected '<amount> steps|images|epochs', got {value!r}")
    try:
        amount = float(parts[0])
    except ValueError:
        raise ValueError(f"{field}: {parts[0]!r} is not a number (in {value!r})") from None
    unit = parts[1].lower()
    unit = unit if unit.endswith("s") else unit + "s"
    if unit not in UNITS:
        raise ValueError(f"{field}: unknown unit {parts[1]!r} in {value!r}; use one of {', '.join(UNITS)}")
    if not math.isfinite(amount) or amount < 0:
        raise ValueError(f"{field}: amount must be a finite number >= 0, got {value!r}")
    if unit == "steps" and amount != int(amount):
        raise ValueError(f"{field}: a number of steps must be whole, got {value!r}")
    return Duration(amount, unit)


def to_steps(value, *, global_batch_size: int, epoch_size: int | None = None, field: str = "duration") -> int:
    """Optimiser steps for a duration: images / global batch, epochs x epoch size / global batch (rounded).

    ``epoch_size`` is the number of training examples; it is needed only for durations in epochs.
    """
    duration = parse_duration(value, field)
    if duration.unit == "steps":
        return int(duration.amount)
    if duration.unit == "images":
        return round(duration.amount / global_batch_size)
    if not epoch_size:
        raise ValueError(f"{field}: {duration} needs the training set size, which is unknown here")
    return round(duration.amount * epoch_size / global_batch_size)


def steps_to_images(steps: int, global_batch_size: int) -> int:
    return steps * global_batch_size

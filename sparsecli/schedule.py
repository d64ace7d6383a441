"""Sparsity-over-time curves shared by passes: pure functions of training progress.

`cubic` is gradual magnitude pruning (Zhu & Gupta, 2017, "To prune, or not to prune"): prune fast
while the network has redundancy, slowly as the target nears, so fine-tuning can keep up.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Curve = Literal["constant", "linear", "cubic"]


class ScheduleSpec(BaseModel):
    """When a pass reaches its target, in (fractional) epochs of fine-tuning."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    start_epoch: float = Field(0.0, ge=0, description="Epoch at which pruning starts.")
    end_epoch: float | None = Field(
        None, ge=0, description="Epoch at which the target is reached; default: the last fine-tuning epoch."
    )
    curve: Curve = Field(
        "constant", description="constant (one shot at start), linear, or cubic (gradual magnitude pruning)."
    )
    every_steps: int = Field(10, ge=1, description="Masks are recomputed at most every this many steps.")

    @model_validator(mode="after")
    def _ordered(self) -> ScheduleSpec:
        if self.end_epoch is not None and self.end_epoch < self.start_epoch:
            raise ValueError(f"end_epoch ({self.end_epoch}) must be >= start_epoch ({self.start_epoch})")
        return self


def target_at(epoch: float, target: float, spec: ScheduleSpec, total_epochs: float, initial: float = 0.0) -> float:
    """Sparsity the schedule asks for at `epoch` (fractional), rising from `initial` to `target`."""
    end = spec.end_epoch if spec.end_epoch is not None else total_epochs
    if spec.curve == "constant" or end <= spec.start_epoch:
        return target if epoch >= spec.start_epoch else initial
    if epoch < spec.start_epoch:
        return initial
    progress = min(1.0, (epoch - spec.start_epoch) / (end - spec.start_epoch))
    if spec.curve == "linear":
        return initial + (target - initial) * progress
    return target + (initial - target) * (1.0 - progress) ** 3


def stepped(epoch: float, target: float, steps: int, total_epochs: float) -> float:
    """`target` in `steps` equal increments at epochs 0, E/steps, 2E/steps, ..., each followed by fine-tuning."""
    if steps <= 1 or total_epochs <= 0:
        return target
    done = min(steps, math.floor(epoch * steps / total_epochs + 1e-9) + 1)
    return target * done / steps


def cosine_decay(epoch: float, initial: float, end_epoch: float) -> float:
    """`initial` at epoch 0, falling along half a cosine to 0 at `end_epoch` and staying there.

    RigL's drop fraction (Evci et al., 2020): many connections move early, the mask settles late.
    """
    if end_epoch <= 0 or epoch >= end_epoch:
        return 0.0
    return initial * 0.5 * (1.0 + math.cos(math.pi * epoch / end_epoch))

"""Unstructured magnitude pruning, one-shot or gradual.

Weights with the smallest |w| are set to zero, ranked across all selected layers (`scope: global`)
or within each layer (`scope: per_layer`, with optional per-layer targets). With a `cubic` schedule
this is gradual magnitude pruning (Zhu & Gupta, 2017): the target rises during fine-tuning and the
network recovers as it goes. Masks are parametrizations, so pruned weights stay zero after every
optimizer step.

    passes:
      - kind: magnitude
        target: 0.8
        scope: global
        exclude: ["*classifier*"]
        schedule: {start_epoch: 0, end_epoch: 4, curve: cubic}

`finish` leaves the same layers with zeros baked into their weights (no parametrization remains).
onnxruntime runs them with dense kernels: the win is size after compression, not latency.
"""

from __future__ import annotations

import fnmatch
from typing import Any, Literal

from pydantic import Field, model_validator
from torch import nn

from sparsecli.passes import importance, masking
from sparsecli.passes.base import Pass, PassContext, PassSpec
from sparsecli.passes.selection import check_patterns, global_topk, per_layer_topk, select_modules
from sparsecli.schedule import ScheduleSpec, target_at


class MagnitudeSpec(PassSpec):
    kind: Literal["magnitude"] = "magnitude"
    target: float = Field(..., ge=0, lt=1, description="Fraction of the selected weights set to zero.")
    scope: Literal["global", "per_layer"] = Field(
        "global", description="Rank weights across all selected layers, or within each layer."
    )
    per_layer: dict[str, float] = Field(
        default_factory=dict,
        description="Per-module targets (fqn glob -> target) overriding `target`; needs scope per_layer.",
    )
    schedule: ScheduleSpec = Field(default_factory=ScheduleSpec, description="How the target rises over time.")

    @model_validator(mode="after")
    def _per_layer_needs_scope(self) -> MagnitudeSpec:
        if self.per_layer and self.scope != "per_layer":
            raise ValueError("per_layer targets need scope: per_layer")
        bad = {k: v for k, v in self.per_layer.items() if not 0 <= v < 1}
        if bad:
            raise ValueError(f"per_layer targets must be in [0, 1), got {bad}")
        return self


class MagnitudePass(Pass):
    kind = "magnitude"
    spec_type = MagnitudeSpec
    spec: MagnitudeSpec

    def _prepare(self, model: nn.Module, ctx: PassContext) -> None:
        self.ctx = ctx
        self.modules = select_modules(model, self.spec.include, self.spec.exclude)
        check_patterns(list(self.modules), self.spec.per_layer, "per_layer")
        self.layer_targets = {name: self._layer_target(name) for name in self.modules}
        for module in self.modules.values():
            masking.attach(module)
        self.applied = 0.0
        self._apply(target_at(0.0, self.spec.target, self.spec.schedule, ctx.total_epochs))

    def _layer_target(self, name: str) -> float:
        hits = [t for pattern, t in self.spec.per_layer.items() if fnmatch.fnmatchcase(name, pattern)]
        return hits[-1] if hits else self.spec.target

    def _on_step(self, model: nn.Module, step: int) -> None:
        if step % self.spec.schedule.every_steps:
            return
        self._apply(target_at(self.ctx.epoch_at(step), self.spec.target, self.spec.schedule, self.ctx.total_epochs))

    def _apply(self, target: float) -> None:
        """Prune to `target` (never less than already applied: pruned weights stay pruned)."""
        if target <= self.applied:
            return
        scores = {name: importance.magnitude(m.weight) for name, m in self.modules.items()}
        if self.spec.scope == "global":
            masks = global_topk(scores, target)
        else:
            fraction = target / self.spec.target if self.spec.target else 1.0
            masks = per_layer_topk(scores, {n: t * fraction for n, t in self.layer_targets.items()})
        for name, keep in masks.items():
            masking.set_mask(self.modules[name], keep)
        self.applied = target

    def _finish(self, model: nn.Module) -> nn.Module:
        self._apply(self.spec.target)
        for module in self.modules.values():
            masking.bake(module)
        return model

    def _describe(self) -> dict[str, Any]:
        return {"modules": list(self.modules), "applied_target": self.applied}

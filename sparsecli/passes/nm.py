"""N:M semi-structured sparsity: at most N non-zeros in every M consecutive weights along the input.

The pattern sparse tensor cores run (2:4 on NVIDIA Ampere and later, Mishra et al., 2021,
"Accelerating Sparse Deep Neural Networks"; learned gradually in Zhou et al., 2021). Groups run
along the input channels at each output channel and kernel position, as NVIDIA's ASP lays them out.
In each group the M - N smallest weights go. One-shot with the default `constant` schedule; with
`linear` or `cubic` the share of those weights removed rises to 1 during fine-tuning (smallest
first across the layer), so the network adapts before the pattern is complete. Layers whose input
size is not a multiple of M (a first conv on one channel) are left dense and named in the notes.

    passes:
      - kind: nm
        n: 2
        m: 4
        exclude: ["*classifier*"]
        schedule: {curve: linear, end_epoch: 1}

`finish` leaves the same layers with zeros in the N:M pattern baked in, and the report states each
layer's N:M compliance (the share of groups with at most N non-zeros). onnxruntime on CPU runs them
with dense kernels: the win shows on hardware with sparse tensor cores, and in size.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator
from torch import nn

from sparsecli.measure import nm_compliance
from sparsecli.passes import importance, masking
from sparsecli.passes.base import Pass, PassContext, PassSpec
from sparsecli.passes.selection import gradual_nm_mask, select_modules
from sparsecli.schedule import ScheduleSpec, target_at


class NMSpec(PassSpec):
    kind: Literal["nm"] = "nm"
    n: int = Field(2, ge=1, description="Non-zeros kept in each group.")
    m: int = Field(4, ge=2, description="Group size: consecutive weights along the input dimension.")
    schedule: ScheduleSpec = Field(
        default_factory=ScheduleSpec, description="How the share of the pattern applied rises; constant = one shot."
    )

    @model_validator(mode="after")
    def _n_below_m(self) -> NMSpec:
        if self.n >= self.m:
            raise ValueError(f"n must be < m, got {self.n}:{self.m}")
        return self


class NMPass(Pass):
    kind = "nm"
    spec_type = NMSpec
    spec: NMSpec

    def _prepare(self, model: nn.Module, ctx: PassContext) -> None:
        self.ctx = ctx
        chosen = select_modules(model, self.spec.include, self.spec.exclude)
        self.modules = {name: m for name, m in chosen.items() if m.weight.shape[1] % self.spec.m == 0}
        self.skipped = sorted(set(chosen) - set(self.modules))
        for module in self.modules.values():
            masking.attach(module)
        self.applied = 0.0
        self._apply(target_at(0.0, 1.0, self.spec.schedule, ctx.total_epochs))

    def _on_step(self, model: nn.Module, step: int) -> None:
        if step % self.spec.schedule.every_steps == 0:
            self._apply(target_at(self.ctx.epoch_at(step), 1.0, self.spec.schedule, self.ctx.total_epochs))

    def _apply(self, fraction: float) -> None:
        """Remove `fraction` of the N:M candidates; masked weights score lowest, so they stay removed."""
        if fraction <= self.applied:
            return
        for module in self.modules.values():
            keep = masking.find(module).mask
            scores = importance.magnitude(module.weight).masked_fill(~keep, -1.0)
            masking.set_mask(module, gradual_nm_mask(scores, self.spec.n, self.spec.m, fraction) & keep)
        self.applied = fraction

    def _finish(self, model: nn.Module) -> nn.Module:
        self._apply(1.0)
        self.compliance = self.layer_compliance()
        for module in self.modules.values():
            masking.bake(module)
        return model

    def layer_compliance(self) -> dict[str, float | None]:
        """Share of each layer's groups with at most n non-zeros, measured on the weights."""
        return {
            name: nm_compliance(m.weight.detach().cpu().numpy(), self.spec.n, self.spec.m)
            for name, m in self.modules.items()
        }

    def _describe(self) -> dict[str, Any]:
        notes = [f"{name}: input size not a multiple of {self.spec.m}, left dense" for name in self.skipped]
        compliance = getattr(self, "compliance", None) or self.layer_compliance()
        return {"modules": list(self.modules), "applied": self.applied, "nm_compliance": compliance, "notes": notes}

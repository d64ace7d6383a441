"""Group lasso on output channels: whole channels pushed towards zero, so structured removal is cheap.

The loss gains λ·Σ_c ||W_c||₂, the sum over the selected layers' output channels of each channel's
L2 norm (the group lasso, Yuan & Lin, 2006; for networks Wen et al., 2016, "Learning Structured
Sparsity in Deep Neural Networks"). Unlike L1 on single weights, the penalty is cheapest when a
whole channel is zero, so it empties channels rather than scattering zeros. A later `channels`
pass (importance `l1` or `l2`) then removes the emptied channels at little cost in accuracy. The
penalty acts on the weights only: a BatchNorm after the layer still adds its shift β to an emptied
channel, a constant that removing the channel drops and the fine-tuning after removal absorbs.

    passes:
      - kind: group_lasso
        strength: 0.002
        threshold: 0.05
        exclude: ["*classifier*"]

`finish` zeroes the channels whose norm is below `threshold` (when given) and leaves the layers'
shapes alone; nothing stays attached.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from pydantic import Field
from torch import nn

from sparsecli.passes import masking
from sparsecli.passes.base import Pass, PassContext, PassSpec
from sparsecli.passes.selection import select_modules


class GroupLassoSpec(PassSpec):
    kind: Literal["group_lasso"] = "group_lasso"
    strength: float = Field(2e-3, ge=0, description="λ: strength of Σ over output channels of ||W_c||₂ in the loss.")
    threshold: float | None = Field(
        None, ge=0, description="At finish, output channels whose L2 norm is below this become exactly zero."
    )


def channel_norms(weight: torch.Tensor) -> torch.Tensor:
    """L2 norm of each output channel (row) of a Linear or Conv weight."""
    return torch.linalg.vector_norm(weight.flatten(1), dim=1)


class GroupLassoPass(Pass):
    kind = "group_lasso"
    spec_type = GroupLassoSpec
    spec: GroupLassoSpec

    def _prepare(self, model: nn.Module, ctx: PassContext) -> None:
        self.modules = select_modules(model, self.spec.include, self.spec.exclude)
        self.before = {name: self._summary(m) for name, m in self.modules.items()}
        self.after: dict[str, dict[str, Any]] = {}

    def _penalty(self, model: nn.Module) -> torch.Tensor | None:
        # vector_norm's gradient is zero at a zero channel, so emptied channels stay finite
        return self.spec.strength * torch.stack([channel_norms(m.weight).sum() for m in self.modules.values()]).sum()

    def _finish(self, model: nn.Module) -> nn.Module:
        if self.spec.threshold is not None:
            for module in self.modules.values():
                alive = channel_norms(module.weight.detach()) >= self.spec.threshold
                shape = (-1,) + (1,) * (module.weight.dim() - 1)
                masking.zero_permanently(module, alive.view(shape).expand_as(module.weight))
        self.after = {name: self._summary(m) for name, m in self.modules.items()}
        return model

    def _summary(self, module: nn.Module) -> dict[str, Any]:
        norms = channel_norms(module.weight.detach())
        return {
            "channels": len(norms),
            "zero_channels": int((norms == 0).sum()),
            "min_norm": float(norms.min()),
            "median_norm": float(norms.median()),
            "max_norm": float(norms.max()),
        }

    def _describe(self) -> dict[str, Any]:
        return {"layers": {name: {"before": self.before[name], "after": self.after.get(name)} for name in self.modules}}

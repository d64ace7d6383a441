"""Activation sparsity: an L1 penalty on the outputs of selected modules, so fewer of them fire.

The loss gains λ·Σ|a| per sample over the outputs of the selected activation modules (ReLU, GELU,
...), Keras's activity regularizer (the sparse-coding penalty of Lee et al., 2007; for ReLU networks
Glorot et al., 2011, "Deep Sparse Rectifier Neural Networks"; Kurtz et al., 2020, exploit it for speed).
After a ReLU the penalty pushes pre-activations below zero, so more outputs are exactly zero;
`sparsecli analyze MODEL --data ...` measures the effect on the exported model. Forward hooks keep the
outputs of the training forward pass; the penalty consumes them.

    passes:
      - kind: activation
        strength: 0.0005
        include: ["features.*"]

`finish` removes the hooks and leaves the weights as trained: the sparsity is in the activations,
not in the weights, and the layers keep their shapes.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from pydantic import Field
from torch import nn

from sparsecli.passes.base import Pass, PassContext, PassSpec
from sparsecli.passes.selection import select_modules

ACTIVATION_TYPES: tuple[type[nn.Module], ...] = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.GELU,
    nn.SiLU,
    nn.ELU,
    nn.Hardswish,
)


class ActivationSpec(PassSpec):
    kind: Literal["activation"] = "activation"
    strength: float = Field(5e-4, ge=0, description="λ: strength of Σ|a| per sample over the selected outputs.")


class ActivationPass(Pass):
    kind = "activation"
    spec_type = ActivationSpec
    spec: ActivationSpec

    def _prepare(self, model: nn.Module, ctx: PassContext) -> None:
        self.modules = select_modules(model, self.spec.include, self.spec.exclude, types=ACTIVATION_TYPES)
        self.outputs: list[torch.Tensor] = []
        self.last_penalty: float | None = None
        self.handles = [m.register_forward_hook(self._record) for m in self.modules.values()]

    def _record(self, module: nn.Module, _inputs: Any, output: torch.Tensor) -> None:
        # only training forwards count: evaluation and export runs leave nothing behind
        if module.training and torch.is_grad_enabled():
            self.outputs.append(output)

    def _penalty(self, model: nn.Module) -> torch.Tensor | None:
        if not self.outputs:
            return None
        total = torch.stack([out.abs().sum() / max(1, len(out)) for out in self.outputs]).sum()
        self.outputs.clear()
        self.last_penalty = float(total.detach())
        return self.spec.strength * total

    def _finish(self, model: nn.Module) -> nn.Module:
        for handle in self.handles:
            handle.remove()
        self.outputs.clear()
        return model

    def _describe(self) -> dict[str, Any]:
        return {"modules": list(self.modules), "last_l1_per_sample": self.last_penalty}

"""Dynamic sparse training: a fixed sparsity whose connections are dropped and regrown while training.

Each selected layer keeps exactly `target` of its weights at zero throughout. Every `every` steps a
`fraction` of its active weights, the smallest in magnitude, is dropped and as many inactive ones
are regrown: where the gradient of the masked weight is largest (`grow: gradient`, RigL: Evci et
al., 2020, "Rigging the Lottery") or at random (`grow: random`, SET: Mocanu et al., 2018). Regrown
weights start at zero. The fraction decays along a cosine to zero at `end_epoch`, after which the
mask stays fixed and training converges. It works on a trained model and from scratch
(`finetune.from_scratch: true`, the setting of both papers), where the first mask is random.

    passes:
      - kind: regrow
        target: 0.9
        every: 20
        fraction: 0.3
        grow: gradient
        exclude: ["*classifier*"]
    finetune: {epochs: 30, from_scratch: true}

`finish` leaves the same layers with the last mask's zeros baked in; no hook or parametrization remains.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from pydantic import Field
from torch import nn

from sparsecli.passes import importance, masking
from sparsecli.passes.base import Pass, PassContext, PassSpec
from sparsecli.passes.selection import drop_and_grow, per_layer_topk, select_modules
from sparsecli.schedule import cosine_decay


class RegrowSpec(PassSpec):
    kind: Literal["regrow"] = "regrow"
    target: float = Field(..., ge=0, lt=1, description="Sparsity each selected layer keeps throughout.")
    every: int = Field(20, ge=1, description="Optimizer steps between drop-and-regrow updates.")
    fraction: float = Field(
        0.3, gt=0, le=1, description="Share of active weights dropped and regrown at the first update; decays (cosine)."
    )
    grow: Literal["gradient", "random"] = Field(
        "gradient", description="Regrow where |gradient| of the masked weight is largest (RigL) or at random (SET)."
    )
    end_epoch: float | None = Field(
        None, ge=0, description="Epoch from which the mask stays fixed; default: 3/4 of fine-tuning (as RigL)."
    )


class RegrowPass(Pass):
    kind = "regrow"
    spec_type = RegrowSpec
    spec: RegrowSpec

    def _prepare(self, model: nn.Module, ctx: PassContext) -> None:
        self.ctx = ctx
        self.modules = select_modules(model, self.spec.include, self.spec.exclude)
        scores = {name: importance.magnitude(m.weight) for name, m in self.modules.items()}
        for name, keep in per_layer_topk(scores, dict.fromkeys(scores, self.spec.target)).items():
            masking.set_mask(self.modules[name], keep)
        self.initial = {name: masking.find(m).mask.clone() for name, m in self.modules.items()}
        self.updates = 0
        self.grads: dict[str, torch.Tensor] = {}
        self.handles = []
        if self.spec.grow == "gradient":
            self.handles = [masking.find(m).register_forward_hook(self._capture(n)) for n, m in self.modules.items()]

    def _capture(self, name: str):
        """Forward hook on the mask: a tensor hook on its output (the masked weight) keeps dL/dw.

        The parameter's own gradient is zero wherever the mask is; the masked weight's is not.
        Gradients of one step are summed, as a weight read twice in a step gets two.
        """

        def keep_gradient(grad: torch.Tensor) -> None:
            self.grads[name] = grad if name not in self.grads else self.grads[name] + grad

        def on_forward(_mask: nn.Module, _inputs: Any, output: torch.Tensor) -> None:
            if output.requires_grad:
                output.register_hook(keep_gradient)

        return on_forward

    @property
    def end_epoch(self) -> float:
        return self.spec.end_epoch if self.spec.end_epoch is not None else 0.75 * self.ctx.total_epochs

    def _on_step(self, model: nn.Module, step: int) -> None:
        fraction = cosine_decay(self.ctx.epoch_at(step), self.spec.fraction, self.end_epoch)
        if step % self.spec.every == 0 and fraction > 0:
            self._update(fraction)
        self.grads.clear()  # the next step's backward brings fresh ones

    @torch.no_grad()
    def _update(self, fraction: float) -> None:
        for name, module in self.modules.items():
            keep = masking.find(module).mask.clone()  # set_mask updates the buffer in place
            weight = module.weight
            grow_scores = (
                importance.gradient_magnitude(self.grads[name])
                if self.spec.grow == "gradient" and name in self.grads
                else importance.random_scores(weight)
            )
            new = drop_and_grow(keep, importance.magnitude(weight), grow_scores, int(fraction * int(keep.sum())))
            masking.set_mask(module, new)  # dropped weights' originals become zero
            masking.original(module).masked_fill_(new & ~keep, 0.0)  # regrown weights start at zero
        self.updates += 1

    def _finish(self, model: nn.Module) -> nn.Module:
        for handle in self.handles:
            handle.remove()
        self.overlap = self.mask_overlap()
        for module in self.modules.values():
            masking.bake(module)
        return model

    def mask_overlap(self) -> float:
        """Share of the first mask's active weights still active: 1.0 means the mask never moved."""
        masks = {name: masking.find(m).mask for name, m in self.modules.items()}
        kept = sum(int((masks[n] & self.initial[n]).sum()) for n in masks)
        return kept / max(1, sum(int(m.sum()) for m in self.initial.values()))

    def state_dict(self) -> dict[str, Any]:
        return {"updates": self.updates, "initial": self.initial}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.updates = int(state["updates"])
        self.initial = state["initial"]

    def _describe(self) -> dict[str, Any]:
        overlap = getattr(self, "overlap", None)
        if overlap is None and hasattr(self, "initial"):
            overlap = self.mask_overlap()
        return {"modules": list(self.modules), "updates": self.updates, "mask_overlap_with_initial": overlap}

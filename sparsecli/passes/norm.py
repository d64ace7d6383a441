"""Norm penalties (kinds `l1`, `l2`, `l1_l2`): weights pushed towards zero while fine-tuning, then cut.

What Keras calls kernel regularizers: λ1·Σ|w| (the lasso, Tibshirani, 1996) and/or λ2·Σw² (weight
decay in the loss, Krogh & Hertz, 1992) over the selected layers' weights join the fine-tuning loss.
L1 drives unneeded weights to (nearly) zero; L2 shrinks all weights in proportion. At `finish` the
weights with |w| < `threshold` ("close to zero, computationally speaking") and/or the smallest up to
`target` (ranked across the selected layers) are set to zero, as Han et al. (2015) prune after
L1/L2-regularised training. Each layer's L1 and L2 norm before and after goes into the report.

    passes:
      - kind: l1
        l1: 0.00005
        threshold: 0.01
        exclude: ["*classifier*"]

`finish` leaves the same layers with zeros in their weights (no parametrization, no hook).

The three kinds differ only in which strengths they take, so one class, `NormPass`, holds the method
and `L1Pass`, `L2Pass`, `L1L2Pass` only name their kind and spec: a kind's class is in the file of
the method it belongs to, the way `group_lasso` has its own file because its penalty differs.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from pydantic import Field
from torch import nn

from sparsecli.measure import weight_stats
from sparsecli.passes import importance, masking
from sparsecli.passes.base import Pass, PassContext, PassSpec
from sparsecli.passes.selection import global_topk, select_modules


class NormSpec(PassSpec):
    """What every norm penalty shares: how weights are cut at the end."""

    threshold: float | None = Field(
        None, ge=0, description="At finish, weights with |w| below this become exactly zero."
    )
    target: float | None = Field(
        None, ge=0, lt=1, description="At finish, the smallest weights up to this fraction (across layers) become zero."
    )


class L1Spec(NormSpec):
    kind: Literal["l1"] = "l1"
    l1: float = Field(5e-5, ge=0, description="λ1: strength of Σ|w| over the selected weights in the loss.")


class L2Spec(NormSpec):
    kind: Literal["l2"] = "l2"
    l2: float = Field(5e-4, ge=0, description="λ2: strength of Σw² over the selected weights in the loss.")


class L1L2Spec(L1Spec, L2Spec):
    kind: Literal["l1_l2"] = "l1_l2"  # type: ignore[assignment]


def _norms(weight: torch.Tensor) -> dict[str, float]:
    stats = weight_stats(weight)
    return {"l1": stats["l1"], "l2": stats["l2"], "sparsity": stats["sparsity"]}


class NormPass(Pass):
    """λ1·Σ|w| + λ2·Σw² as a loss term; zeros below `threshold` or up to `target` at finish."""

    spec: L1Spec | L2Spec | L1L2Spec

    def _prepare(self, model: nn.Module, ctx: PassContext) -> None:
        self.modules = select_modules(model, self.spec.include, self.spec.exclude)
        self.before = {name: _norms(m.weight) for name, m in self.modules.items()}
        self.after: dict[str, dict[str, float]] = {}

    def _penalty(self, model: nn.Module) -> torch.Tensor | None:
        l1, l2 = getattr(self.spec, "l1", 0.0), getattr(self.spec, "l2", 0.0)
        weights = [m.weight for m in self.modules.values()]
        terms = [l1 * w.abs().sum() for w in weights if l1] + [l2 * w.square().sum() for w in weights if l2]
        return torch.stack(terms).sum() if terms else None

    def _finish(self, model: nn.Module) -> nn.Module:
        scores = {name: importance.magnitude(m.weight) for name, m in self.modules.items()}
        keep = {name: torch.ones_like(s, dtype=torch.bool) for name, s in scores.items()}
        if self.spec.threshold is not None:
            keep = {name: keep[name] & (s >= self.spec.threshold) for name, s in scores.items()}
        if self.spec.target is not None:
            ranked = global_topk(scores, self.spec.target)
            keep = {name: keep[name] & ranked[name] for name in scores}
        for name, module in self.modules.items():
            masking.zero_permanently(module, keep[name])
        self.after = {name: _norms(m.weight) for name, m in self.modules.items()}
        return model

    def _describe(self) -> dict[str, Any]:
        return {
            "layers": {
                name: {
                    **{f"{k}_before": v for k, v in self.before[name].items()},
                    **{f"{k}_after": v for k, v in self.after.get(name, {}).items()},
                }
                for name in self.modules
            }
        }


class L1Pass(NormPass):
    kind = "l1"
    spec_type = L1Spec


class L2Pass(NormPass):
    kind = "l2"
    spec_type = L2Spec


class L1L2Pass(NormPass):
    kind = "l1_l2"
    spec_type = L1L2Spec

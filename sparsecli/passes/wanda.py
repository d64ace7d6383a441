"""Wanda: one-shot pruning by |weight| x input-activation norm, from calibration samples, no fine-tuning.

Each weight W_ij is scored |W_ij| * ||X_j||_2, where ||X_j||_2 is the L2 norm of input column j over
every calibration token (or convolution patch) the layer sees; the lowest scores go within each output
row (the paper's comparison group), either a `target` fraction of every row or all but N of every M
consecutive weights (`nm: "2:4"`). No weight is updated. Layers are pruned one at a time in forward order,
each scored on inputs that already pass through the pruned layers before it; the norms come from forward
hooks removed right after. Sun, Liu, Bair & Kolter, 2023, "A Simple and Effective Pruning Approach for
Large Language Models" (arXiv:2306.11695).

    passes:
      - kind: wanda
        target: 0.5              # or nm: "2:4"
        exclude: ["*classifier*"]

`finish` leaves the same layers with zeros baked into their weights (no parametrization, no hook).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from sparsecli.passes import importance, masking
from sparsecli.passes.calibration import OneShotPass, OneShotSpec, weight_matrix
from sparsecli.passes.selection import nm_mask, per_row_topk


class WandaSpec(OneShotSpec):
    kind: Literal["wanda"] = "wanda"


class InputNorm:
    """Sum of squares of each input column over all calibration samples: ||X_j||_2 without keeping X."""

    def __init__(self, module: nn.Module):
        self.squares = torch.zeros(weight_matrix(module).shape[1], device=module.weight.device)

    def add(self, inputs: torch.Tensor) -> None:
        self.squares += (inputs**2).sum(0)

    @property
    def norm(self) -> torch.Tensor:
        return self.squares.sqrt()


class WandaPass(OneShotPass):
    kind = "wanda"
    spec_type = WandaSpec
    spec: WandaSpec

    def _statistic(self, module: nn.Module) -> InputNorm:
        return InputNorm(module)

    def _prune(self, module: nn.Module, statistic: InputNorm) -> dict[str, float]:
        scores = importance.wanda(weight_matrix(module), statistic.norm)
        n_m = self.spec.n_m
        keep = nm_mask(scores, *n_m) if n_m else per_row_topk(scores, self.spec.target or 0.0)
        masking.set_mask(module, keep.reshape(module.weight.shape))
        return {}

"""SparseGPT: one-shot pruning by layer-wise reconstruction with the inverse Hessian, no fine-tuning.

For each layer, H = X X^T / n over the calibration inputs X (damped by `percdamp` x its mean diagonal)
is, up to a factor 2 that the updates cancel, the Hessian of the layer's output error ||W X - W' X||^2.
Columns are processed left to right in blocks of `blocksize`: the mask is chosen by the Optimal Brain
Surgeon saliency w^2 / [H^-1]_jj^2 (per block for an unstructured `target`, per group of M for
`nm: "2:4"`), and zeroing each column's pruned weights is compensated by updating the columns not yet
processed, through the upper Cholesky factor of H^-1. Layers are done one at a time in forward order,
each from inputs that already pass through the pruned layers before it (the paper's sequential mode), so
only one layer's Hessian is ever held. The relative output error on the calibration inputs,
tr(dW H dW^T) / tr(W H W^T), is reported per layer.
Frantar & Alistarh, 2023, "SparseGPT: Massive Language Models Can Be Accurately Pruned in One-Shot"
(arXiv:2301.00774).

    passes:
      - kind: sparsegpt
        target: 0.5              # or nm: "2:4"
        blocksize: 128
        percdamp: 0.01
        exclude: ["*classifier*"]

`finish` leaves the same layers with the updated weights and zeros baked in (no parametrization, no hook).
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field, model_validator
from torch import nn

from sparsecli.errors import RunFailed
from sparsecli.passes import importance, masking
from sparsecli.passes.calibration import Gram, OneShotPass, OneShotSpec, weight_matrix
from sparsecli.passes.selection import drop_lowest, nm_mask


class SparseGPTSpec(OneShotSpec):
    kind: Literal["sparsegpt"] = "sparsegpt"
    blocksize: int = Field(
        128, ge=1, description="Columns per block: an unstructured mask is chosen per block, updates applied per block."
    )
    percdamp: float = Field(
        0.01, gt=0, le=1, description="Damping added to the Hessian diagonal, as a fraction of its mean."
    )

    @model_validator(mode="after")
    def _blocks_hold_whole_groups(self) -> SparseGPTSpec:
        if self.n_m and self.blocksize % self.n_m[1]:
            raise ValueError(f"blocksize {self.blocksize} must be a multiple of M={self.n_m[1]}")
        return self


def inverse_hessian_factor(hessian: torch.Tensor, percdamp: float) -> torch.Tensor:
    """Upper Cholesky factor U of the damped H^-1 (H^-1 = U^T U); row j of U serves column j's sub-problem."""
    damped = hessian.clone()
    diagonal = damped.diagonal()
    diagonal[diagonal == 0] = 1.0  # an input that is always zero: its weights are free, H must stay invertible
    eye = torch.eye(len(damped), device=damped.device)
    for attempt in range(4):  # rounding can leave H barely indefinite: damp harder before giving up
        lower, info = torch.linalg.cholesky_ex(damped + percdamp * 10**attempt * diagonal.mean() * eye)
        if int(info) == 0:
            return torch.linalg.cholesky(torch.cholesky_inverse(lower), upper=True)
    raise RunFailed(f"sparsegpt: Hessian not positive definite even with damping {percdamp * 1000}")


def _prune_columns(
    block: torch.Tensor, factor: torch.Tensor, keep: torch.Tensor, n_m: tuple[int, int] | None
) -> torch.Tensor:
    """Zero the block's pruned weights column by column, pushing each column's error onto the later ones.

    Works in place on `block` (and on `keep` for N:M, chosen per group from the updated weights);
    returns the scaled errors that carry the update on to the columns after the block.
    """
    errors = torch.zeros_like(block)
    for j in range(block.shape[1]):
        if n_m and j % n_m[1] == 0:
            group = slice(j, j + n_m[1])
            keep[:, group] = nm_mask(importance.obs_saliency(block[:, group], factor.diagonal()[group]), *n_m)
        pruned = block[:, j] * keep[:, j]
        errors[:, j] = (block[:, j] - pruned) / factor[j, j]
        block[:, j:] -= errors[:, j : j + 1] * factor[j : j + 1, j:]
        block[:, j] = pruned  # exact zeros, whatever the rounding of the update
    return errors


def sparsegpt_prune(
    weight: torch.Tensor,
    hessian: torch.Tensor,
    *,
    target: float | None,
    n_m: tuple[int, int] | None,
    blocksize: int = 128,
    percdamp: float = 0.01,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The pruned, updated (rows, columns) weight and its keep mask; exactly round(target * size) zeros."""
    w = weight.detach().clone().float()
    factor = inverse_hessian_factor(hessian, percdamp)
    keep = torch.ones_like(w, dtype=torch.bool)
    for start in range(0, w.shape[1], blocksize):
        end = min(start + blocksize, w.shape[1])
        block, block_factor = w[:, start:end].clone(), factor[start:end, start:end]
        if target is not None:  # the running quota makes the whole layer exact, not just each block
            quota = round(target * w.shape[0] * end) - int((~keep[:, :start]).sum())
            keep[:, start:end] = drop_lowest(importance.obs_saliency(block, block_factor.diagonal()), quota)
        errors = _prune_columns(block, block_factor, keep[:, start:end], n_m)
        w[:, start:end] = block
        w[:, end:] -= errors @ factor[start:end, end:]
    return w, keep


def reconstruction_error(before: torch.Tensor, after: torch.Tensor, hessian: torch.Tensor) -> float:
    """||(W - W') X||^2 / ||W X||^2 on the calibration inputs, read off H = X X^T / n."""
    delta = before - after
    return float(((delta @ hessian) * delta).sum() / ((before @ hessian) * before).sum().clamp_min(1e-12))


class SparseGPTPass(OneShotPass):
    kind = "sparsegpt"
    spec_type = SparseGPTSpec
    spec: SparseGPTSpec

    def _statistic(self, module: nn.Module) -> Gram:
        return Gram(module)

    def _prune(self, module: nn.Module, statistic: Gram) -> dict[str, float]:
        before = weight_matrix(module).clone().float()
        s = self.spec
        after, keep = sparsegpt_prune(
            before, statistic.matrix, target=s.target, n_m=s.n_m, blocksize=s.blocksize, percdamp=s.percdamp
        )
        masking.attach(module)
        with torch.no_grad():
            masking.original(module).copy_(after.reshape(module.weight.shape))
        masking.set_mask(module, keep.reshape(module.weight.shape))
        return {"reconstruction_error": round(reconstruction_error(before, after, statistic.matrix), 6)}

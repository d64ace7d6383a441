"""Importance scores for weights: a new criterion is a new function here, not a new pass."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn


def magnitude(weight: torch.Tensor) -> torch.Tensor:
    """|w|: the classic criterion (Han et al., 2015); small weights matter least."""
    return weight.detach().abs()


def gradient_magnitude(grad: torch.Tensor) -> torch.Tensor:
    """|dL/dw| of the masked weight: where a regrown connection lowers the loss fastest (RigL, Evci et al., 2020)."""
    return grad.detach().abs()


def random_scores(like: torch.Tensor) -> torch.Tensor:
    """Uniform noise: regrowth at random (SET, Mocanu et al., 2018), and a baseline for any criterion."""
    return torch.rand(like.shape, device=like.device)


def channel_scorer(criterion: str) -> Callable[[Any], torch.Tensor | None]:
    """torch-pruning's group importance: one score per channel of a dependency group (None: nothing to score).

    `l1`/`l2`: norm of every weight tied to the channel, averaged over the group (Li et al., 2017);
    `bn_scale`: |gamma| of the group's BatchNorms (Liu et al., 2017, network slimming); `taylor`:
    |w * dL/dw| (Molchanov et al., 2019), needs `.grad` filled by `loss_gradients`; `random`: a baseline.
    """
    import torch_pruning as tp

    scorers = {
        "l1": lambda: tp.importance.GroupMagnitudeImportance(p=1),
        "l2": lambda: tp.importance.GroupMagnitudeImportance(p=2),
        "bn_scale": tp.importance.BNScaleImportance,
        "taylor": tp.importance.GroupTaylorImportance,
        "random": tp.importance.RandomImportance,
    }
    return scorers[criterion]()


def loss_gradients(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None,
) -> None:
    """Fill `.grad` with dL/dw summed over `batches`, in eval mode so BatchNorm statistics stay untouched."""
    loss_fn = loss_fn or nn.functional.cross_entropy
    was_training = model.training
    model.eval().zero_grad(set_to_none=True)
    with torch.enable_grad():
        for x, y in batches:
            loss_fn(model(x), y).backward()
    model.train(was_training)


def wanda(weight: torch.Tensor, input_norm: torch.Tensor) -> torch.Tensor:
    """|W_ij| * ||X_j||_2 (Sun et al., 2023): a small weight on a loud input can matter more than a big one.

    `weight` is (rows, columns); `input_norm` holds each input column's L2 norm over the calibration tokens.
    """
    return weight.detach().abs() * input_norm.reshape(1, -1)


def obs_saliency(weight: torch.Tensor, cholesky_diag: torch.Tensor) -> torch.Tensor:
    """w^2 / d^2, the Optimal Brain Surgeon loss w^2 / [H^-1]_jj of zeroing one weight (SparseGPT's criterion).

    `cholesky_diag` is the diagonal d of the upper Cholesky factor of H^-1: d_j^2 is [H^-1]_jj of the
    sub-problem left once the columns before j are fixed (Frantar & Alistarh, 2023).
    """
    return weight.detach() ** 2 / cholesky_diag.reshape(1, -1) ** 2

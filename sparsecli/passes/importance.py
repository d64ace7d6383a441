"""Importance scores for weights: a new criterion is a new function here, not a new pass."""

from __future__ import annotations

import torch


def magnitude(weight: torch.Tensor) -> torch.Tensor:
    """|w|: the classic criterion (Han et al., 2015); small weights matter least."""
    return weight.detach().abs()

"""Binary masks as PyTorch parametrizations.

The optimizer keeps the original Parameter; the mask is a buffer updated in place, so the
effective weight is exactly zero wherever the mask is, after every optimizer step. `bake` makes the
masked weight the plain parameter again, so the exported model holds zeros, not a dense weight and a Mul.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrize


class Mask(nn.Module):
    """weight -> weight * mask."""

    def __init__(self, shape: torch.Size, device: torch.device):
        super().__init__()
        self.register_buffer("mask", torch.ones(shape, dtype=torch.bool, device=device))

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight * self.mask


def attach(module: nn.Module, name: str = "weight") -> Mask:
    """Register a mask on `module.name` (idempotent) and return it."""
    existing = find(module, name)
    if existing is not None:
        return existing
    mask = Mask(getattr(module, name).shape, getattr(module, name).device)
    parametrize.register_parametrization(module, name, mask)
    return mask


def find(module: nn.Module, name: str = "weight") -> Mask | None:
    if not parametrize.is_parametrized(module, name):
        return None
    return next((p for p in module.parametrizations[name] if isinstance(p, Mask)), None)


def original(module: nn.Module, name: str = "weight") -> nn.Parameter:
    """The unmasked Parameter the optimizer updates."""
    return module.parametrizations[name].original


@torch.no_grad()
def set_mask(module: nn.Module, keep: torch.Tensor, name: str = "weight") -> None:
    """Update the mask in place and zero the pruned originals, so a later regrowth starts at zero."""
    mask = attach(module, name)
    mask.mask.copy_(keep)
    original(module, name).mul_(keep)


@torch.no_grad()
def zero_permanently(module: nn.Module, keep: torch.Tensor, name: str = "weight") -> None:
    """Zero where `keep` is False for good: through the mask another pass holds (its `finish` bakes it,
    and it keeps its own zeros), else directly in the plain parameter."""
    mask = find(module, name)
    if mask is None:
        getattr(module, name).mul_(keep)
    else:
        set_mask(module, keep & mask.mask, name)


def bake(module: nn.Module, name: str = "weight") -> None:
    """Remove the parametrization, leaving the masked weight as a plain Parameter."""
    if parametrize.is_parametrized(module, name):
        parametrize.remove_parametrizations(module, name, leave_parametrized=True)


def has_parametrizations(model: nn.Module) -> bool:
    return any(parametrize.is_parametrized(m) for m in model.modules())

"""Choosing what to prune: which modules (include/exclude globs) and which weights (top-k by score).

Scoring lives in `importance.py`; here only the choice, so any criterion works with any scope.
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Iterable, Mapping

import torch
from torch import nn

from sparsecli.errors import BadInput

WEIGHTED_TYPES: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def _matches(fqn: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(fqn, pattern) for pattern in patterns)


def check_patterns(names: list[str], patterns: Iterable[str], field: str) -> None:
    """A pattern that matches no module is almost always a typo: say so, with the nearest names."""
    for pattern in patterns:
        if not any(fnmatch.fnmatchcase(name, pattern) for name in names):
            near = difflib.get_close_matches(pattern.strip("*"), names, n=5, cutoff=0.3) or names[:5]
            raise BadInput(f"{field}: pattern {pattern!r} matches no module; nearest module names: {', '.join(near)}")


def select_modules(
    model: nn.Module,
    include: list[str],
    exclude: list[str],
    types: tuple[type[nn.Module], ...] = WEIGHTED_TYPES,
) -> dict[str, nn.Module]:
    """Modules of `types` whose fqn matches `include` (all if empty) and not `exclude`."""
    candidates = {fqn: m for fqn, m in model.named_modules() if isinstance(m, types)}
    names = list(candidates)
    check_patterns(names, include, "include")
    check_patterns(names, exclude, "exclude")
    chosen = {
        fqn: m
        for fqn, m in candidates.items()
        if (not include or _matches(fqn, include)) and not _matches(fqn, exclude)
    }
    if not chosen:
        raise BadInput(f"include/exclude leave no module to prune; candidates: {', '.join(names[:10])}")
    return chosen


def _keep_mask(scores: torch.Tensor, n_prune: int) -> torch.Tensor:
    """Mask of the same shape with exactly `n_prune` of the lowest scores set to zero."""
    flat = torch.ones(scores.numel(), dtype=torch.bool, device=scores.device)
    if n_prune > 0:
        flat[torch.topk(scores.flatten(), n_prune, largest=False).indices] = False
    return flat.view_as(scores)


def per_layer_topk(scores: Mapping[str, torch.Tensor], targets: Mapping[str, float]) -> dict[str, torch.Tensor]:
    """Each layer loses exactly round(target * size) of its lowest-scored weights."""
    return {name: _keep_mask(s, round(targets[name] * s.numel())) for name, s in scores.items()}


def global_topk(scores: Mapping[str, torch.Tensor], target: float) -> dict[str, torch.Tensor]:
    """One ranking across layers: the lowest-scored `target` fraction of all weights goes."""
    flat = torch.cat([s.flatten() for s in scores.values()])
    keep = _keep_mask(flat, round(target * flat.numel()))
    masks, offset = {}, 0
    for name, s in scores.items():
        masks[name] = keep[offset : offset + s.numel()].view_as(s)
        offset += s.numel()
    return masks

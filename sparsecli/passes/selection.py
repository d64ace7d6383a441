"""Choosing what to prune: which modules (include/exclude globs) and which weights (top-k by score).

Scoring lives in `importance.py`; here only the choice, so any criterion works with any scope.
"""

from __future__ import annotations

import difflib
import fnmatch
import math
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


def drop_lowest(scores: torch.Tensor, n_prune: int) -> torch.Tensor:
    """Mask of the same shape with exactly `n_prune` of the lowest scores set to zero."""
    flat = torch.ones(scores.numel(), dtype=torch.bool, device=scores.device)
    if n_prune > 0:
        flat[torch.topk(scores.flatten(), n_prune, largest=False).indices] = False
    return flat.view_as(scores)


def per_layer_topk(scores: Mapping[str, torch.Tensor], targets: Mapping[str, float]) -> dict[str, torch.Tensor]:
    """Each layer loses exactly round(target * size) of its lowest-scored weights."""
    return {name: drop_lowest(s, round(targets[name] * s.numel())) for name, s in scores.items()}


def global_topk(scores: Mapping[str, torch.Tensor], target: float) -> dict[str, torch.Tensor]:
    """One ranking across layers: the lowest-scored `target` fraction of all weights goes."""
    flat = torch.cat([s.flatten() for s in scores.values()])
    keep = drop_lowest(flat, round(target * flat.numel()))
    masks, offset = {}, 0
    for name, s in scores.items():
        masks[name] = keep[offset : offset + s.numel()].view_as(s)
        offset += s.numel()
    return masks


def gradual_nm_mask(scores: torch.Tensor, n: int, m: int, fraction: float = 1.0, axis: int = 1) -> torch.Tensor:
    """`nm_mask` along `axis`, reached in steps: of the m - n weights N:M removes from each group, only the
    lowest-scored `fraction` (counted over the whole layer) go, so a rising fraction ends in exact N:M."""
    moved = scores.movedim(axis, -1)
    candidates = ~nm_mask(moved, n, m)
    keep = drop_lowest(moved.masked_fill(~candidates, float("inf")), round(fraction * int(candidates.sum())))
    return keep.movedim(-1, axis)


def drop_and_grow(keep: torch.Tensor, drop_scores: torch.Tensor, grow_scores: torch.Tensor, count: int) -> torch.Tensor:
    """`keep` with its `count` lowest-scored active entries switched off and the `count` highest-scored
    inactive ones switched on (never one just dropped): the number kept stays exactly the same."""
    active = keep.flatten()
    count = min(count, int(active.sum()), int((~active).sum()))
    if count <= 0:
        return keep.clone()
    dropped = torch.topk(drop_scores.flatten().masked_fill(~active, float("inf")), count, largest=False).indices
    grown = torch.topk(grow_scores.flatten().masked_fill(active, float("-inf")), count).indices
    new = active.clone()
    new[dropped] = False
    new[grown] = True
    return new.view_as(keep)


def channels_to_remove(
    scores: Mapping[str, torch.Tensor],
    initial: Mapping[str, int],
    ratio: float,
    *,
    scope: str = "uniform",
    max_layer_ratio: float = 1.0,
    round_to: int = 1,
) -> dict[str, torch.Tensor]:
    """Indices of the lowest-scored channels to remove from each group (one score per current channel).

    Afterwards each group (`uniform`) or all groups together (`global`) have lost `ratio` of their
    `initial` channels; under global ranking no group loses more than `max_layer_ratio` of its own.
    Counts are rounded to multiples of `round_to`; channels already removed never come back.
    """
    floors = {n: max(1, math.ceil(initial[n] * (1 - max_layer_ratio))) for n in scores}
    if scope == "global":
        total = sum(initial[n] for n in scores)
        keep = _global_keep(scores, floors, total - round(ratio * total))
    else:
        keep = {n: max(1, initial[n] - round(ratio * initial[n])) for n in scores}
    removed = {}
    for name, s in scores.items():
        rounded = max(round_to, round_to * round(keep[name] / round_to))
        rounded = max(rounded, round_to * math.ceil(floors[name] / round_to))
        removed[name] = torch.argsort(s)[: max(0, len(s) - rounded)]
    return removed


def _global_keep(scores: Mapping[str, torch.Tensor], floors: Mapping[str, int], total_keep: int) -> dict[str, int]:
    """Channels each group keeps when the lowest scores across all groups go, none below its floor."""
    names = list(scores)
    flat = torch.cat([scores[n].flatten().float() for n in names])
    owner = [i for i, n in enumerate(names) for _ in range(len(scores[n]))]
    keep = {n: len(scores[n]) for n in names}
    to_remove = len(flat) - total_keep
    for index in torch.argsort(flat).tolist():
        if to_remove <= 0:
            break
        name = names[owner[index]]
        if keep[name] > floors[name]:
            keep[name] -= 1
            to_remove -= 1
    return keep


def per_row_topk(scores: torch.Tensor, target: float) -> torch.Tensor:
    """Each row of a 2-D score matrix loses exactly round(target * columns) of its lowest scores.

    Wanda's choice (Sun et al., 2023): comparing weights within one output row keeps every output alive.
    """
    n_prune = round(target * scores.shape[1])
    keep = torch.ones_like(scores, dtype=torch.bool)
    if n_prune > 0:
        keep.scatter_(1, torch.topk(scores, n_prune, dim=1, largest=False).indices, False)
    return keep


def nm_mask(scores: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """N:M sparsity: in every group of `m` consecutive weights along the last axis, the `n` best stay.

    2:4 is the pattern sparse tensor cores run at twice the dense rate; the last axis must divide by `m`.
    """
    if scores.shape[-1] % m:
        raise ValueError(f"last axis of size {scores.shape[-1]} does not divide into groups of {m}")
    groups = scores.reshape(*scores.shape[:-1], -1, m)
    keep = torch.zeros_like(groups, dtype=torch.bool)
    keep.scatter_(-1, torch.topk(groups, n, dim=-1).indices, True)
    return keep.reshape(scores.shape)

"""Fine-tuning checkpoints for `prune --resume`: written atomically after every epoch.

A checkpoint holds the model's tensors (with masks, which are parametrization buffers), the
optimizer, each pass's runtime state and the epoch; training seeds every epoch from (seed, epoch),
so a resumed run repeats exactly the epochs the interrupted one would have run.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sparsecli import checkpoint
from sparsecli.atomic import atomic_path
from sparsecli.errors import BadInput
from sparsecli.passes import Pass

FORMAT = 1


# The recipe sections that decide the trained weights: a checkpoint of another recipe must not be resumed.
TRAINING_SECTIONS = ("seed", "model", "data", "passes", "finetune")


def save(
    path: Path,
    fingerprint: str,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    passes: Sequence[Pass],
    epoch: int,
) -> None:
    state = {
        "format": FORMAT,
        "stage": "finetune",
        "fingerprint": fingerprint,
        "epoch": epoch,
        **checkpoint.entries(model),  # with the architecture: structured passes shrink layers while training
        "optimizer_state": optimizer.state_dict(),
        "passes_state": [p.state_dict() for p in passes],
    }
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load(path: Path, fingerprint: str) -> dict[str, Any]:
    """A fine-tuning checkpoint of this recipe, or BadInput saying why it cannot be resumed."""
    if not path.is_file():
        raise BadInput(f"--resume: no checkpoint at {path}; run without --resume to start")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt files
        raise BadInput(f"--resume: cannot read {path}: {exc}") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT or state.get("stage") != "finetune":
        raise BadInput(f"--resume: {path} is not a sparsecli fine-tuning checkpoint (a finished run's final weights?)")
    if state["fingerprint"] != fingerprint:
        raise BadInput(f"--resume: {path} was written by a recipe with other model/data/passes/finetune settings")
    return state


def restore(state: dict[str, Any], model: nn.Module, optimizer: torch.optim.Optimizer, passes: Sequence[Pass]) -> int:
    """Load a checkpoint into freshly prepared objects; returns the epoch to continue from."""
    model.load_state_dict(state["model_state"])
    optimizer.load_state_dict(state["optimizer_state"])
    for p, pass_state in zip(passes, state["passes_state"], strict=True):
        p.load_state_dict(pass_state)
    return int(state["epoch"])

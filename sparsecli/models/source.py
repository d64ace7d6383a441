"""Build the model a recipe names: a zoo entry or a user factory, then an optional checkpoint.

A `factory:` import path is the only way user code runs; checkpoints load with `weights_only=True`.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from torch import nn

from sparsecli import checkpoint
from sparsecli.errors import BadInput


def resolve_factory(ref: str, base_dir: Path) -> Callable[..., nn.Module]:
    """`package.module:function`, importable from the recipe's folder; ValueError says what is wrong."""
    module_name, sep, attr = ref.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"must look like 'package.module:function', got {ref!r}")
    folder = str(base_dir.resolve())
    if folder not in sys.path:
        sys.path.insert(0, folder)
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # ImportError, a relative name (TypeError), or the user's module failing as it loads
        raise ValueError(f"cannot import module {module_name!r} (searched {folder} and sys.path): {exc}") from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise ValueError(f"module {module_name!r} has no callable {attr!r}")
    return factory


def build_model(
    *,
    zoo: str | None,
    factory: str | None,
    kwargs: dict[str, Any],
    input_shape: Sequence[int],
    num_classes: int,
    base_dir: Path,
) -> nn.Module:
    """A fresh model: zoo builders get the data's shape and classes, factories only `kwargs`."""
    if zoo is not None:
        from sparsecli.models.zoo import ZOO

        try:
            return ZOO[zoo](input_shape, num_classes, **kwargs)
        except TypeError as exc:
            raise BadInput(f"model.kwargs: zoo model {zoo!r} rejects {kwargs}: {exc}") from None
    assert factory is not None
    try:
        model = resolve_factory(factory, base_dir)(**kwargs)
    except ValueError as exc:
        raise BadInput(f"model.factory: {exc}") from None
    if not isinstance(model, nn.Module):
        raise BadInput(f"model.factory: {factory} returned {type(model).__name__}, not a torch.nn.Module")
    return model


def load_checkpoint(model: nn.Module, path: Path) -> None:
    """Load a state dict, or a sparsecli checkpoint (with the architecture a pruned model needs), into `model`."""
    try:
        checkpoint.load(path, model)
    except BadInput as exc:
        raise BadInput(f"model.checkpoint: {exc}") from None

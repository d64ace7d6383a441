"""Model checkpoints that carry their architecture, so a structurally pruned model reloads.

Once a pass has shrunk layers, a state dict no longer fits a fresh model of the recipe. Beside the
tensors we store each module's plain attributes (`out_channels`, `num_features`, `groups`, head
counts): the idea of torch-pruning's `tp.state_dict`, limited to numbers, strings and tuples so the
file still loads with `weights_only=True`. Loading sets the attributes, gives every parameter and
buffer the saved shape, then loads the weights: the fresh model becomes the pruned one.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sparsecli.atomic import atomic_path
from sparsecli.errors import BadInput

_PLAIN = (bool, int, float, str, type(None))


def _is_plain(value: Any) -> bool:
    if isinstance(value, tuple | list):
        return all(_is_plain(v) for v in value)
    return isinstance(value, _PLAIN)


def architecture(model: nn.Module) -> dict[str, dict[str, Any]]:
    """Per module fqn: its public instance attributes that are plain values (what shapes the forward).

    A module that a pass put in place of the model's own (e.g. `passes.attention.SlimAttention` for
    nn.MultiheadAttention) is sparsecli code with a `from_architecture` classmethod; its entry also
    names its class under `_class`, so `restore` can put the same module into a fresh model.
    """
    return {
        fqn: {
            **{
                name: tuple(value) if isinstance(value, tuple) else value
                for name, value in vars(module).items()
                if not name.startswith("_") and name != "training" and _is_plain(value)
            },
            **({"_class": _class_ref(type(module))} if hasattr(type(module), "from_architecture") else {}),
        }
        for fqn, module in model.named_modules()
    }


def _class_ref(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def _replace_modules(model: nn.Module, arch: dict[str, dict[str, Any]]) -> None:
    """Where the checkpoint names a replacement class and `model` still has another module, swap it in."""
    for fqn, attributes in arch.items():
        ref = attributes.get("_class")
        modules = dict(model.named_modules())
        if ref is None or not fqn or fqn not in modules or _class_ref(type(modules[fqn])) == ref:
            continue
        module_name, _, qualname = ref.partition(":")
        if not module_name.startswith("sparsecli."):  # only sparsecli's own code runs on loading
            raise BadInput(f"module {fqn!r} names class {ref!r}, which is not part of sparsecli")
        cls = getattr(importlib.import_module(module_name), qualname)
        parent, _, name = fqn.rpartition(".")
        setattr(model.get_submodule(parent), name, cls.from_architecture(attributes))


def entries(model: nn.Module) -> dict[str, Any]:
    """What a checkpoint holds about the model: its tensors and its architecture."""
    return {"model_state": model.state_dict(), "architecture": architecture(model)}


def _resize(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Give each parameter and buffer of `model` the shape it has in `state` (values come later)."""
    modules = dict(model.named_modules())
    for key, saved in state.items():
        owner, _, name = key.rpartition(".")
        module = modules.get(owner)
        current = getattr(module, name, None) if module is not None else None
        if not isinstance(current, torch.Tensor) or current.shape == saved.shape:
            continue  # a missing key is load_state_dict's to report
        empty = torch.empty(saved.shape, dtype=current.dtype, device=current.device)
        if name in module._parameters:
            module._parameters[name] = nn.Parameter(empty, requires_grad=current.requires_grad)
        else:
            module._buffers[name] = empty


def restore(model: nn.Module, checkpoint: dict[str, Any]) -> nn.Module:
    """Make `model` (fresh, from the same recipe) the checkpoint's model: architecture, then weights.

    Plain state dicts (no architecture) load as they are, so dense checkpoints keep working.
    """
    _replace_modules(model, checkpoint.get("architecture", {}))
    modules = dict(model.named_modules())
    for fqn, attributes in checkpoint.get("architecture", {}).items():
        if fqn not in modules:
            raise BadInput(f"has module {fqn!r} that the model lacks: it was saved from another model")
        for name, value in attributes.items():
            if not name.startswith("_"):
                setattr(modules[fqn], name, value)
    state = checkpoint["model_state"]
    _resize(model, state)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise BadInput(f"does not fit the model: {exc}") from None
    return model


def save(path: Path, model: nn.Module, **extra: Any) -> None:
    """Write `extra` (format, stage, ...) and the model's tensors and architecture, atomically."""
    with atomic_path(path) as tmp:
        torch.save({**extra, **entries(model)}, tmp)


def read(path: Path) -> dict[str, Any]:
    """A checkpoint as a dict with `model_state` (a bare state dict is wrapped), loaded weights-only."""
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt or foreign files
        raise BadInput(f"cannot read {path}: {exc}") from None
    if not isinstance(data, dict):
        raise BadInput(f"{path} holds a {type(data).__name__}, not a state dict")
    return data if "model_state" in data else {"model_state": data}


def load(path: Path, model: nn.Module) -> dict[str, Any]:
    """Read `path` and restore it into `model`; returns the whole checkpoint (optimizer, epoch, ...)."""
    data = read(path)
    try:
        restore(model, data)
    except BadInput as exc:
        raise BadInput(f"{path}: {exc}") from None
    return data

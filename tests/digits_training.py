"""Shared by the pass mechanics tests: the zoo convnet trained on digits with and without a pass, same seed."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache

import torch
from torch import nn

from sparsecli.data import sources
from sparsecli.models.zoo import convnet
from sparsecli.passes import Pass, PassContext
from sparsecli.train import TrainConfig, evaluate, fit


@cache
def digits() -> sources.DataBundle:
    return sources.load("digits", path=None, val_fraction=0.2, seed=0)


def accuracy(model: nn.Module) -> float:
    return evaluate(model, digits().loader("val", 512))


def new_convnet(width: int = 16) -> nn.Module:
    torch.manual_seed(0)
    return convnet((1, 8, 8), 10, width=width)


def train(model: nn.Module, passes: Sequence[Pass] = (), epochs: int = 3, lr: float = 3e-3) -> nn.Module:
    """prepare -> fit -> finish, the order the pipeline uses; the same seed for every call."""
    data = digits()
    loader = data.loader("train", 64, seed=0)
    ctx = PassContext(data.val.tensors[0][:1], len(loader), float(epochs), [next(iter(loader))])
    for p in passes:
        p.prepare(model, ctx)
    fit(model, loader, TrainConfig(epochs=epochs, lr=lr), passes, seed=0)
    for p in passes:
        model = p.finish(model)
    return model.eval()


@cache
def _baseline_state(epochs: int) -> dict[str, torch.Tensor]:
    return train(new_convnet(), epochs=epochs).state_dict()


def baseline(epochs: int = 2) -> nn.Module:
    """The convnet trained without any pass (trained once per test session, a fresh copy each call)."""
    model = new_convnet()
    model.load_state_dict(_baseline_state(epochs))
    return model.eval()


def conv_weights(model: nn.Module) -> list[torch.Tensor]:
    return [m.weight.detach() for m in model.modules() if isinstance(m, nn.Conv2d)]

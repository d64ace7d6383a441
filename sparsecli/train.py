"""Training and fine-tuning that calls the passes' hooks in the order the pass interface fixes.

Per step: forward, loss + penalties, backward, optimizer step, `on_step` of each pass in recipe
order, zero grads. Learning-rate schedules are pure functions of the step.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import DataLoader

from sparsecli.errors import RunFailed
from sparsecli.passes.base import Inputs, Pass, forward, sum_penalties
from sparsecli.tasks import TASKS, Objective, Task


@dataclass(frozen=True)
class TrainConfig:
    epochs: int
    optimizer: str = "adamw"
    lr: float = 1e-3
    weight_decay: float = 0.0
    momentum: float = 0.9
    lr_schedule: str = "cosine"


def lr_factor(step: int, total_steps: int, schedule: str) -> float:
    """Multiplier on the base learning rate at `step`."""
    if schedule == "constant" or total_steps <= 0:
        return 1.0
    progress = min(1.0, step / total_steps)
    if schedule == "linear":
        return 1.0 - progress
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def set_dropout(model: nn.Module, p: float) -> None:
    """Every nn.Dropout of the model drops with probability `p` (HF attention reads its dropout module's p too)."""
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = p


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    optimizer = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
    return optimizer(params, lr=config.lr, weight_decay=config.weight_decay)


@torch.no_grad()
def evaluate(model: nn.Module, loader: DataLoader, task: Task = TASKS["classification"], reference=None) -> float:
    """The task's metric on `loader` (top-1 accuracy by default); `reference` is the dense model it compares to."""
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for x, y in loader:
        outputs = forward(model, x).numpy()
        expected = outputs if reference is None else forward(reference.eval(), x).numpy()
        part = task.metric_parts(outputs, x, y.numpy(), expected)
        total, count = total + part[0], count + part[1]
    model.train(was_training)
    return task.finalize(total, count)


def _seed_epoch(loader: DataLoader, seed: int, epoch: int) -> None:
    """Shuffling and random init depend on (seed, epoch) only, so a resumed run repeats the same epochs."""
    torch.manual_seed(seed + epoch)
    if loader.generator is not None:
        loader.generator.manual_seed(seed + epoch)


def _parameters_replaced(model: nn.Module, optimizer: torch.optim.Optimizer) -> bool:
    trained = {id(p) for group in optimizer.param_groups for p in group["params"]}
    return trained != {id(p) for p in model.parameters() if p.requires_grad}


def fit(
    model: nn.Module,
    loader: DataLoader,
    config: TrainConfig,
    passes: Sequence[Pass] = (),
    objective: Callable[[nn.Module, Inputs, torch.Tensor], torch.Tensor] = Objective(TASKS["classification"]),
    on_step: Callable[[int, float], None] | None = None,
    on_epoch: Callable[[int, torch.optim.Optimizer], None] | None = None,
    start_epoch: int = 0,
    optimizer: torch.optim.Optimizer | None = None,
    seed: int = 0,
) -> torch.optim.Optimizer:
    """Train `model` in place from `start_epoch` to `config.epochs`; returns the optimizer."""
    optimizer = optimizer or make_optimizer(model, config)
    total_steps = config.epochs * len(loader)
    step = start_epoch * len(loader)
    model.train()
    for epoch in range(start_epoch, config.epochs):
        _seed_epoch(loader, seed, epoch)
        for x, y in loader:
            for group in optimizer.param_groups:
                group["lr"] = config.lr * lr_factor(step, total_steps, config.lr_schedule)
            loss = objective(model, x, y)
            penalty = sum_penalties(p.penalty(model) for p in passes)
            if penalty is not None:
                loss = loss + penalty
            if not torch.isfinite(loss):
                raise RunFailed(f"loss became {loss.item()} at epoch {epoch}, step {step}; try a lower learning rate")
            loss.backward()
            optimizer.step()
            step += 1
            for p in passes:  # after the step, so masks re-zero what the optimizer moved
                p.on_step(model, step)
            if _parameters_replaced(model, optimizer):
                # A structured pass shrank layers, replacing their Parameters: the optimizer would keep
                # updating the old tensors and its per-tensor state has the old shapes, so it restarts.
                optimizer = make_optimizer(model, config)
            optimizer.zero_grad(set_to_none=True)
            if on_step is not None:
                on_step(step, loss.item())
        if on_epoch is not None:
            on_epoch(epoch + 1, optimizer)
    model.eval()
    return optimizer

"""What Wanda and SparseGPT share: the spec (a target or an N:M pattern), layer inputs as 2-D matrices,
forward hooks that gather per-layer statistics on calibration batches, and the layer-by-layer loop.

Hooks live only inside `gather`; nothing stays attached once it returns, even if the forward raises.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Protocol

import torch
from pydantic import Field, model_validator
from torch import nn

from sparsecli.errors import BadInput
from sparsecli.passes import masking
from sparsecli.passes.base import Inputs, Pass, PassContext, PassSpec, forward
from sparsecli.passes.selection import select_modules

CALIBRATED_TYPES: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv2d)


class OneShotSpec(PassSpec):
    """Fields of the calibrated one-shot passes: exactly one of `target` and `nm`."""

    target: float | None = Field(
        None, ge=0, lt=1, description="Fraction of each layer's weights set to zero (unstructured)."
    )
    nm: str | None = Field(
        None,
        pattern=r"^\d+:\d+$",
        description='N:M pattern such as "2:4": at most N non-zeros in every M consecutive weights of a row.',
    )

    @model_validator(mode="after")
    def _one_pattern(self) -> OneShotSpec:
        if (self.target is None) == (self.nm is None):
            raise ValueError("give exactly one of target (unstructured) and nm (e.g. '2:4')")
        if self.nm is not None:
            n, m = self.n_m or (0, 0)
            if not 0 < n < m:
                raise ValueError(f"nm: need 0 < N < M, got {self.nm!r}")
        return self

    @property
    def n_m(self) -> tuple[int, int] | None:
        if self.nm is None:
            return None
        n, m = self.nm.split(":")
        return int(n), int(m)


class Statistic(Protocol):
    """Accumulates what a pass needs from a layer's inputs, one (samples, columns) matrix at a time."""

    def add(self, inputs: torch.Tensor) -> None: ...


class Gram:
    """X^T X / n of a layer's input matrices over all calibration samples, accumulated batch by batch without
    keeping X. With `bias`, X gains a column of ones: the input a bias multiplies.

    SparseGPT's Hessian of the layer's output error is 2 X^T X / n, this up to a factor its updates cancel;
    least-squares refits of pruned blocks (`passes/structure.py`) solve their normal equations from it.
    """

    def __init__(self, module: nn.Module, bias: bool = False):
        columns = weight_matrix(module).shape[1] + int(bias)
        self.matrix = torch.zeros(columns, columns, device=module.weight.device)
        self.bias, self.samples = bias, 0

    def add(self, inputs: torch.Tensor) -> None:
        if self.bias:
            inputs = torch.cat([inputs, inputs.new_ones(len(inputs), 1)], 1)
        total = self.samples + len(inputs)
        self.matrix = self.matrix * (self.samples / total) + inputs.T @ inputs / total
        self.samples = total


def weight_matrix(module: nn.Module) -> torch.Tensor:
    """The weight as (rows, columns): one row per output, one column per input value it reads."""
    return module.weight.detach().reshape(module.weight.shape[0], -1)


def unsupported(module: nn.Module, n_m: tuple[int, int] | None) -> str | None:
    """Why the layer's inputs cannot be written as a matrix matching its weight columns, or None."""
    conv = isinstance(module, nn.Conv2d)
    if conv and (module.groups != 1 or isinstance(module.padding, str) or module.padding_mode != "zeros"):
        return "grouped, 'same'-padded or non-zero-padded convolution is not supported"
    columns = weight_matrix(module).shape[1]
    if n_m is not None and columns % n_m[1]:
        return f"{columns} input columns do not divide into groups of {n_m[1]}"
    return None


def layer_inputs(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The module's input as (samples, columns), so that output = inputs @ weight_matrix.T (+ bias)."""
    if isinstance(module, nn.Conv2d):
        patches = nn.functional.unfold(x, module.kernel_size, module.dilation, module.padding, module.stride)
        return patches.transpose(1, 2).reshape(-1, patches.shape[1]).float()
    return x.reshape(-1, x.shape[-1]).float()


@contextlib.contextmanager
def _hooked(model: nn.Module, hooks: Mapping[nn.Module, Callable[..., None]]) -> Iterator[None]:
    """Forward hooks on the given modules, eval mode and no_grad for the block; all undone on exit."""
    handles = [module.register_forward_hook(hook) for module, hook in hooks.items()]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)


def gather(
    model: nn.Module,
    modules: Mapping[str, nn.Module],
    batches: Sequence[Inputs],
    make: Callable[[nn.Module], Statistic],
) -> dict[str, Statistic]:
    """One statistic per module from a forward over `batches`; a module called twice adds both inputs."""
    stats = {name: make(module) for name, module in modules.items()}
    hooks = {
        module: lambda mod, args, _out, stat=stats[name]: stat.add(layer_inputs(mod, args[0]))
        for name, module in modules.items()
    }
    with _hooked(model, hooks):
        for x in batches:
            forward(model, x)
    return stats


def forward_order(model: nn.Module, modules: Mapping[str, nn.Module], batch: Inputs) -> list[str]:
    """Names of `modules` in the order a forward first calls them; modules never called are left out."""
    order: list[str] = []
    hooks = {
        module: lambda *_, name=name: None if name in order else order.append(name) for name, module in modules.items()
    }
    with _hooked(model, hooks):
        forward(model, batch[:1] if isinstance(batch, torch.Tensor) else tuple(t[:1] for t in batch))
    return order


def layer_sparsity(module: nn.Module) -> float:
    weight = module.weight
    return float((weight == 0).sum()) / weight.numel()


class OneShotPass(Pass):
    """Prunes layer by layer in forward order; each layer's statistic comes from a fresh forward, so it
    sees the outputs of the layers already pruned before it (the sequential mode of SparseGPT), and only
    one layer's statistic is held at a time. Subclasses say what to gather and how to prune from it."""

    spec: OneShotSpec

    def _statistic(self, module: nn.Module) -> Statistic:
        raise NotImplementedError

    def _prune(self, module: nn.Module, statistic: Any) -> dict[str, float]:
        """Attach and set the layer's mask (and weights); return extra per-layer facts for the report."""
        raise NotImplementedError

    def _prepare(self, model: nn.Module, ctx: PassContext) -> None:
        batches = [x for x, _ in ctx.calibration]
        if not batches:
            raise BadInput(f"{self.kind} needs calibration batches: it prunes from the inputs each layer sees")
        self.notes: list[str] = []
        candidates = {}
        for name, module in select_modules(model, self.spec.include, self.spec.exclude, CALIBRATED_TYPES).items():
            reason = unsupported(module, self.spec.n_m)
            if reason:
                self.notes.append(f"{name}: {reason}; left dense")
            else:
                candidates[name] = module
        order = forward_order(model, candidates, batches[0])
        self.notes += [f"{n}: not called on calibration inputs; left dense" for n in candidates if n not in order]
        self.modules: dict[str, nn.Module] = {}
        self.layers: dict[str, dict[str, float]] = {}
        for name in order:
            module = candidates[name]
            statistic = gather(model, {name: module}, batches, self._statistic)[name]
            facts = self._prune(module, statistic)
            self.modules[name] = module
            self.layers[name] = {"sparsity": round(layer_sparsity(module), 6), **facts}
        self.calibration_samples = sum(len(x) for x in batches)

    def _finish(self, model: nn.Module) -> nn.Module:
        for module in self.modules.values():
            masking.bake(module)
        return model

    def _describe(self) -> dict[str, Any]:
        return {"layers": self.layers, "notes": self.notes, "calibration_samples": self.calibration_samples}

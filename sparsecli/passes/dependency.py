"""Which channels must go together, and removing them: a thin layer over torch-pruning's DependencyGraph.

torch-pruning traces the model once and ties each Conv/Linear output dimension to everything that
shares it: BatchNorms, the next layers' inputs, residual additions, concatenations, depthwise and
grouped convolutions, a flatten into a Linear. Here those groups get names and, when left alone, a
reason; each removal is checked with a forward pass and rolled back if it breaks the model.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

import torch
import torch_pruning as tp
from torch import nn

from sparsecli import checkpoint
from sparsecli.errors import BadInput
from sparsecli.passes.selection import WEIGHTED_TYPES


@dataclass(frozen=True)
class Skipped:
    """A selected layer whose output channels stay; `is_failure` False means kept by design."""

    reason: str
    is_failure: bool


def _shapes(output: Any) -> list[tuple[int, ...]]:
    if isinstance(output, torch.Tensor):
        return [tuple(output.shape)]
    values = output.values() if isinstance(output, dict) else output if isinstance(output, list | tuple) else []
    return [shape for value in values for shape in _shapes(value)]


def _is_depthwise(module: Any) -> bool:
    return isinstance(module, nn.modules.conv._ConvNd) and 1 < module.groups == module.out_channels


class ChannelGraph:
    """The prunable channel groups of a model, each named by its root layer's fqn."""

    def __init__(self, model: nn.Module, example: torch.Tensor, selected: Collection[str]):
        self.model = model
        self.example = torch.cat([example[:1]] * 2)  # batch 2: a reshape that mixes samples shows up
        self.names = {module: fqn for fqn, module in model.named_modules()}
        was_training = model.training
        model.eval()
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                self._graph = tp.DependencyGraph().build_dependency(model, example_inputs=example, verbose=False)
            with torch.no_grad():
                self._output_shapes = _shapes(model(self.example))
        except Exception as exc:  # tracing runs user code: any error means no structure to prune
            raise BadInput(f"cannot trace the model to find tied channels: {type(exc).__name__}: {exc}") from None
        finally:
            model.train(was_training)
        self.notes = [f"torch-pruning: {w.message}" for w in caught]
        self.skipped: dict[str, Skipped] = {}
        self.roots: dict[str, nn.Module] = {}
        self.members: dict[str, list[str]] = {}
        self.units: dict[str, int] = {}
        self._classify(set(selected))

    def _group(self, root: nn.Module, indices: list[int] | None = None):
        pruner = self._graph.get_pruner_of_module(root)
        if indices is None:
            indices = list(range(pruner.get_out_channels(root)))
        return self._graph.get_pruning_group(root, pruner.prune_out_channels, indices)

    def _classify(self, selected: set[str]) -> None:
        """Sort every group into prunable or kept, with the reason, for the selected layers in it."""
        for group in self._graph.get_all_groups(root_module_types=WEIGHTED_TYPES):
            outs = [dep for dep, _ in group if self._graph.is_out_channel_pruning_fn(dep.handler)]
            members = [self.names[d.target.module] for d in outs if isinstance(d.target.module, WEIGHTED_TYPES)]
            blocked = [m for m in members if m not in selected]
            reason = None
            if any(not d.target.outputs for d in outs):
                reason = "feeds the model output; its output channels are kept"
            elif blocked:
                reason = f"shares its output channels with {', '.join(blocked)}, which include/exclude leave out"
            if reason is not None:
                self.skipped.update({m: Skipped(reason, False) for m in members if m in selected})
                continue
            root = self.names[group[0].dep.target.module]
            self.roots[root] = group[0].dep.target.module
            self.members[root] = members
            self.units[root] = self._units(group)
        traced = {self.names.get(m) for m in self._graph.module2node}
        for fqn in sorted(selected - traced):
            self.skipped[fqn] = Skipped("is not used in the forward pass", False)

    def _units(self, group) -> int:
        """Blocks a group's channels come in: a grouped conv or GroupNorm loses the same channels in each."""
        counts = [1]
        for dep, _ in group:
            module = dep.target.module
            pruner = self._graph.get_pruner_of_module(module) if isinstance(module, nn.Module) else None
            if pruner is None or _is_depthwise(module):
                continue
            is_out = self._graph.is_out_channel_pruning_fn(dep.handler)
            count = getattr(pruner, "get_out_channel_groups" if is_out else "get_in_channel_groups", None)
            counts.append(int(count(module)) if count is not None else 1)
        return max(counts)

    def channels(self, root: str) -> int:
        """Current output channels of a group's root layer."""
        return int(self._graph.get_out_channels(self.roots[root]))

    def scores(self, scorer: Callable[[Any], torch.Tensor | None]) -> dict[str, torch.Tensor | None]:
        """One score per channel block of each group (None where the criterion finds nothing to score)."""
        out: dict[str, torch.Tensor | None] = {}
        for root, module in self.roots.items():
            score = scorer(self._group(module))
            out[root] = None if score is None else score.detach().float().view(self.units[root], -1).mean(0)
        return out

    def remove(self, root: str, blocks: list[int]) -> str | None:
        """Remove channel blocks from a group; on failure the model is restored and the reason returned."""
        per_block = self.channels(root) // self.units[root]
        indices = sorted(b + u * per_block for u in range(self.units[root]) for b in blocks)
        group = self._group(self.roots[root], indices)
        if not self._graph.check_pruning_group(group):
            return "removing these channels would empty a layer tied to it"
        snapshot = {
            "model_state": {k: v.clone() for k, v in self.model.state_dict().items()},
            "architecture": checkpoint.architecture(self.model),
        }
        was_training = self.model.training
        try:
            group.prune()
            with torch.no_grad():
                shapes = _shapes(self.model.eval()(self.example))
            if shapes != self._output_shapes:
                raise RuntimeError(f"the model output changes shape from {self._output_shapes} to {shapes}")
        except Exception as exc:  # the forward is user code: any error means this group cannot be pruned
            checkpoint.restore(self.model, snapshot)
            return f"removing its channels breaks the forward pass ({type(exc).__name__}: {exc})"
        finally:
            self.model.train(was_training)
        return None

    def drop(self, root: str, reason: str) -> None:
        """Stop pruning a group; its selected layers are reported with `reason`."""
        for member in self.members.pop(root):
            self.skipped[member] = Skipped(reason, True)
        del self.roots[root], self.units[root]

"""Structured channel pruning: whole output channels of Conv/Linear layers go, so every layer is smaller.

torch-pruning's dependency graph (Fang et al., 2023, "DepGraph: Towards Any Structural Pruning")
groups each layer's output channels with everything tied to them: BatchNorm, the next layer's
inputs, residual additions that force the same channels on several layers, concatenations,
depthwise and grouped convolutions, a flatten into a Linear. Each group is scored by an importance
criterion (`l1` filter norms, Li et al., 2017; `bn_scale`, Liu et al., 2017; `taylor`, Molchanov
et al., 2019; `random` as a baseline) and loses its lowest-scored channels: `ratio` of each group
(`scope: uniform`) or of all of them ranked together (`scope: global`, capped per group by
`max_layer_ratio`). With `steps` > 1 the ratio is reached in equal steps spread over fine-tuning.
A layer that feeds the model output (the classifier) keeps its output channels; a group whose
removal breaks the forward pass is restored and reported (or stops the run with `strict: true`).

    passes:
      - kind: channels
        ratio: 0.5
        importance: l1
        scope: uniform
        round_to: 8
        steps: 1

`finish` leaves physically smaller layers (no masks, no zeros): onnxruntime's dense kernels run less work.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator
from torch import nn

from sparsecli.errors import BadInput
from sparsecli.passes import importance
from sparsecli.passes.base import Pass, PassContext, PassSpec
from sparsecli.passes.dependency import ChannelGraph
from sparsecli.passes.selection import channels_to_remove, select_modules
from sparsecli.schedule import stepped


class ChannelsSpec(PassSpec):
    kind: Literal["channels"] = "channels"
    ratio: float = Field(..., ge=0, lt=1, description="Fraction of output channels removed (structured).")
    importance: Literal["l1", "l2", "bn_scale", "taylor", "random"] = Field(
        "l1", description="Channel score: weight norm (l1, l2), BatchNorm scale, first-order Taylor, or random."
    )
    scope: Literal["uniform", "global"] = Field(
        "uniform", description="Remove `ratio` from every layer, or rank channels across all layers."
    )
    max_layer_ratio: float = Field(
        0.9, gt=0, lt=1, description="scope global: the most any one layer may lose, so no layer disappears."
    )
    round_to: int = Field(1, ge=1, description="Keep channel counts multiples of this (e.g. 8 for SIMD kernels).")
    steps: int = Field(1, ge=1, description="Prune in this many equal steps spread over fine-tuning; 1: at once.")
    strict: bool = Field(False, description="Stop at a layer that cannot be pruned instead of skipping it.")

    @model_validator(mode="after")
    def _cap_allows_ratio(self) -> ChannelsSpec:
        if self.scope == "global" and self.max_layer_ratio < self.ratio:
            raise ValueError(f"max_layer_ratio ({self.max_layer_ratio}) must be >= ratio ({self.ratio})")
        return self


class ChannelsPass(Pass):
    kind = "channels"
    spec_type = ChannelsSpec
    spec: ChannelsSpec

    def _prepare(self, model: nn.Module, ctx: PassContext) -> None:
        self.ctx = ctx
        self.model = model
        selected = select_modules(model, self.spec.include, self.spec.exclude)
        self.graph = ChannelGraph(model, ctx.example_input, selected)
        self.tracing_notes = self.graph.notes
        self.initial = {root: self.graph.channels(root) // self.graph.units[root] for root in self.graph.roots}
        self.channels_before = {fqn: _out_channels(module) for fqn, module in selected.items()}
        self.modules = selected
        self.skipped = self.graph.skipped  # outlives the graph, which finish drops
        self.applied = 0.0
        self._apply(stepped(0.0, self.spec.ratio, self.spec.steps, ctx.total_epochs))

    def _on_step(self, model: nn.Module, step: int) -> None:
        self._apply(stepped(self.ctx.epoch_at(step), self.spec.ratio, self.spec.steps, self.ctx.total_epochs))

    def _apply(self, ratio: float) -> None:
        """Remove channels until each group (or all together) has lost `ratio` of its initial channels."""
        if ratio <= self.applied or not self.graph.roots:
            self.applied = max(self.applied, ratio)
            return
        if self.spec.importance == "taylor":
            importance.loss_gradients(self.model, self.ctx.calibration, self.ctx.loss_fn)
        scores = self.graph.scores(importance.channel_scorer(self.spec.importance))
        for root in [r for r, s in scores.items() if s is None]:
            self.graph.drop(root, f"importance {self.spec.importance} finds nothing to score in its group")
        scores = {r: s for r, s in scores.items() if s is not None}
        removal = channels_to_remove(
            scores,
            {r: self.initial[r] for r in scores},
            ratio,
            scope=self.spec.scope,
            max_layer_ratio=self.spec.max_layer_ratio,
            round_to=self.spec.round_to,
        )
        for root, blocks in removal.items():
            failure = self.graph.remove(root, blocks.tolist()) if len(blocks) else None
            if failure is not None:
                self.graph.drop(root, failure)
        if self.spec.importance == "taylor":
            self.model.zero_grad(set_to_none=True)
        self.applied = ratio
        self._check_failures()

    def _check_failures(self) -> None:
        failures = {m: s.reason for m, s in self.skipped.items() if s.is_failure}
        if failures and self.spec.strict:
            raise BadInput("strict: cannot prune " + "; ".join(f"{m}: {r}" for m, r in failures.items()))

    def _finish(self, model: nn.Module) -> nn.Module:
        self._apply(self.spec.ratio)
        self.graph = None  # drop torch-pruning's references into the model
        return model

    def _describe(self) -> dict[str, Any]:
        return {
            "applied_ratio": self.applied,
            "channels": {
                fqn: {"before": self.channels_before[fqn], "after": _out_channels(m)} for fqn, m in self.modules.items()
            },
            "skipped": {m: s.reason for m, s in self.skipped.items()},
            "notes": [f"{m}: {s.reason}" for m, s in self.skipped.items()] + self.tracing_notes,
        }


def _out_channels(module: nn.Module) -> int:
    return int(module.weight.shape[0])

"""Removing whole units (attention heads, FFN neurons) from Linear blocks: the machinery `heads` and `neurons` share.

A `Block` is a set of producer Linear layers whose output rows come in units (a head is `head_dim`
rows of q, k and v; a neuron is one row of the FFN's first Linear) and the consumer Linear that reads
those units as input columns (attention's out projection, the FFN's second Linear). Removing a unit
slices its rows and columns out, so every layer really shrinks. Scoring (`unit_scores`) and choosing
(`selection.channels_to_remove`) are separate pieces; each pass only says where its blocks are.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
from pydantic import Field
from torch import nn

from sparsecli import checkpoint
from sparsecli.errors import BadInput
from sparsecli.passes.base import Pass, PassContext, PassSpec, forward
from sparsecli.passes.calibration import Gram, gather
from sparsecli.passes.selection import channels_to_remove, select_modules
from sparsecli.schedule import stepped


class Unprunable(Exception):
    """A selected module that has no block to shrink; the message says why."""


@dataclass
class Block:
    """Units that go together: `unit` output rows of each producer and as many input columns of the consumer."""

    name: str
    owner: nn.Module  # holds producers, consumer and any attribute that counts units (restored on failure)
    producers: list[nn.Linear]
    consumer: nn.Linear
    unit: int = 1
    resized: Callable[[torch.Tensor], None] | None = None  # told the kept unit indices after each removal

    @property
    def units(self) -> int:
        return self.consumer.in_features // self.unit


def unit_scores(
    blocks: list[Block], criterion: str, model: nn.Module, batches: list[tuple[torch.Tensor, Any]]
) -> dict[str, torch.Tensor | None]:
    """One score per unit of each block; higher matters more (None: the block never ran on `batches`).

    `l1`/`l2`: norm of every weight tied to the unit (its producer rows and biases, its consumer
    columns), as in Li et al., 2017 for filters; `activation`: mean norm of the unit's share of the
    consumer's output on calibration batches (Michel et al., 2019 score heads by their effect on the
    output); `random`: a baseline.
    """
    if criterion == "activation":
        if not batches:
            raise BadInput("importance: activation needs calibration batches, and none were given")
        return _contributions(blocks, model, batches)
    if criterion == "random":
        return {b.name: torch.rand(b.units) for b in blocks}
    return {b.name: _weight_norm(b, 1.0 if criterion == "l1" else 2.0) for b in blocks}


@torch.no_grad()
def _weight_norm(block: Block, p: float) -> torch.Tensor:
    total = torch.zeros(block.units)
    for linear in block.producers:
        total += linear.weight.detach().float().abs().pow(p).reshape(block.units, -1).sum(1).cpu()
        if linear.bias is not None:
            total += linear.bias.detach().float().abs().pow(p).reshape(block.units, -1).sum(1).cpu()
    columns = block.consumer.weight.detach().float().abs().pow(p)
    total += columns.reshape(columns.shape[0], block.units, block.unit).sum((0, 2)).cpu()
    return total.pow(1.0 / p)


@torch.no_grad()
def _contributions(
    blocks: list[Block], model: nn.Module, batches: list[tuple[torch.Tensor, Any]]
) -> dict[str, torch.Tensor | None]:
    """|| x_u W_u^T || averaged over tokens, x_u the unit's consumer inputs and W_u its consumer columns."""
    sums = {b.name: torch.zeros(b.units) for b in blocks}
    counts = dict.fromkeys(sums, 0)

    def hook(block: Block) -> Callable[..., None]:
        def record(module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
            x = args[0].detach().float().reshape(-1, block.units, block.unit)
            w = module.weight.detach().float().reshape(-1, block.units, block.unit)
            sums[block.name] += torch.einsum("nud,oud->nuo", x, w).norm(dim=-1).sum(0).cpu()
            counts[block.name] += x.shape[0]

        return record

    handles = [b.consumer.register_forward_pre_hook(hook(b)) for b in blocks]
    was_training = model.training
    try:
        model.eval()
        for x, _ in batches:
            forward(model, x)
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return {n: sums[n] / counts[n] if counts[n] else None for n in sums}


@torch.no_grad()
def keep_units(block: Block, keep: torch.Tensor) -> torch.Tensor:
    """Keep only the units `keep` (sorted indices): slice producer rows and consumer columns in place.
    Returns the consumer columns kept."""
    index = (keep[:, None] * block.unit + torch.arange(block.unit)).flatten().to(block.consumer.weight.device)
    for linear in block.producers:
        _slice(linear, index, dim=0)
    _slice(block.consumer, index, dim=1)
    if block.resized is not None:
        block.resized(keep)
    return index


def augmented(consumer: nn.Linear) -> torch.Tensor:
    """[W b] of a Linear (b = 0 without a bias): what `refit` reproduces, in the order of Gram's columns."""
    bias = consumer.bias if consumer.bias is not None else consumer.weight.new_zeros(consumer.out_features)
    return torch.cat([consumer.weight, bias[:, None]], 1).detach()


@torch.no_grad()
def refit(consumer: nn.Linear, dense: torch.Tensor, gram: Gram, index: torch.Tensor, damp: float = 0.01) -> None:
    """Least-squares weights (and bias) for the kept columns `index` so the sliced consumer reproduces the
    output `dense` (`augmented` before slicing) gave on the calibration inputs: G_kk [W' b']^T = G_k: [W b]^T.

    What the removed units contributed is carried, as far as the kept ones correlate with them, by the
    kept columns and the bias (Kwon et al., 2022 reconstruct pruned BERT layers this way, without training).
    """
    g = gram.matrix.double()
    has_bias = consumer.bias is not None
    keep = torch.cat([index, index.new_tensor([len(g) - 1])]) if has_bias else index
    rows = g[keep]
    system = rows[:, keep]
    system += damp * system.diagonal().mean() * torch.eye(len(keep), dtype=g.dtype, device=g.device)
    solution = torch.linalg.solve(system, rows @ dense.double().T).T.to(consumer.weight.dtype)
    consumer.weight.copy_(solution[:, : len(index)])
    if has_bias:
        consumer.bias.copy_(solution[:, -1])


def _slice(linear: nn.Linear, index: torch.Tensor, dim: int) -> None:
    linear.weight = nn.Parameter(linear.weight.index_select(dim, index).clone(), linear.weight.requires_grad)
    if dim == 0:
        linear.out_features = len(index)
        if linear.bias is not None:
            linear.bias = nn.Parameter(linear.bias.index_select(0, index).clone(), linear.bias.requires_grad)
    else:
        linear.in_features = len(index)


class UnitsSpec(PassSpec):
    """Fields of the passes that remove whole units from blocks."""

    ratio: float = Field(..., ge=0, lt=1, description="Fraction of each block's units removed (at least one stays).")
    importance: Literal["l1", "l2", "activation", "random"] = Field(
        "l2", description="Unit score: norm of its weights (l1, l2), its output on calibration batches, or random."
    )
    steps: int = Field(1, ge=1, description="Prune in this many equal steps spread over fine-tuning; 1: at once.")
    reconstruct: bool = Field(
        False,
        description="Refit each shrunk block's output Linear by least squares on calibration batches, so it "
        "reproduces the block's output before the cut (recovers much of the loss before any fine-tuning).",
    )
    strict: bool = Field(False, description="Stop at a module that cannot be pruned instead of skipping it.")


class UnitsPass(Pass):
    """Lifecycle shared by `heads` and `neurons`: subclasses say which modules hold blocks and how."""

    unit_name: ClassVar[str]  # "heads" or "neurons", for messages and the report
    candidate_types: ClassVar[tuple[type[nn.Module], ...]]
    where: ClassVar[str]  # where the pass looks, for the message when it finds nothing
    spec: UnitsSpec

    def _block(self, model: nn.Module, fqn: str, module: nn.Module) -> Block | None:
        """The block `module` holds, None if it holds none (silently), or Unprunable with the reason."""
        raise NotImplementedError

    def _survey(self, model: nn.Module) -> None:
        """Look at the whole model once before `_block` is asked about single modules."""

    def _prepare(self, model: nn.Module, ctx: PassContext) -> None:
        self.model, self.ctx = model, ctx
        self._survey(model)
        self.blocks: dict[str, Block] = {}
        self.skipped: dict[str, str] = {}
        if not any(isinstance(m, self.candidate_types) for m in model.modules()):
            raise BadInput(f"kind: {self.kind} finds no {self.unit_name} in this model; {self.where}")
        for fqn, module in select_modules(model, self.spec.include, self.spec.exclude, self.candidate_types).items():
            try:
                block = self._block(model, fqn, module)
            except Unprunable as exc:
                self.skipped[fqn] = str(exc)
                continue
            if block is not None:
                self.blocks[block.name] = block
        if not self.blocks and not self.skipped:
            raise BadInput(f"kind: {self.kind} finds no {self.unit_name} in the selected modules; {self.where}")
        self.initial = {name: b.units for name, b in self.blocks.items()}
        self.applied = 0.0
        self._check_strict()
        self._apply(stepped(0.0, self.spec.ratio, self.spec.steps, ctx.total_epochs))

    def _on_step(self, model: nn.Module, step: int) -> None:
        self._apply(stepped(self.ctx.epoch_at(step), self.spec.ratio, self.spec.steps, self.ctx.total_epochs))

    def _apply(self, ratio: float) -> None:
        """Remove units until every block has lost `ratio` of its initial units (rounded, one always stays)."""
        if ratio <= self.applied or not self.blocks:
            self.applied = max(self.applied, ratio)
            return
        scores = unit_scores(list(self.blocks.values()), self.spec.importance, self.model, self.ctx.calibration)
        for name in [n for n, s in scores.items() if s is None]:
            self._drop(name, "never runs on the calibration batches, so activation importance cannot score it")
        scores = {n: s for n, s in scores.items() if s is not None}
        removal = channels_to_remove(scores, self.initial, ratio)
        grams = self._grams([n for n, r in removal.items() if len(r)]) if self.spec.reconstruct else {}
        for name, remove in removal.items():
            if len(remove):
                self._remove(name, remove, grams.get(name))
        self.applied = ratio
        self._check_strict()

    def _grams(self, names: list[str]) -> dict[str, Gram]:
        """The inputs' Gram matrix of each named block's consumer, from one pass over the calibration batches."""
        if not self.ctx.calibration:
            raise BadInput(f"kind: {self.kind}: reconstruct needs calibration batches, and none were given")
        consumers = {name: self.blocks[name].consumer for name in names}
        return gather(self.model, consumers, [x for x, _ in self.ctx.calibration], lambda m: Gram(m, bias=True))

    def _remove(self, name: str, remove: torch.Tensor, gram: Gram | None = None) -> None:
        """Shrink one block (refitting its consumer when `gram` is given); if the model no longer runs,
        put the block back and skip it with the reason."""
        block = self.blocks[name]
        dense = augmented(block.consumer) if gram is not None else None
        keep = torch.tensor(sorted(set(range(block.units)) - set(remove.tolist())), dtype=torch.long)
        snapshot = {
            "model_state": {k: v.clone() for k, v in block.owner.state_dict().items()},
            "architecture": checkpoint.architecture(block.owner),
        }
        was_training = self.model.training
        try:
            index = keep_units(block, keep)
            if gram is not None and dense is not None:
                refit(block.consumer, dense, gram, index)
            with torch.no_grad():
                forward(self.model.eval(), self.ctx.example_input)
        except Exception as exc:  # the forward is user code: any error means this block cannot shrink
            checkpoint.restore(block.owner, snapshot)
            self._drop(name, f"removing {self.unit_name} breaks the forward pass ({type(exc).__name__}: {exc})")
        finally:
            self.model.train(was_training)

    def _drop(self, name: str, reason: str) -> None:
        del self.blocks[name], self.initial[name]
        self.skipped[name] = reason

    def _check_strict(self) -> None:
        if self.skipped and self.spec.strict:
            raise BadInput("strict: cannot prune " + "; ".join(f"{m}: {r}" for m, r in self.skipped.items()))

    def _finish(self, model: nn.Module) -> nn.Module:
        self._apply(self.spec.ratio)
        return model

    def _describe(self) -> dict[str, Any]:
        counts = {n: {"before": self.initial[n], "after": b.units} for n, b in self.blocks.items()}
        unchanged = [n for n, c in counts.items() if c["before"] == c["after"] and self.applied > 0]
        return {
            "applied_ratio": self.applied,
            self.unit_name: counts,
            "skipped": self.skipped,
            "notes": [f"{m}: {r}" for m, r in self.skipped.items()]
            + [f"{n}: keeps all {counts[n]['before']} {self.unit_name} (ratio rounds to none)" for n in unchanged],
        }

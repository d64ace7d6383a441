"""The pass interface every sparsification method implements, and the spec fields all passes share.

A pass is configured by a frozen spec (its recipe entry) and keeps runtime state on itself. The
training loop owns the order of calls; calling a hook before `prepare` or after `finish` raises.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn


class PassSpec(BaseModel):
    """Fields every pass accepts. Subclasses add a `kind: Literal[...]` and their own fields."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    include: list[str] = Field(
        default_factory=list, description="Glob patterns on module names (fqn) to act on; empty means all."
    )
    exclude: list[str] = Field(default_factory=list, description="Glob patterns on module names to leave alone.")


# A model's inputs: one tensor, or a tuple of tensors passed positionally (token ids, attention mask, ...).
Inputs = torch.Tensor | tuple[torch.Tensor, ...]


def forward(model: nn.Module, inputs: Inputs) -> torch.Tensor:
    """`model` called on `inputs`, unpacking a tuple into positional arguments."""
    return model(*inputs) if isinstance(inputs, tuple | list) else model(inputs)


@dataclass
class PassContext:
    """What a pass may know about the job: shapes, step counts, a little real data."""

    example_input: Inputs
    steps_per_epoch: int = 1
    total_epochs: float = 1.0
    calibration: list[tuple[Inputs, torch.Tensor]] = field(default_factory=list)
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None

    def epoch_at(self, step: int) -> float:
        return step / max(1, self.steps_per_epoch)


class PassOrderError(RuntimeError):
    """A hook was called out of lifecycle order: a programming error, never a user error."""


class Pass:
    """Base class: hooks default to doing nothing, lifecycle order is enforced."""

    kind: ClassVar[str]
    spec_type: ClassVar[type[PassSpec]]

    def __init__(self, spec: PassSpec):
        self.spec = spec
        self._state = "new"
        self.applied: float | None = None  # how far a gradual pass has gone (target or ratio)

    # The lifecycle wrappers below are what the training loop calls; subclasses override the _hooks.
    def prepare(self, model: nn.Module, ctx: PassContext) -> None:
        self._expect("new")
        self._prepare(model, ctx)
        self._state = "prepared"

    def on_step(self, model: nn.Module, step: int) -> None:
        self._expect("prepared")
        self._on_step(model, step)

    def penalty(self, model: nn.Module) -> torch.Tensor | None:
        self._expect("prepared")
        return self._penalty(model)

    def finish(self, model: nn.Module) -> nn.Module:
        self._expect("prepared")
        model = self._finish(model)
        self._state = "finished"
        return model

    def describe(self) -> dict[str, Any]:
        """JSON-safe summary for the report: the spec plus what the pass did."""
        return {"kind": self.kind, **self.spec.model_dump(mode="json", exclude={"kind"}), **self._describe()}

    def state_dict(self) -> dict[str, Any]:
        """Runtime state beyond the model's own tensors (masks are buffers there), for --resume.

        By default a gradual pass's progress: `applied`, the target or ratio it has reached so far.
        """
        return {"applied": self.applied} if self.applied is not None else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore `state_dict()` after `prepare`, when a run resumes from a checkpoint."""
        if "applied" in state:
            self.applied = float(state["applied"])

    def _prepare(self, model: nn.Module, ctx: PassContext) -> None:
        pass

    def _on_step(self, model: nn.Module, step: int) -> None:
        pass

    def _penalty(self, model: nn.Module) -> torch.Tensor | None:
        return None

    def _finish(self, model: nn.Module) -> nn.Module:
        return model

    def _describe(self) -> dict[str, Any]:
        return {}

    def _expect(self, state: str) -> None:
        if self._state != state:
            raise PassOrderError(f"{type(self).__name__}: hook called in state {self._state!r}, expected {state!r}")


def sum_penalties(terms: Iterable[torch.Tensor | None]) -> torch.Tensor | None:
    """Add the penalties that exist; None when no pass adds a loss term."""
    present = [t for t in terms if t is not None]
    return torch.stack(present).sum() if present else None

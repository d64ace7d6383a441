"""The pass registry: one import line and one entry per sparsification method, keyed by `kind`."""

from __future__ import annotations

from sparsecli.passes.base import Pass, PassContext, PassSpec
from sparsecli.passes.magnitude import MagnitudePass

REGISTRY: dict[str, type[Pass]] = {cls.kind: cls for cls in (MagnitudePass,)}


def build(spec: PassSpec) -> Pass:
    """The pass object for a validated recipe entry."""
    return REGISTRY[spec.kind](spec)  # type: ignore[attr-defined]


__all__ = ["REGISTRY", "Pass", "PassContext", "PassSpec", "build"]

"""The pass registry: one import line and one entry per sparsification method, keyed by `kind`."""

from __future__ import annotations

from sparsecli.passes.activation import ActivationPass
from sparsecli.passes.base import Pass, PassContext, PassSpec
from sparsecli.passes.channels import ChannelsPass
from sparsecli.passes.group_lasso import GroupLassoPass
from sparsecli.passes.heads import HeadsPass
from sparsecli.passes.magnitude import MagnitudePass
from sparsecli.passes.neurons import NeuronsPass
from sparsecli.passes.nm import NMPass
from sparsecli.passes.norm import L1L2Pass, L1Pass, L2Pass
from sparsecli.passes.regrow import RegrowPass
from sparsecli.passes.sparsegpt import SparseGPTPass
from sparsecli.passes.wanda import WandaPass

REGISTRY: dict[str, type[Pass]] = {
    cls.kind: cls
    for cls in (MagnitudePass, ChannelsPass, HeadsPass, NeuronsPass, WandaPass, SparseGPTPass)
    + (L1Pass, L2Pass, L1L2Pass, GroupLassoPass, RegrowPass, NMPass, ActivationPass)
}


def build(spec: PassSpec) -> Pass:
    """The pass object for a validated recipe entry."""
    return REGISTRY[spec.kind](spec)  # type: ignore[attr-defined]


__all__ = ["REGISTRY", "Pass", "PassContext", "PassSpec", "build"]

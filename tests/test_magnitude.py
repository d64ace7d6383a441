"""Magnitude pass mechanics: exact sparsity, monotone masks, per-layer targets, permanent zeros."""

from __future__ import annotations

import pytest
import torch

from sparsecli.errors import BadInput
from sparsecli.models.zoo import convnet
from sparsecli.passes import PassContext, masking
from sparsecli.passes.magnitude import MagnitudePass, MagnitudeSpec


def _prepared(**fields) -> tuple[torch.nn.Module, MagnitudePass]:
    torch.manual_seed(0)
    model = convnet((1, 8, 8), 10)
    the_pass = MagnitudePass(MagnitudeSpec(**fields))
    the_pass.prepare(model, PassContext(torch.rand(1, 1, 8, 8), steps_per_epoch=10, total_epochs=4))
    return model, the_pass


def _sparsity(modules) -> float:
    weights = [m.weight for m in modules]
    return sum(int((w == 0).sum()) for w in weights) / sum(w.numel() for w in weights)


def test_global_one_shot_reaches_exact_target_and_spares_excluded():
    model, the_pass = _prepared(target=0.7, exclude=["classifier"])
    assert _sparsity(the_pass.modules.values()) == pytest.approx(0.7, abs=1e-4)
    assert (model.classifier.weight != 0).all()


def test_per_layer_targets_hold_in_each_layer():
    model, the_pass = _prepared(target=0.5, scope="per_layer", per_layer={"features.0.*": 0.2})
    for name, module in the_pass.modules.items():
        expected = 0.2 if name.startswith("features.0.") else 0.5
        assert _sparsity([module]) == pytest.approx(expected, abs=0.01), name


def test_gradual_schedule_rises_and_pruned_weights_stay_pruned():
    model, the_pass = _prepared(target=0.8, schedule={"curve": "cubic", "end_epoch": 3, "every_steps": 5})
    assert _sparsity(the_pass.modules.values()) == 0.0
    pruned_before = None
    for step in (5, 10, 20, 30):
        the_pass.on_step(model, step)
        pruned = {n: (m.weight == 0).clone() for n, m in the_pass.modules.items()}
        if pruned_before is not None:
            assert all((pruned[n] | ~pruned_before[n]).all() for n in pruned)
        pruned_before = pruned
    assert _sparsity(the_pass.modules.values()) == pytest.approx(0.8, abs=1e-4)


def test_finish_bakes_zeros_and_removes_parametrizations():
    model, the_pass = _prepared(target=0.6, schedule={"curve": "linear"})
    with torch.no_grad():  # an optimizer step moves the originals; the mask must win
        for m in the_pass.modules.values():
            masking.original(m).add_(1.0)
    model = the_pass.finish(model)
    assert not masking.has_parametrizations(model)
    assert _sparsity(the_pass.modules.values()) == pytest.approx(0.6, abs=1e-4)
    assert isinstance(model.features[0][0].weight, torch.nn.Parameter)


def test_per_layer_pattern_must_match():
    with pytest.raises(BadInput, match="per_layer"):
        _prepared(target=0.5, scope="per_layer", per_layer={"nothing.here": 0.1})


def test_per_layer_needs_per_layer_scope():
    with pytest.raises(ValueError, match="scope: per_layer"):
        MagnitudeSpec(target=0.5, per_layer={"a": 0.1})

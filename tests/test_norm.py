"""Norm penalties: L1 raises the near-zero fraction against the same run without it; finish cuts and reports norms."""

from __future__ import annotations

import pytest
import torch

from sparsecli.passes import PassContext
from sparsecli.passes.norm import L1L2Pass, L1L2Spec, L1Pass, L1Spec, L2Pass, L2Spec
from tests.digits_training import baseline, conv_weights, new_convnet, train


def _near_zero(model: torch.nn.Module, eps: float = 1e-2) -> float:
    weights = conv_weights(model)
    return sum(int((w.abs() < eps).sum()) for w in weights) / sum(w.numel() for w in weights)


def test_l1_penalty_raises_the_near_zero_fraction():
    plain = _near_zero(baseline())
    penalised = _near_zero(train(new_convnet(), [L1Pass(L1Spec(l1=1e-3, exclude=["classifier"]))], epochs=2))
    assert penalised > plain + 0.05, (plain, penalised)


def test_penalty_is_the_weighted_sum_of_norms():
    model = new_convnet()
    the_pass = L1L2Pass(L1L2Spec(l1=0.1, l2=0.01, include=["classifier"]))
    the_pass.prepare(model, PassContext(torch.rand(1, 1, 8, 8)))
    w = model.classifier.weight
    expected = 0.1 * w.abs().sum() + 0.01 * w.square().sum()
    assert float(the_pass.penalty(model).detach()) == pytest.approx(float(expected.detach()), rel=1e-6)
    assert L2Pass(L2Spec(l2=0.0)).kind == "l2" and not hasattr(L2Spec(), "l1")


def test_finish_zeroes_below_threshold_then_up_to_target_and_reports_norms():
    model = new_convnet()
    the_pass = L1Pass(L1Spec(threshold=0.02, target=0.5, exclude=["classifier"]))
    the_pass.prepare(model, PassContext(torch.rand(1, 1, 8, 8)))
    small_before = {n: (m.weight.abs() < 0.02) for n, m in the_pass.modules.items()}
    model = the_pass.finish(model)
    weights = [m.weight for m in the_pass.modules.values()]
    assert sum(int((w == 0).sum()) for w in weights) == round(0.5 * sum(w.numel() for w in weights))
    for name, module in the_pass.modules.items():
        assert (module.weight[small_before[name]] == 0).all()
        layer = the_pass.describe()["layers"][name]
        assert layer["l1_after"] == pytest.approx(float(module.weight.detach().abs().sum()), rel=1e-5)
        assert layer["l2_after"] < layer["l2_before"]
        assert layer["sparsity_after"] == pytest.approx(float((module.weight == 0).float().mean()))

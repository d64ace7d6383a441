"""Activation penalty: measured ReLU sparsity on validation data rises against the same run without it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sparsecli import measure
from sparsecli.export import export_onnx
from sparsecli.passes import PassContext
from sparsecli.passes.activation import ActivationPass, ActivationSpec
from tests.digits_training import baseline, digits, new_convnet, train


def _relu_sparsity(model: torch.nn.Module, path) -> float:
    """Mean exact-zero fraction of the ReLU outputs, measured with onnxruntime on validation data."""
    x = digits().val.tensors[0]
    export_onnx(model, x[:1], path, opset=17, dynamic_batch=True)
    found = measure.onnx_activation_sparsity(path, x.numpy(), eps=1e-3)
    return float(np.mean([a["sparsity"] for a in found.values() if a["op"] == "Relu"]))


def test_activation_penalty_raises_measured_activation_sparsity(tmp_path):
    plain = _relu_sparsity(baseline(), tmp_path / "plain.onnx")
    model = train(new_convnet(), [ActivationPass(ActivationSpec(strength=5e-3))], epochs=2)
    penalised = _relu_sparsity(model, tmp_path / "penalised.onnx")
    assert penalised > plain + 0.03, (plain, penalised)


def test_penalty_is_the_l1_per_sample_of_training_outputs_only():
    model = new_convnet()
    the_pass = ActivationPass(ActivationSpec(strength=0.5, include=["features.0.2"]))
    the_pass.prepare(model, PassContext(torch.rand(1, 1, 8, 8)))
    x = torch.rand(4, 1, 8, 8)
    with torch.no_grad():
        model.eval()(x)
    assert the_pass.penalty(model) is None  # evaluation leaves nothing behind
    model.train()
    expected = model.features[0](x).abs().sum() / 4
    assert float(the_pass.penalty(model).detach()) == pytest.approx(0.5 * float(expected.detach()), rel=1e-5)
    the_pass.finish(model)
    assert not any(m._forward_hooks for m in model.modules())

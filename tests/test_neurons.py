"""`kind: neurons`: FFN hidden neurons leave both Linears, the rest of the function stays, export matches."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from sparsecli.errors import BadInput
from sparsecli.export import check_parity, export_onnx
from sparsecli.models.zoo import ZOO
from sparsecli.passes import PassContext
from sparsecli.passes.neurons import NeuronsPass, NeuronsSpec, ffn_pairs
from tests.fixtures.attention_models import encoder, unprunable

X = torch.rand(16, 1, 8, 8)


def _prune(model: nn.Module, **spec) -> NeuronsPass:
    the_pass = NeuronsPass(NeuronsSpec(**spec))
    the_pass.prepare(model, PassContext(X[:1], calibration=[(X, torch.zeros(16, dtype=torch.long))]))
    the_pass.finish(model)
    return the_pass


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("importance", ["l2", "activation"])
def test_halves_ffn_of_zoo_transformer_and_exports(importance, tmp_path):
    torch.manual_seed(0)
    model = ZOO["transformer"]((1, 8, 8), 10, dim=32, ffn=64)
    before = _params(model)
    the_pass = _prune(model, ratio=0.5, importance=importance)
    for layer in model.layers:
        assert layer.linear1.out_features == layer.linear2.in_features == 32
        assert layer.linear1.weight.shape == (32, 32) and layer.linear2.weight.shape == (32, 32)
    assert _params(model) == before - 2 * (32 * 32 + 32 + 32 * 32)
    assert the_pass.describe()["neurons"]["layers.1.linear1"] == {"before": 64, "after": 32}
    assert torch.isfinite(model.eval()(X)).all()
    path = export_onnx(model, X[:1], tmp_path / "m.onnx", 17, dynamic_batch=True)
    assert check_parity(path, model, X, atol=1e-4) <= 1e-4


def test_removing_neurons_equals_silencing_them():
    """The pruned model computes what the full one computes with the removed neurons' linear2 columns at zero."""
    torch.manual_seed(0)
    model = ZOO["transformer"]((1, 8, 8), 10, dim=16, ffn=32).eval()
    silenced = copy.deepcopy(model)
    weights = {n: layer.linear1.weight.clone() for n, layer in enumerate(model.layers)}
    _prune(model, ratio=0.25)
    with torch.no_grad():
        for n, layer in enumerate(silenced.layers):
            kept = {tuple(row.tolist()) for row in model.layers[n].linear1.weight}
            gone = [i for i, row in enumerate(weights[n]) if tuple(row.tolist()) not in kept]
            assert len(gone) == 8
            layer.linear2.weight[:, gone] = 0
    torch.testing.assert_close(model(X), silenced(X))


def test_sequential_pairs_are_found():
    """Linear, then elementwise modules, then Linear inside an nn.Sequential; not across containers."""
    pairs = ffn_pairs(ZOO["mlp"]((1, 8, 8), 10))
    assert set(pairs) == {"features.1"}
    model = encoder()
    assert set(ffn_pairs(model)) == {"encoder.layers.0.linear1", "encoder.layers.1.linear1", "mlp.0"}
    _prune(model, ratio=0.5, exclude=["encoder.layers.1.*"])
    assert model.mlp[0].out_features == model.mlp[3].in_features == 32
    assert model.encoder.layers[0].linear1.out_features == 32
    assert model.encoder.layers[1].linear1.out_features == 64


def test_activation_importance_removes_the_dead_neuron():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3))  # no neuron is off by chance
    with torch.no_grad():
        model[2].weight[:, 3] = 0  # neuron 3 never reaches the output
    original = model[0].weight.clone()
    the_pass = NeuronsPass(NeuronsSpec(ratio=0.2, importance="activation"))
    x = torch.rand(8, 4)
    the_pass.prepare(model, PassContext(x[:1], calibration=[(x, None)]))
    torch.testing.assert_close(model[0].weight, original[[0, 1, 2, 4]])


def test_what_cannot_be_pruned_is_named():
    model = unprunable()
    the_pass = _prune(model, ratio=0.5)
    assert "'_swish' is user code" in the_pass.describe()["skipped"]["block.linear1"]
    assert model.block.linear1.out_features == 32
    with pytest.raises(BadInput, match="strict: cannot prune block.linear1: activation '_swish'"):
        _prune(unprunable(), ratio=0.5, strict=True)


def test_a_model_without_ffn_is_told_so():
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    with pytest.raises(BadInput, match="finds no neurons"):
        _prune(model, ratio=0.5)

"""Shared unit removal: least-squares refit of a shrunk block's output Linear (`reconstruct`)."""

from __future__ import annotations

import copy

import torch
from torch import nn

from sparsecli.models.zoo import ZOO
from sparsecli.passes import PassContext
from sparsecli.passes.calibration import Gram
from sparsecli.passes.neurons import NeuronsPass, NeuronsSpec
from sparsecli.passes.structure import augmented, refit


def test_refit_recovers_a_removed_column_that_kept_columns_carry():
    torch.manual_seed(0)
    x = torch.randn(512, 4)
    x = torch.cat([x, x[:, :1] - 2 * x[:, 1:2] + 0.5], 1)  # column 4 = x0 - 2 x1 + 0.5: redundant
    layer = nn.Linear(5, 3)
    expected = layer(x).detach()
    gram = Gram(layer, bias=True)
    for chunk in x.split(100):  # accumulated batch by batch, as on calibration batches
        gram.add(chunk)
    dense, keep = augmented(layer), torch.arange(4)
    sliced = nn.Linear(4, 3)
    with torch.no_grad():
        sliced.weight.copy_(layer.weight[:, :4])
        sliced.bias.copy_(layer.bias)
    assert (sliced(x[:, :4]) - expected).abs().max() > 0.1  # plain slicing loses column 4's share
    refit(sliced, dense, gram, keep, damp=1e-9)
    assert torch.allclose(sliced(x[:, :4]), expected, atol=1e-4)  # the bias and x0, x1 now carry it


def test_reconstruct_brings_a_pruned_transformer_closer_to_the_dense_one():
    torch.manual_seed(0)
    dense = ZOO["transformer"]((1, 8, 8), 10, dim=32, ffn=64).eval()
    x = torch.rand(64, 1, 8, 8)
    errors = {}
    for reconstruct in (False, True):
        model = copy.deepcopy(dense)
        the_pass = NeuronsPass(NeuronsSpec(ratio=0.5, importance="activation", reconstruct=reconstruct))
        the_pass.prepare(model, PassContext(x[:1], calibration=[(x, torch.zeros(64, dtype=torch.long))]))
        the_pass.finish(model)
        assert all(layer.linear1.out_features == 32 for layer in model.layers)
        with torch.no_grad():
            errors[reconstruct] = float((model.eval()(x) - dense(x)).pow(2).mean())
    assert errors[True] < 0.5 * errors[False]

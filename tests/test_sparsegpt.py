"""SparseGPT: exact sparsity per layer, 2:4 groups, lower reconstruction error than magnitude on the
calibration inputs, a reported error that matches a direct computation, and a Hessian with dead inputs."""

from __future__ import annotations

import copy

import pytest
import torch
from pydantic import TypeAdapter, ValidationError
from torch import nn

from sparsecli.passes import PassContext, build
from sparsecli.passes.calibration import Gram
from sparsecli.passes.sparsegpt import sparsegpt_prune
from sparsecli.recipe import PassEntry
from tests.conftest import CONFIGS, FAST, overrides


def _correlated_inputs(seed: int, samples: int, features: int) -> torch.Tensor:
    """Inputs with uneven scales and correlated features: where a weight update can compensate."""
    generator = torch.Generator().manual_seed(seed)
    mixing = torch.eye(features) + 0.4 * torch.randn(features, features, generator=generator)
    scale = torch.logspace(-1, 0.5, features)
    return (torch.randn(samples, features, generator=generator) * scale) @ mixing


def _prune(model: nn.Module, inputs: torch.Tensor, **fields):
    the_pass = build(TypeAdapter(PassEntry).validate_python(fields))
    calibration = [(x, x) for x in inputs.split(64)]
    the_pass.prepare(model, PassContext(inputs[:1], calibration=calibration))
    return the_pass


def _output_error(dense: nn.Linear, pruned: nn.Linear, inputs: torch.Tensor) -> float:
    """||W X - W' X||^2 / ||W X||^2, computed directly on the calibration inputs (biases cancel)."""
    with torch.no_grad():
        return float((dense(inputs) - pruned(inputs)).pow(2).sum() / (dense(inputs) - dense.bias).pow(2).sum())


@pytest.mark.parametrize("pattern", [{"target": 0.5}, {"nm": "2:4"}])
def test_reconstruction_error_beats_magnitude_at_the_same_sparsity(pattern):
    torch.manual_seed(0)
    dense = nn.Linear(32, 16)
    inputs = _correlated_inputs(1, 256, 32)
    ours = nn.Sequential(copy.deepcopy(dense))
    the_pass = _prune(ours, inputs, kind="sparsegpt", blocksize=8, **pattern)
    magnitude = copy.deepcopy(dense)
    magnitude.weight.data *= _magnitude_keep(dense.weight, pattern)
    ours_error, magnitude_error = _output_error(dense, ours[0], inputs), _output_error(dense, magnitude, inputs)
    assert ours_error < 0.7 * magnitude_error
    assert the_pass.describe()["layers"]["0"]["reconstruction_error"] == pytest.approx(ours_error, rel=1e-3)


def _magnitude_keep(weight: torch.Tensor, pattern: dict) -> torch.Tensor:
    scores = weight.detach().abs()
    if "nm" in pattern:
        groups = scores.reshape(-1, 4)
        return (groups >= groups.sort(1).values[:, 2:3]).reshape(weight.shape)
    return scores > scores.flatten().median()


@pytest.mark.parametrize("target, blocksize", [(0.5, 128), (0.3, 7), (0.77, 16)])
def test_exact_sparsity_per_layer_and_only_masked_weights_are_zero(target, blocksize):
    torch.manual_seed(0)
    weight = torch.randn(12, 40)
    inputs = _correlated_inputs(2, 300, 40)
    after, keep = sparsegpt_prune(weight, 2 * inputs.T @ inputs / 300, target=target, n_m=None, blocksize=blocksize)
    assert int((~keep).sum()) == round(target * weight.numel())
    assert torch.equal(after == 0, ~keep)
    assert not torch.allclose(after[keep], weight[keep]), "kept weights get the OBS update"


def test_two_of_four_groups_through_the_pass_and_dead_inputs_stay_finite():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 4))
    inputs = _correlated_inputs(3, 128, 16)
    inputs[:, 5] = 0  # an input that never fires: a singular Hessian without the guard
    _prune(model, inputs, kind="sparsegpt", nm="2:4", blocksize=8)
    for module in (model[0], model[2]):
        assert torch.isfinite(module.weight).all()
        assert ((module.weight != 0).reshape(-1, 4).sum(1) <= 2).all()
    assert not any(m._forward_hooks for m in model.modules())


def test_gram_accumulates_batches_like_one_pass():
    inputs = _correlated_inputs(4, 100, 6)
    gram, with_bias = Gram(nn.Linear(6, 2)), Gram(nn.Linear(6, 2), bias=True)
    for chunk in inputs.split(30):
        gram.add(chunk)
        with_bias.add(chunk)
    assert torch.allclose(gram.matrix, inputs.T @ inputs / 100, atol=1e-5)
    ones = torch.cat([inputs, torch.ones(100, 1)], 1)
    assert torch.allclose(with_bias.matrix, ones.T @ ones / 100, atol=1e-5)


def test_blocksize_must_hold_whole_groups():
    with pytest.raises(ValidationError, match="multiple of M"):
        TypeAdapter(PassEntry).validate_python({"kind": "sparsegpt", "nm": "2:4", "blocksize": 6})


def test_config_runs_end_to_end(cli, tmp_path):
    code, _, err = cli("prune", CONFIGS / "sparsegpt.yaml", *overrides(*FAST, f"output={tmp_path / 'run'}"), "--json")
    assert code == 0, err

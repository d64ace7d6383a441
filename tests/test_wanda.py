"""Wanda: the mask equals an independent |W| x ||X|| computation, per-row and 2:4 counts are exact,
layers see the outputs of already-pruned layers, and no calibration hook outlives `prepare`."""

from __future__ import annotations

import pytest
import torch
from pydantic import TypeAdapter, ValidationError
from torch import nn

from sparsecli.passes import PassContext, build
from sparsecli.passes.calibration import gather
from sparsecli.passes.wanda import InputNorm
from sparsecli.recipe import PassEntry
from tests.conftest import CONFIGS, FAST, overrides


def _wanda(model: nn.Module, batches: list[torch.Tensor], **fields):
    the_pass = build(TypeAdapter(PassEntry).validate_python({"kind": "wanda", **fields}))
    the_pass.prepare(model, PassContext(batches[0][:1], calibration=[(x, x) for x in batches]))
    return the_pass


def _expected_keep(weight: torch.Tensor, inputs: torch.Tensor, n_prune: int) -> torch.Tensor:
    """Written from the paper, independently of the pass: sort |W_ij| * ||X_j|| within each row."""
    norms = inputs.reshape(-1, inputs.shape[-1]).pow(2).sum(0).sqrt()
    scores = weight.abs() * norms
    keep = torch.ones_like(weight, dtype=torch.bool)
    for row in range(len(weight)):
        keep[row, scores[row].argsort()[:n_prune]] = False
    return keep


def _scaled_inputs(seed: int, shape: tuple[int, ...]) -> list[torch.Tensor]:
    """Token batches whose features differ in scale by 30x, so |W| alone would choose differently."""
    generator = torch.Generator().manual_seed(seed)
    scale = torch.logspace(-1.5, 0, shape[-1])[torch.randperm(shape[-1], generator=generator)]
    return [torch.randn(*shape, generator=generator) * scale for _ in range(2)]


def test_mask_matches_an_independent_computation_and_cuts_each_row_exactly():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(10, 6))
    weight = model[0].weight.detach().clone()
    batches = _scaled_inputs(1, (4, 5, 10))  # (batch, tokens, features): every token is a sample
    _wanda(model, batches, target=0.3)
    expected = _expected_keep(weight, torch.cat(batches), n_prune=3)
    assert torch.equal(model[0].weight != 0, expected)
    assert not torch.equal(expected, _expected_keep(weight, torch.ones(1, 10), 3)), "norms must change the choice"
    assert ((model[0].weight == 0).sum(1) == 3).all()


def test_output_error_on_calibration_inputs_is_lower_than_magnitude_per_row():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(24, 8))
    dense = model[0].weight.detach().clone()
    batches = _scaled_inputs(5, (64, 24))
    _wanda(model, batches, target=0.5)
    x = torch.cat(batches)
    magnitude = dense * _expected_keep(dense, torch.ones(1, 24), n_prune=12)  # equal norms: |W| alone
    wanda_error = (x @ (dense - model[0].weight.detach()).T).pow(2).sum()
    assert wanda_error < 0.5 * (x @ (dense - magnitude).T).pow(2).sum()


def test_later_layers_are_scored_on_outputs_of_the_pruned_earlier_layers():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(12, 12), nn.ReLU(), nn.Linear(12, 8))
    batches = _scaled_inputs(2, (16, 12))
    second = model[2].weight.detach().clone()
    _wanda(model, batches, target=0.5)
    with torch.no_grad():
        pruned_hidden = model[1](model[0](torch.cat(batches)))
    assert torch.equal(model[2].weight != 0, _expected_keep(second, pruned_hidden, n_prune=6))


def test_two_of_four_keeps_at_most_two_per_group():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 8), nn.GELU(), nn.Linear(8, 4))
    the_pass = _wanda(model, _scaled_inputs(3, (32, 16)), nm="2:4")
    for module in (model[0], model[2]):
        groups = (module.weight != 0).reshape(-1, 4).sum(1)
        assert (groups == 2).all()  # the pattern exactly: at most 2, and no more pruned than it asks
    assert the_pass.describe()["layers"]["0"]["sparsity"] == 0.5


def test_no_calibration_hook_remains_after_prepare_even_when_a_forward_fails():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 4))
    _wanda(model, _scaled_inputs(4, (8, 8)), target=0.5)
    assert not any(m._forward_hooks for m in model.modules())
    with pytest.raises(RuntimeError):
        gather(model, {"0": model[0]}, [torch.randn(2, 5)], InputNorm)  # wrong width: the forward raises
    assert not any(m._forward_hooks for m in model.modules())


def test_layers_that_cannot_be_pruned_are_reported_and_left_dense():
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.Flatten(), nn.Linear(4 * 36, 3))
    the_pass = _wanda(model, [torch.rand(4, 1, 6, 6)], nm="2:4")  # the conv reads 9 columns: not groups of 4
    assert list(the_pass.modules) == ["2"] and "0: 9 input columns" in the_pass.describe()["notes"][0]
    assert (model[0].weight != 0).all()


@pytest.mark.parametrize(
    "fields", [{"target": 0.5, "nm": "2:4"}, {}, {"nm": "4:2"}, {"nm": "two of four"}, {"target": 1.0}]
)
def test_spec_needs_exactly_one_valid_pattern(fields):
    with pytest.raises(ValidationError):
        TypeAdapter(PassEntry).validate_python({"kind": "wanda", **fields})


def test_config_runs_end_to_end(cli, tmp_path):
    code, _, err = cli("prune", CONFIGS / "wanda.yaml", *overrides(*FAST, f"output={tmp_path / 'run'}"), "--json")
    assert code == 0, err

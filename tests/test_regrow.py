"""Regrow (dynamic sparse training): exact sparsity after every update, a moving mask, accuracy recovers."""

from __future__ import annotations

import pytest
import torch

from sparsecli.passes import PassContext, masking
from sparsecli.passes.regrow import RegrowPass, RegrowSpec
from sparsecli.passes.selection import drop_and_grow
from sparsecli.train import TrainConfig, fit
from tests.digits_training import accuracy, baseline, digits, train


def test_drop_and_grow_keeps_the_count_and_never_regrows_what_it_dropped():
    keep = torch.tensor([True, True, True, False, False, False])
    magnitude = torch.tensor([0.1, 5.0, 0.2, 0.0, 0.0, 0.0])
    gradient = torch.tensor([9.0, 9.0, 9.0, 3.0, 2.0, 1.0])  # the dropped ones score highest
    new = drop_and_grow(keep, magnitude, gradient, 2)
    assert new.tolist() == [False, True, False, True, True, False]


@pytest.mark.parametrize("grow", ["gradient", "random"])
def test_exact_sparsity_after_every_update_while_the_mask_moves(grow):
    model = baseline()
    data = digits()
    loader = data.loader("train", 64, seed=0)
    the_pass = RegrowPass(RegrowSpec(target=0.9, every=3, fraction=0.3, grow=grow, exclude=["classifier"]))
    the_pass.prepare(model, PassContext(data.val.tensors[0][:1], len(loader), 1.0))
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    first = {n: masking.find(m).mask.clone() for n, m in the_pass.modules.items()}
    for step, (x, y) in enumerate(loader, start=1):
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
        the_pass.on_step(model, step)
        optimizer.zero_grad()
        for name, module in the_pass.modules.items():
            mask = masking.find(module).mask
            assert int((~mask).sum()) == round(0.9 * mask.numel()), (step, name)
            assert (module.weight[~mask] == 0).all()
    assert the_pass.updates >= 3
    overlap = the_pass.mask_overlap()
    assert overlap < 1.0
    now = {n: masking.find(m).mask for n, m in the_pass.modules.items()}
    assert any((now[n] != first[n]).any() for n in now)
    the_pass.finish(model)
    assert the_pass.describe()["mask_overlap_with_initial"] == overlap


def test_accuracy_recovers_after_pruning_a_trained_model():
    model = baseline()
    dense = accuracy(model)
    loader = digits().loader("train", 64, seed=0)
    the_pass = RegrowPass(RegrowSpec(target=0.9, every=10, exclude=["classifier"]))
    the_pass.prepare(model, PassContext(digits().val.tensors[0][:1], len(loader), 2.0))
    pruned = accuracy(model)  # right after the first, one-shot mask
    fit(model, loader, TrainConfig(epochs=2, lr=3e-3), [the_pass], seed=0)
    recovered = accuracy(the_pass.finish(model))
    assert pruned < dense - 0.3 and recovered > pruned + 0.3, (dense, pruned, recovered)


def test_finish_removes_the_gradient_hooks():
    model = train(baseline(), [RegrowPass(RegrowSpec(target=0.5, every=5, exclude=["classifier"]))], epochs=1)
    assert not masking.has_parametrizations(model)
    assert not any(m._forward_hooks for m in model.modules())

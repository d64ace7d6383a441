"""N:M pass: every group of M along the input has at most N non-zeros, one-shot and gradual; compliance reported."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError

from sparsecli.passes import PassContext
from sparsecli.passes.nm import NMPass, NMSpec
from tests.digits_training import new_convnet


def _groups(weight: torch.Tensor, m: int) -> torch.Tensor:
    """Independent of the pass: (out, in, kh, kw) -> rows of m consecutive input channels."""
    w = weight.detach()
    if w.dim() == 4:
        w = w.permute(0, 2, 3, 1)
    return w.reshape(-1, m)


@pytest.mark.parametrize(("n", "m"), [(2, 4), (1, 4), (2, 8)])
def test_one_shot_every_group_has_at_most_n_nonzeros(n, m):
    model = new_convnet()
    the_pass = NMPass(NMSpec(n=n, m=m))
    the_pass.prepare(model, PassContext(torch.rand(1, 1, 8, 8)))
    model = the_pass.finish(model)
    assert the_pass.skipped == ["features.0.0"]  # one input channel: cannot be N:M
    for name, module in the_pass.modules.items():
        groups = _groups(module.weight, m)
        assert ((groups != 0).sum(1) <= n).all(), name
        assert (groups == 0).float().mean() == pytest.approx(1 - n / m)
    assert set(the_pass.describe()["nm_compliance"].values()) == {1.0}
    assert the_pass.describe()["notes"]


def test_gradual_rises_to_exact_nm_and_pruned_weights_stay_pruned():
    model = new_convnet()
    the_pass = NMPass(NMSpec(schedule={"curve": "linear", "end_epoch": 2, "every_steps": 1}))
    the_pass.prepare(model, PassContext(torch.rand(1, 1, 8, 8), steps_per_epoch=4, total_epochs=2))
    layer = the_pass.modules["features.1.0"]  # .weight is recomputed from the mask on every read
    seen, previous = [], layer.weight == 0
    for step in range(1, 9):
        the_pass.on_step(model, step)
        zeros = layer.weight == 0
        assert (zeros | ~previous).all()  # monotone
        seen.append(float(zeros.float().mean()))
        previous = zeros
    assert seen == sorted(seen) and seen[0] < 0.5 and seen[-1] == pytest.approx(0.5)
    model = the_pass.finish(model)
    assert ((_groups(model.features[1][0].weight, 4) != 0).sum(1) <= 2).all()


def test_n_must_be_below_m():
    with pytest.raises(ValidationError, match="n must be < m"):
        NMSpec(n=4, m=4)

"""Group lasso drives whole output channels towards zero (same seed, against no penalty); finish zeroes them."""

from __future__ import annotations

from sparsecli.passes.group_lasso import GroupLassoPass, GroupLassoSpec, channel_norms
from tests.digits_training import baseline, conv_weights, new_convnet, train


def test_group_lasso_empties_whole_channels():
    plain = [channel_norms(w) for w in conv_weights(baseline())[1:]]
    floor = 0.5 * min(float(n.min()) for n in plain)  # below every channel of the plain run
    the_pass = GroupLassoPass(GroupLassoSpec(strength=0.05, threshold=floor, exclude=["classifier"]))
    before_finish = {}

    class Spy(GroupLassoPass):  # norms just before finish cuts, to see what the penalty alone did
        def _finish(self, model):
            before_finish.update({n: channel_norms(m.weight.detach()) for n, m in self.modules.items()})
            return super()._finish(model)

    the_pass = Spy(the_pass.spec)
    model = train(new_convnet(), [the_pass], epochs=2)
    low = sum(int((n < floor).sum()) for name, n in before_finish.items() if name != "features.0.0")
    total = sum(len(n) for n in plain)
    assert low >= 0.1 * total, (low, total, floor)
    zero_rows = sum(int((channel_norms(w) == 0).sum()) for w in conv_weights(model)[1:])
    assert zero_rows == low
    layers = the_pass.describe()["layers"]
    assert sum(v["after"]["zero_channels"] for v in layers.values()) >= zero_rows

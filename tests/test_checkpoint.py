"""Checkpoints rebuild a structurally pruned model from a fresh one: same outputs, same ONNX, weights-only."""

from __future__ import annotations

import pytest
import torch

from sparsecli import checkpoint
from sparsecli.errors import BadInput
from sparsecli.export import check_parity, export_onnx
from sparsecli.models.source import load_checkpoint
from sparsecli.models.zoo import resnet
from sparsecli.passes import PassContext, build
from sparsecli.passes.channels import ChannelsSpec
from tests.fixtures import conv_models


def _fresh(builder=None):
    torch.manual_seed(1)  # other initial weights than the pruned model's, so only loading can match it
    return builder() if builder else resnet((1, 8, 8), 10, width=16)


def _pruned(builder=None):
    torch.manual_seed(0)
    model = builder() if builder else resnet((1, 8, 8), 10, width=16)
    the_pass = build(ChannelsSpec(ratio=0.5, round_to=4))
    the_pass.prepare(model, PassContext(torch.rand(1, 1, 8, 8)))
    return the_pass.finish(model).eval()


@pytest.mark.parametrize("builder", [None, conv_models.mobilenet_v2, conv_models.densenet])
def test_pruned_model_reloads_into_a_fresh_one_and_exports(builder, tmp_path):
    pruned = _pruned(builder)
    checkpoint.save(tmp_path / "c.pt", pruned, stage="finished")
    torch.load(tmp_path / "c.pt", weights_only=True)  # the file needs no pickled classes
    model = _fresh(builder)
    data = checkpoint.load(tmp_path / "c.pt", model)
    assert data["stage"] == "finished"
    x = torch.rand(6, 1, 8, 8)
    assert torch.equal(model.eval()(x), pruned(x))
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in pruned.parameters())
    path = export_onnx(model, x[:1], tmp_path / "m.onnx", opset=17, dynamic_batch=True)
    assert check_parity(path, model, x, atol=1e-4) <= 1e-4


def test_depthwise_groups_come_back_with_the_architecture(tmp_path):
    pruned = _pruned(conv_models.mobilenet_v2)
    checkpoint.save(tmp_path / "c.pt", pruned)
    model = _fresh(conv_models.mobilenet_v2)
    checkpoint.load(tmp_path / "c.pt", model)
    depthwise = model.body[3].block[3]
    assert depthwise.groups == depthwise.in_channels == depthwise.out_channels == pruned.body[3].block[3].groups


def test_a_recipe_checkpoint_of_a_pruned_model_loads(tmp_path):
    pruned = _pruned()
    checkpoint.save(tmp_path / "c.pt", pruned)
    model = _fresh()
    load_checkpoint(model, tmp_path / "c.pt")
    assert model.features[1].conv1.out_channels == 8


def test_plain_state_dict_still_loads(tmp_path):
    torch.save(_fresh().state_dict(), tmp_path / "w.pt")
    model = resnet((1, 8, 8), 10, width=16)
    checkpoint.load(tmp_path / "w.pt", model)
    assert torch.equal(model.classifier.weight, _fresh().classifier.weight)


def test_a_checkpoint_of_another_model_is_bad_input(tmp_path):
    checkpoint.save(tmp_path / "c.pt", _pruned())
    with pytest.raises(BadInput, match="model.checkpoint: .*lacks"):
        load_checkpoint(conv_models.mobilenet_v2(), tmp_path / "c.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(BadInput, match="cannot read"):
        checkpoint.load(tmp_path / "junk.pt", _fresh())

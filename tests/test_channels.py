"""The channels pass: layers physically shrink, ratios and exclusions hold, ONNX matches, failures are named."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from sparsecli.errors import BadInput
from sparsecli.export import check_parity, export_onnx
from sparsecli.models.zoo import resnet
from sparsecli.passes import PassContext, build
from sparsecli.passes.channels import ChannelsSpec
from sparsecli.passes.dependency import ChannelGraph
from sparsecli.train import TrainConfig, fit
from tests.fixtures import conv_models


def _run(model: nn.Module, steps_per_epoch: int = 1, total_epochs: float = 1.0, **fields):
    """Prepare and finish a channels pass on `model`; returns (model, pass)."""
    torch.manual_seed(0)
    x, y = torch.rand(16, 1, 8, 8), torch.randint(0, 10, (16,))
    the_pass = build(ChannelsSpec(**fields))
    the_pass.prepare(model, PassContext(x[:1], steps_per_epoch, total_epochs, [(x, y)]))
    return the_pass.finish(model).eval(), the_pass


def _convs(model: nn.Module) -> dict[str, nn.Conv2d]:
    return {fqn: m for fqn, m in model.named_modules() if isinstance(m, nn.Conv2d)}


def _resnet(width: int = 16) -> nn.Module:
    torch.manual_seed(0)
    return resnet((1, 8, 8), 10, width=width)


def _assert_consistent(model: nn.Module) -> None:
    """Every layer's attributes agree with its tensors, and each BatchNorm with the conv before it."""
    for fqn, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            assert m.weight.shape[:2] == (m.out_channels, m.in_channels // m.groups), fqn
        if isinstance(m, nn.BatchNorm2d):
            assert m.weight.shape[0] == m.running_mean.shape[0] == m.num_features, fqn
        if isinstance(m, nn.Linear):
            assert tuple(m.weight.shape) == (m.out_features, m.in_features), fqn


def test_layers_are_physically_halved_and_the_classifier_kept():
    dense = _resnet()
    model, the_pass = _run(copy.deepcopy(dense), ratio=0.5)
    for fqn, conv in _convs(model).items():
        assert conv.out_channels == _convs(dense)[fqn].out_channels // 2, fqn
    _assert_consistent(model)
    assert model.classifier.out_features == 10 and model.classifier.in_features == 32
    assert model(torch.rand(3, 1, 8, 8)).shape == (3, 10)
    assert sum(p.numel() for p in model.parameters()) < 0.3 * sum(p.numel() for p in dense.parameters())
    assert "feeds the model output" in the_pass.describe()["skipped"]["classifier"]


@pytest.mark.parametrize(("ratio", "round_to"), [(0.3, 8), (0.5, 8), (0.7, 4), (0.3, 1)])
def test_ratio_is_respected_within_rounding(ratio, round_to):
    dense = _resnet(width=24)
    model, _ = _run(copy.deepcopy(dense), ratio=ratio, round_to=round_to)
    for fqn, conv in _convs(model).items():
        before = _convs(dense)[fqn].out_channels
        assert conv.out_channels % round_to == 0, fqn
        assert abs(conv.out_channels - (1 - ratio) * before) <= round_to / 2 + 0.5, (fqn, conv.out_channels)


def test_global_scope_ranks_across_layers_under_the_cap():
    dense = _resnet()
    with torch.no_grad():  # most of one layer's filters are nearly useless: global ranking takes them first
        dense.features[1].conv1.weight[2:] *= 1e-3
    model, _ = _run(copy.deepcopy(dense), ratio=0.3, scope="global", max_layer_ratio=0.75)
    before = {fqn: c.out_channels for fqn, c in _convs(dense).items()}
    after = {fqn: c.out_channels for fqn, c in _convs(model).items()}
    assert after["features.1.conv1"] == 4  # capped at 75 %, though 14 of its 16 filters scored lowest
    assert all(after[f] >= before[f] * 0.25 for f in before)
    assert len({after[f] / before[f] for f in before}) > 1  # not uniform
    _assert_consistent(model)


def test_excluded_layers_and_the_channels_tied_to_them_stay():
    dense = _resnet()
    model, the_pass = _run(copy.deepcopy(dense), ratio=0.5, exclude=["features.1.conv2"])
    convs = _convs(model)
    # conv2's output is added to the stem's (residual): both keep their channels, as does the next input
    assert convs["features.1.conv2"].out_channels == 16
    assert convs["features.0.0"].out_channels == 16
    assert convs["features.2.conv1"].in_channels == 16
    assert convs["features.1.conv1"].out_channels == 8  # untied layers still shrink
    skipped = the_pass.describe()["skipped"]
    assert "features.1.conv2" in skipped["features.0.0"] and "include/exclude" in skipped["features.0.0"]


UNSEEN = [conv_models.projection_resnet, conv_models.mobilenet_v2, conv_models.densenet, conv_models.grouped_convnet]


@pytest.mark.parametrize("builder", UNSEEN)
def test_unseen_models_shrink_and_onnx_matches(builder, tmp_path):
    torch.manual_seed(0)
    dense = builder().eval()
    model, the_pass = _run(copy.deepcopy(dense), ratio=0.5)
    x = torch.rand(8, 1, 8, 8)
    _assert_consistent(model)
    assert sum(p.numel() for p in model.parameters()) < 0.5 * sum(p.numel() for p in dense.parameters())
    for fqn, conv in _convs(model).items():
        if conv.groups > 1:  # depthwise stays depthwise; grouped convs lose channels evenly per group
            assert conv.in_channels % conv.groups == 0 and conv.out_channels % conv.groups == 0, fqn
    assert list(the_pass.describe()["skipped"]) == ["head"]
    path = export_onnx(model, x[:1], tmp_path / "m.onnx", opset=17, dynamic_batch=True)
    dense_path = export_onnx(dense, x[:1], tmp_path / "d.onnx", opset=17, dynamic_batch=True)
    assert check_parity(path, model, x, atol=1e-4) <= 1e-4
    assert path.stat().st_size < 0.5 * dense_path.stat().st_size


def test_unprunable_layer_is_skipped_with_its_name_and_reason():
    model, the_pass = _run(conv_models.fixed_view(), ratio=0.5)
    assert model.conv2.out_channels == 8 and model.conv1.out_channels == 4
    reason = the_pass.describe()["skipped"]["conv2"]
    assert "breaks the forward pass" in reason
    assert any(note.startswith("conv2: ") for note in the_pass.describe()["notes"])
    assert model(torch.rand(2, 1, 8, 8)).shape == (2, 10)


def test_strict_stops_at_the_unprunable_layer():
    with pytest.raises(BadInput, match=r"strict: cannot prune conv2: removing its channels breaks the forward pass"):
        _run(conv_models.fixed_view(), ratio=0.5, strict=True)


def test_a_failed_removal_leaves_the_model_exactly_as_it_was():
    torch.manual_seed(0)
    model = conv_models.fixed_view().eval()
    x = torch.rand(4, 1, 8, 8)
    expected = model(x)
    graph = ChannelGraph(model, x[:1], {"conv1", "conv2", "head"})
    assert graph.remove("conv2", [0, 1]) is not None
    assert torch.equal(model(x), expected)
    assert model.conv2.weight.shape == (8, 8, 3, 3) and model.head.in_features == 512


def test_importance_without_anything_to_score_is_a_named_skip():
    _, the_pass = _run(conv_models.fixed_view(), ratio=0.5, importance="bn_scale")
    assert "finds nothing to score" in the_pass.describe()["skipped"]["conv1"]


def test_steps_spread_pruning_and_fit_trains_the_new_parameters():
    torch.manual_seed(0)
    model = _resnet(width=8)
    x, y = torch.rand(32, 1, 8, 8), torch.randint(0, 10, (32,))
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=16)
    the_pass = build(ChannelsSpec(ratio=0.5, steps=2, importance="taylor"))
    the_pass.prepare(model, PassContext(x[:1], len(loader), 2.0, [(x, y)]))
    assert model.features[1].conv1.out_channels == 6  # a quarter gone at prepare, the rest after epoch 1
    optimizer = fit(model, loader, TrainConfig(epochs=2, lr=0.01), [the_pass])
    assert model.features[1].conv1.out_channels == 4
    trained = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert trained == {id(p) for p in model.parameters()}


def test_ratio_zero_changes_nothing():
    dense = _resnet()
    model, _ = _run(copy.deepcopy(dense), ratio=0.0)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in dense.state_dict().items())


def test_global_cap_below_ratio_is_rejected():
    with pytest.raises(ValueError, match="max_layer_ratio"):
        ChannelsSpec(ratio=0.6, scope="global", max_layer_ratio=0.5)

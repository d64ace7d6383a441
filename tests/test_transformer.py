"""The zoo transformer: any input shape, ONNX export with parity, MACs that include attention."""

from __future__ import annotations

import pytest
import torch

from sparsecli.errors import BadInput
from sparsecli.export import check_parity, export_onnx
from sparsecli.measure import count_macs
from sparsecli.models.source import build_model
from sparsecli.models.zoo import ZOO


@pytest.mark.parametrize("shape", [(1, 8, 8), (3, 4, 6), (16,), (5, 12)])
def test_any_input_shape(shape):
    torch.manual_seed(0)
    model = ZOO["transformer"](shape, 7, dim=16, depth=1, heads=2, ffn=32).eval()
    out = model(torch.rand(3, *shape))
    assert out.shape == (3, 7) and torch.isfinite(out).all()
    assert model.classifier.out_features == 7


@pytest.mark.parametrize("frozen", [False, True])
def test_exports_with_parity_and_fast_path_untouched(frozen, tmp_path):
    """Frozen weights in eval mode would send nn.TransformerEncoderLayer down its fused, unexportable path."""
    torch.manual_seed(0)
    model = ZOO["transformer"]((1, 8, 8), 10).eval().requires_grad_(not frozen)
    x = torch.rand(20, 1, 8, 8)
    path = export_onnx(model, x[:1], tmp_path / "m.onnx", 17, dynamic_batch=True)
    assert check_parity(path, model, x, atol=1e-4) < 1e-4
    assert torch.backends.mha.get_fastpath_enabled()  # restored after export


def test_macs_count_every_matmul():
    """Embedding, q/k/v/out projections, the two attention matmuls, the FFN and the classifier."""
    tokens, features, dim, ffn, depth, classes = 8, 8, 32, 48, 2, 10
    model = ZOO["transformer"]((1, 8, 8), classes, dim=dim, depth=depth, heads=4, ffn=ffn)
    per_layer = 4 * tokens * dim * dim + 2 * tokens * tokens * dim + 2 * tokens * dim * ffn
    expected = tokens * features * dim + depth * per_layer + dim * classes
    assert count_macs(model, torch.rand(1, 1, 8, 8)) == expected


def test_heads_must_divide_dim(tmp_path):
    with pytest.raises(BadInput, match="multiple of heads"):
        build_model(
            zoo="transformer", factory=None, kwargs={"dim": 30, "heads": 4}, input_shape=(1, 8, 8), num_classes=10,
            base_dir=tmp_path,
        )  # fmt: skip

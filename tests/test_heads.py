"""`kind: heads` and SlimAttention: fewer heads, the same function for the heads kept, clean export and reload."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sparsecli import checkpoint
from sparsecli.errors import BadInput
from sparsecli.export import check_parity, export_onnx
from sparsecli.models.zoo import ZOO
from sparsecli.passes import PassContext
from sparsecli.passes.attention import SlimAttention
from sparsecli.passes.heads import HeadsPass, HeadsSpec
from tests.fixtures.attention_models import encoder, unprunable

X = torch.rand(16, 1, 8, 8)


def _prune(model: nn.Module, **spec) -> HeadsPass:
    the_pass = HeadsPass(HeadsSpec(**spec))
    the_pass.prepare(model, PassContext(X[:1], calibration=[(X, torch.zeros(16, dtype=torch.long))]))
    the_pass.finish(model)
    return the_pass


class _SelfAttention(nn.Module):
    def __init__(self, attention: nn.Module):
        super().__init__()
        self.attn = attention

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.attn(x, x, x)[0]


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("importance", ["l2", "l1", "activation", "random"])
def test_halves_heads_of_zoo_transformer_and_exports(importance, tmp_path):
    torch.manual_seed(0)
    model = ZOO["transformer"]((1, 8, 8), 10, dim=32, heads=4)
    before = _params(model)
    the_pass = _prune(model, ratio=0.5, importance=importance)
    for layer in model.layers:
        attention = layer.self_attn
        assert isinstance(attention, SlimAttention) and attention.num_heads == 2
        assert attention.q_proj.out_features == attention.out_proj.in_features == 2 * attention.head_dim
        assert len(attention.kept_heads) == 2
    assert _params(model) < before
    assert torch.isfinite(model.eval()(X)).all()
    assert the_pass.describe()["heads"]["layers.0.self_attn"] == {"before": 4, "after": 2}
    path = export_onnx(model, X[:1], tmp_path / "m.onnx", 17, dynamic_batch=True)
    assert check_parity(path, model, X, atol=1e-4) <= 1e-4


@pytest.mark.parametrize("batch_first", [True, False])
def test_slim_attention_is_nn_multihead_attention(batch_first):
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(16, 4, batch_first=batch_first, kdim=12, vdim=10).eval()
    slim = SlimAttention.from_mha(mha).eval()
    shape = (lambda n, tokens: (n, tokens)) if batch_first else (lambda n, tokens: (tokens, n))
    q, k, v = torch.rand(*shape(3, 5), 16), torch.rand(*shape(3, 7), 12), torch.rand(*shape(3, 7), 10)
    padding = torch.zeros(3, 7, dtype=torch.bool)
    padding[0, 5:] = True
    cases = [
        {},
        {"key_padding_mask": padding},
        {"attn_mask": torch.rand(5, 7) > 0.7, "key_padding_mask": padding},
        {"attn_mask": torch.randn(3 * 4, 5, 7)},  # a float mask per batch entry and head
        {"average_attn_weights": False},
    ]
    for kwargs in cases:
        expected, expected_weights = mha(q, k, v, **kwargs)
        got, weights = slim(q, k, v, **kwargs)
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(weights, expected_weights, atol=1e-5, rtol=1e-4)
    single = [t[0] if batch_first else t[:, 0] for t in (q, k, v)]  # unbatched: (tokens, features)
    torch.testing.assert_close(slim(*single)[0], mha(*single)[0], atol=1e-5, rtol=1e-4)


def test_removing_heads_equals_silencing_them():
    """A pruned layer computes exactly what the full layer computes with those heads' output columns at zero."""
    torch.manual_seed(0)
    full = SlimAttention(16, 4, 4, batch_first=True).eval()
    silenced = SlimAttention.from_architecture(checkpoint.architecture(full)[""]).eval()
    silenced.load_state_dict(full.state_dict())
    the_pass = HeadsPass(HeadsSpec(ratio=0.5))
    the_pass.prepare(_SelfAttention(full), PassContext(torch.rand(1, 5, 16)))
    kept = full.kept_heads
    assert len(kept) == 2 and full.q_proj.out_features == 8
    with torch.no_grad():
        for head in set(range(4)) - set(kept):
            silenced.out_proj.weight[:, head * 4 : (head + 1) * 4] = 0
    x = torch.rand(2, 5, 16)
    mask = torch.randn(2 * 4, 5, 5)  # per original head: the pruned layer must pick its heads' rows
    torch.testing.assert_close(full(x, x, x, attn_mask=mask)[0], silenced(x, x, x, attn_mask=mask)[0])


def test_activation_importance_removes_the_silent_head():
    torch.manual_seed(0)
    attention = SlimAttention(16, 4, 4, batch_first=True)
    with torch.no_grad():
        attention.out_proj.weight[:, 8:12] = 0  # head 2 adds nothing to the output
    the_pass = HeadsPass(HeadsSpec(ratio=0.25, importance="activation"))
    x = torch.rand(4, 5, 16)
    the_pass.prepare(_SelfAttention(attention), PassContext(x[:1], calibration=[(x, None)]))
    assert attention.kept_heads == (0, 1, 3)


def test_include_exclude_and_checkpoint_reload(tmp_path):
    """Excluded layers keep their nn.MultiheadAttention; the pruned model reloads into a fresh one."""
    torch.manual_seed(0)
    model = encoder()
    _prune(model, ratio=0.5, exclude=["encoder.layers.1.*"])
    assert model.encoder.layers[0].self_attn.num_heads == 2
    assert isinstance(model.encoder.layers[1].self_attn, nn.MultiheadAttention)
    assert model.encoder.layers[1].self_attn.num_heads == 4
    checkpoint.save(tmp_path / "c.pt", model)
    torch.manual_seed(1)
    fresh = encoder()
    checkpoint.load(tmp_path / "c.pt", fresh)
    assert isinstance(fresh.encoder.layers[0].self_attn, SlimAttention)
    torch.testing.assert_close(fresh.eval()(X), model.eval()(X))
    with pytest.raises(BadInput, match="matches no module"):
        _prune(encoder(), ratio=0.5, include=["*self_atn"])


@pytest.mark.parametrize("batch_first", [True, False])
def test_factory_encoder_exports_smaller(batch_first, tmp_path):
    torch.manual_seed(0)
    model = encoder(batch_first=batch_first).eval()
    dense = export_onnx(model, X[:1], tmp_path / "dense.onnx", 17, dynamic_batch=True)
    _prune(model, ratio=0.5)
    path = export_onnx(model, X[:1], tmp_path / "m.onnx", 17, dynamic_batch=True)
    assert path.stat().st_size < dense.stat().st_size
    assert check_parity(path, model, X, atol=1e-4) <= 1e-4


def test_what_cannot_be_pruned_is_named(tmp_path):
    torch.manual_seed(0)
    model = unprunable()
    the_pass = _prune(model, ratio=0.5)
    report = the_pass.describe()
    assert "add_zero_attn" in report["skipped"]["odd"]
    assert any(note.startswith("odd: ") for note in report["notes"])
    assert isinstance(model.odd, nn.MultiheadAttention)
    assert model.mixer.num_heads == 2 and model.block.self_attn.num_heads == 1
    path = export_onnx(model, X[:1], tmp_path / "m.onnx", 17, dynamic_batch=True)
    assert check_parity(path, model, X, atol=1e-4) <= 1e-4
    with pytest.raises(BadInput, match="strict: cannot prune odd: uses bias_k/bias_v or add_zero_attn"):
        _prune(unprunable(), ratio=0.5, strict=True)


def test_a_model_without_attention_is_told_so():
    with pytest.raises(BadInput, match="finds no heads in this model; looked for nn.MultiheadAttention"):
        _prune(ZOO["mlp"]((1, 8, 8), 10), ratio=0.5)

"""One-shot pruning of a small causal LM trained briefly in a fixture on Python's own source text:
Wanda and SparseGPT at 50% keep held-out perplexity closer to dense than magnitude, and the pruned
model exports to ONNX with parity (bench/one_shot.py is the full-size comparison)."""

from __future__ import annotations

import copy

import pytest
import torch
from pydantic import TypeAdapter

from sparsecli.data.stdlib_text import stdlib_bytes
from sparsecli.export import check_parity, export_onnx
from sparsecli.models.gpt import gpt, perplexity, pretrain, windows
from sparsecli.passes import PassContext, build
from sparsecli.recipe import PassEntry

CONTEXT = 64


@pytest.fixture(scope="module")
def trained():
    """(dense model, held-out tokens, calibration batches), seeded; a few seconds of training."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        train, val = stdlib_bytes(("textwrap", "heapq", "calendar"))
        model = pretrain(gpt((CONTEXT,), 256, dim=64, depth=2, heads=4), train, steps=300, batch_size=16, lr=1e-2)
        inputs, targets = windows(train, CONTEXT, 32, torch.Generator().manual_seed(1))
        yield model, val[:6000], list(zip(inputs.split(16), targets.split(16), strict=True))
    finally:
        torch.set_num_threads(threads)


def _pruned(trained, entry: dict):
    dense, _, calibration = trained
    model = copy.deepcopy(dense)
    the_pass = build(TypeAdapter(PassEntry).validate_python({**entry, "exclude": ["lm_head"]}))
    the_pass.prepare(model, PassContext(calibration[0][0][:1], calibration=calibration))
    return the_pass.finish(model).eval()


def test_wanda_and_sparsegpt_stay_closer_to_dense_than_magnitude(trained):
    dense, val, _ = trained
    ppl = {"dense": perplexity(dense, val, CONTEXT)}
    for kind in ("magnitude", "wanda", "sparsegpt"):
        entry = {"kind": kind, "target": 0.5} | ({"scope": "per_layer"} if kind == "magnitude" else {})
        ppl[kind] = perplexity(_pruned(trained, entry), val, CONTEXT)
    assert ppl["dense"] < ppl["sparsegpt"] < ppl["magnitude"], ppl
    assert ppl["dense"] < ppl["wanda"] < ppl["magnitude"], ppl


@pytest.mark.parametrize("entry", [{"kind": "wanda", "nm": "2:4"}, {"kind": "sparsegpt", "nm": "2:4"}])
def test_pruned_lm_exports_to_onnx_with_parity(trained, entry, tmp_path):
    model = _pruned(trained, entry)
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and name != "lm_head":
            assert ((module.weight != 0).reshape(-1, 4).sum(1) <= 2).all(), name
    ids = trained[1][: 4 * CONTEXT].view(4, CONTEXT)
    path = export_onnx(model, ids[:1], tmp_path / "lm.onnx", opset=17, dynamic_batch=True)
    assert check_parity(path, model, ids, atol=1e-4) <= 1e-4

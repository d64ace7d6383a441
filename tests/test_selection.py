from __future__ import annotations

import pytest
import torch

from sparsecli.errors import BadInput
from sparsecli.models.zoo import convnet
from sparsecli.passes.selection import global_topk, per_layer_topk, select_modules


def test_include_exclude_globs():
    model = convnet((1, 8, 8), 10)
    chosen = select_modules(model, include=[], exclude=["*classifier*"])
    assert "classifier" not in chosen and len(chosen) == 3
    assert list(select_modules(model, include=["classifier"], exclude=[])) == ["classifier"]


def test_pattern_matching_nothing_lists_nearest_names():
    with pytest.raises(BadInput, match="nearest module names: classifier"):
        select_modules(convnet((1, 8, 8), 10), include=[], exclude=["*clasifier*"])


def test_global_topk_prunes_exact_count_across_layers():
    scores = {"a": torch.tensor([1.0, 2.0, 3.0, 4.0]), "b": torch.tensor([0.5, 5.0])}
    masks = global_topk(scores, 0.5)
    assert masks["a"].tolist() == [False, False, True, True]
    assert masks["b"].tolist() == [False, True]


def test_per_layer_topk_respects_each_target():
    scores = {"a": torch.arange(10.0), "b": torch.arange(4.0)}
    masks = per_layer_topk(scores, {"a": 0.3, "b": 0.5})
    assert int((~masks["a"]).sum()) == 3 and int((~masks["b"]).sum()) == 2

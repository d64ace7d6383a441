from __future__ import annotations

import pytest
import torch

from sparsecli.errors import BadInput
from sparsecli.models.zoo import convnet
from sparsecli.passes.selection import (
    channels_to_remove,
    global_topk,
    nm_mask,
    per_layer_topk,
    per_row_topk,
    select_modules,
)


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


def test_channels_to_remove_uniform_takes_the_lowest_scores_of_each_group():
    scores = {"a": torch.tensor([5.0, 1.0, 3.0, 2.0]), "b": torch.arange(8.0)}
    removed = channels_to_remove(scores, {"a": 4, "b": 8}, 0.5)
    assert sorted(removed["a"].tolist()) == [1, 3]
    assert sorted(removed["b"].tolist()) == [0, 1, 2, 3]


def test_channels_to_remove_counts_from_initial_channels_and_rounds():
    # 24 initial channels, 20 left after an earlier step: ratio 0.5 keeps 12, rounded to 8 -> 16 (nearest)
    removed = channels_to_remove({"a": torch.arange(20.0)}, {"a": 24}, 0.5, round_to=8)
    assert len(removed["a"]) == 4
    assert len(channels_to_remove({"a": torch.arange(8.0)}, {"a": 8}, 0.9, round_to=8)["a"]) == 0  # never below 8


def test_channels_to_remove_global_ranks_across_groups_with_a_cap():
    scores = {"low": torch.full((10,), 0.1), "high": torch.full((10,), 9.0)}
    removed = channels_to_remove(scores, {"low": 10, "high": 10}, 0.5, scope="global", max_layer_ratio=0.8)
    assert len(removed["low"]) == 8  # the cap: 2 of 10 stay
    assert len(removed["high"]) == 2  # the rest of the 10 to remove


def test_nm_mask_keeps_the_n_best_of_every_group_of_m():
    scores = torch.tensor([[4.0, 1.0, 3.0, 2.0, 0.1, 0.4, 0.3, 0.2]])
    assert nm_mask(scores, 2, 4).tolist() == [[True, False, True, False, False, True, True, False]]
    with pytest.raises(ValueError, match="groups of 4"):
        nm_mask(torch.ones(2, 6), 2, 4)


def test_per_row_topk_cuts_every_row_by_the_same_count():
    scores = torch.tensor([[5.0, 1.0, 3.0, 2.0], [0.1, 0.4, 0.3, 9.0]])
    assert per_row_topk(scores, 0.5).tolist() == [[True, False, True, False], [False, True, False, True]]

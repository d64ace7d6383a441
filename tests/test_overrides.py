"""`--set` overrides: dotted keys reach nested sections and list items, values parse as YAML, mistakes are named."""

from __future__ import annotations

import pytest

from sparsecli.errors import BadInput
from sparsecli.overrides import apply_override, parse_override


def test_overrides_reach_lists_and_parse_yaml_values():
    data = {"passes": [{"target": 0.5}], "data": {}}
    apply_override(data, *parse_override("passes.0.target=0.9"))
    apply_override(data, *parse_override("data.shape=[1, 8, 8]"))
    apply_override(data, *parse_override("finetune.optimizer.lr=0.001"))  # missing sections are created
    assert data == {"passes": [{"target": 0.9}], "data": {"shape": [1, 8, 8]}, "finetune": {"optimizer": {"lr": 0.001}}}
    assert parse_override("name=") == (["name"], "")


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("passes.3.target=1", "passes.3 is not an index of a list of 1"),
        ("passes.x=1", "passes.x is not an index"),
        ("seed.value=1", "seed is a value, not a section"),
    ],
)
def test_a_key_that_does_not_fit_the_recipe_is_named(item, message):
    data = {"passes": [{"target": 0.5}], "seed": 0}
    with pytest.raises(BadInput, match=message):
        apply_override(data, *parse_override(item))


@pytest.mark.parametrize(("item", "message"), [("novalue", "dotted.key=value"), ("a=[1, 2", "not valid YAML")])
def test_malformed_items(item, message):
    with pytest.raises(BadInput, match=message):
        parse_override(item)

"""Validation errors as the user reads them: the path in the file (without pydantic's union tags) and its line."""

from __future__ import annotations

import yaml

from sparsecli.recipe_problems import describe

TEXT = """\
name: r
passes:
  - kind: magnitude
    target: 1.5
"""


def test_a_pass_error_names_its_path_and_line_without_the_union_tag():
    error = {"loc": ("passes", 0, "magnitude", "target"), "type": "less_than", "msg": "must be < 1", "input": 1.5}
    assert describe(error, yaml.compose(TEXT)) == "passes[0].target: must be < 1, got 1.5 (line 4)"


def test_a_missing_key_points_at_the_deepest_section_there_is():
    error = {"loc": ("model",), "type": "missing", "msg": "Field required", "input": {}}
    assert describe(error, yaml.compose(TEXT)) == "model: required (line 1)"
    unknown = {"loc": ("passes", 0, "kind"), "type": "union_tag_invalid", "msg": "", "input": {"kind": "magic"}}
    assert describe(unknown, yaml.compose(TEXT)).startswith("passes[0].kind: unknown pass kind 'magic'; known: ")

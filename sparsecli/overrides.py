"""`--set dotted.key=value` overrides: parsed as YAML and applied to a recipe's data before validation.

`prune`, `validate`, `sweep` and `analyze --sensitivity` share them, so one spelling works everywhere.
"""

from __future__ import annotations

from typing import Any

import yaml

from sparsecli.errors import BadInput


def parse_override(item: str) -> tuple[list[str], Any]:
    """'a.b.0.c=value' -> (['a', 'b', '0', 'c'], value parsed as YAML)."""
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise BadInput(f"--set {item!r}: expected dotted.key=value")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise BadInput(f"--set {item!r}: value is not valid YAML: {exc}") from None
    return key.strip().split("."), value


def apply_override(data: dict[str, Any], keys: list[str], value: Any) -> None:
    """Set `value` at `keys` in the recipe's data; list items by index, missing sections created."""
    node: Any = data
    for depth, key in enumerate(keys):
        where = ".".join(keys[: depth + 1])
        last = depth == len(keys) - 1
        if isinstance(node, list):
            if not key.isdigit() or int(key) >= len(node):
                raise BadInput(f"--set {'.'.join(keys)}: {where} is not an index of a list of {len(node)}")
            if last:
                node[int(key)] = value
            else:
                node = node[int(key)]
        elif isinstance(node, dict):
            if last:
                node[key] = value
            else:
                node = node.setdefault(key, {})
        else:
            raise BadInput(f"--set {'.'.join(keys)}: {'.'.join(keys[:depth])} is a value, not a section")

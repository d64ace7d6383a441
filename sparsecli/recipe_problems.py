"""Validation errors as a user reads them: the path in the recipe (`passes[1].target`), the message, the line.

Pydantic reports locations as tuples in its own terms (the discriminated union adds the pass kind);
this turns each into the path and line of the YAML the user wrote.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from sparsecli.passes import REGISTRY


def describe(error: dict[str, Any], root: yaml.Node | None) -> str:
    """One pydantic error -> 'passes[0].target: must be < 1, got 1.5 (line 9)'."""
    path, keys = _format_loc(error["loc"])
    kind = error["type"]
    if kind == "extra_forbidden":
        message = "unknown key"
    elif kind == "missing":
        message = "required"
    elif kind == "union_tag_invalid":
        message = f"unknown pass kind {error['input'].get('kind')!r}; known: {', '.join(sorted(REGISTRY))}"
    elif kind == "union_tag_not_found":
        message = f"a pass needs `kind:`, one of: {', '.join(sorted(REGISTRY))}"
    else:
        message = re.sub(r"^Value error, ", "", error["msg"])
        if kind != "value_error" and not isinstance(error.get("input"), dict | list):
            message += f", got {error['input']!r}"
    line = _line_of(root, keys)
    where = f" (line {line})" if line else ""
    return f"{path or '<recipe>'}: {message}{where}"


def _format_loc(loc: tuple[Any, ...]) -> tuple[str, tuple[Any, ...]]:
    """Pydantic's location -> 'passes[0].target' and the key path into the YAML (union tags dropped)."""
    text, keys = "", []
    for i, part in enumerate(loc):
        if isinstance(part, int):
            text += f"[{part}]"
            keys.append(part)
        elif i > 0 and isinstance(loc[i - 1], int) and part in REGISTRY:
            continue  # the discriminated union inserts the pass kind; it is not in the file
        else:
            text += f".{part}" if text else str(part)
            keys.append(part)
    return text, tuple(keys)


def _child(node: yaml.Node, key: Any) -> yaml.Node | None:
    if isinstance(node, yaml.MappingNode):
        return next((v for k, v in node.value if k.value == key), None)
    if isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
        return node.value[key]
    return None


def _line_of(root: yaml.Node | None, keys: tuple[Any, ...]) -> int | None:
    """1-based line of the deepest YAML node along `keys` that exists in the file."""
    node, line = root, None
    for key in keys:
        if node is None:
            break
        line = node.start_mark.line + 1
        node = _child(node, key)
    return node.start_mark.line + 1 if node is not None else line

"""JSON Schemas of the documents the commands print with --json (and write: report.json, sweep.json)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def load(name: str) -> dict[str, Any]:
    """The schema `<name>.schema.json` shipped with the package, e.g. load("sweep")."""
    return json.loads((Path(__file__).parent / f"{name}.schema.json").read_text(encoding="utf-8"))

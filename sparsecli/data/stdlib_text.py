"""Byte-level text from the Python standard library's own source files: real English prose (docstrings,
comments) and code that ships with every Python, so language-model examples and tests need no network.
"""

from __future__ import annotations

import sysconfig
from collections.abc import Sequence
from pathlib import Path

import torch

# Well-documented modules present in every CPython 3.x as single files.
DEFAULT_MODULES = ("argparse", "difflib", "textwrap", "calendar", "fractions", "heapq", "statistics", "dataclasses")


def stdlib_bytes(
    modules: Sequence[str] = DEFAULT_MODULES, val_fraction: float = 0.1
) -> tuple[torch.Tensor, torch.Tensor]:
    """Training and held-out byte tokens (0..255): the last `val_fraction` of every file is held out."""
    root = Path(sysconfig.get_paths()["stdlib"])
    train, val = [], []
    for name in modules:
        data = (root / f"{name}.py").read_bytes()
        cut = round(len(data) * (1 - val_fraction))
        train.append(data[:cut])
        val.append(data[cut:])
    return _tokens(b"".join(train)), _tokens(b"".join(val))


def _tokens(data: bytes) -> torch.Tensor:
    return torch.frombuffer(bytearray(data), dtype=torch.uint8).long()

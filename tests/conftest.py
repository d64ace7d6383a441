"""Shared test helpers: run the CLI in-process, tiny data and models."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"

# Small settings that keep any recipe's end-to-end run to a few seconds.
FAST = [
    "model.pretrain.epochs=2",
    "finetune.epochs=1",
    "benchmark.warmup=1",
    "benchmark.iterations=3",
    "benchmark.max_wait_s=0",  # a test never waits for a slow host to recover (test_bench_timing covers waiting)
    "gates={}",
]


@pytest.fixture(autouse=True)
def _own_cache(monkeypatch, tmp_path_factory):
    """Each test gets an empty per-user cache (the benchmark canary's best times): none leaks between tests
    or from the machine running them."""
    monkeypatch.setenv("SPARSECLI_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture
def cli(monkeypatch, capsys):
    """Run `sparsecli ARGS...` in-process; returns (exit code, stdout, stderr)."""
    from sparsecli.cli import _state, main

    def run(*args: str) -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "argv", ["sparsecli", *map(str, args)])
        _state.update(debug=False, json=False, emitted=False)
        try:
            main()
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        out, err = capsys.readouterr()
        return code, out, err

    return run


def overrides(*items: str) -> list[str]:
    """`--set` arguments for the CLI."""
    return [arg for item in items for arg in ("--set", item)]


@pytest.fixture
def digits_batch() -> torch.Tensor:
    torch.manual_seed(0)
    return torch.rand(8, 1, 8, 8)

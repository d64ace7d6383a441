"""Where human-readable output goes: stdout normally, stderr when stdout carries JSON; nothing when quiet."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


class UI:
    """Stage messages and progress bars for people; machines read the JSON on stdout instead."""

    def __init__(self, *, json_mode: bool = False, quiet: bool = False):
        self.quiet = quiet
        self.out = Console(stderr=json_mode, quiet=quiet, highlight=False)
        self.err = Console(stderr=True, quiet=quiet, highlight=False)

    def stage(self, message: str) -> None:
        self.err.print(f"[bold cyan]>[/] {message}")

    def note(self, message: str) -> None:
        self.err.print(f"  {message}")

    def print(self, renderable: Any) -> None:
        self.out.print(renderable)

    @contextlib.contextmanager
    def task(self, description: str, total: int) -> Iterator[Progress | None]:
        """A progress bar on stderr; yields (progress, task id) users advance, or None when quiet."""
        if self.quiet:
            yield None
            return
        columns = (
            TextColumn("  {task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[status]}"),
        )
        with Progress(*columns, console=self.err, transient=False) as progress:
            progress.add_task(description, total=total, status="")
            yield progress


def advance(progress: Progress | None, status: str = "") -> None:
    if progress is not None:
        progress.update(progress.task_ids[0], advance=1, status=status)

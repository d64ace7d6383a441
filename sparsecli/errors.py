"""One error family; each error carries the exit code the CLI returns for it."""

from __future__ import annotations


class SparsecliError(Exception):
    """Base error: the message is shown to the user as is, the code becomes the exit status."""

    exit_code = 3

    def __init__(self, message: str, *, problems: list[str] | None = None):
        super().__init__(message)
        self.problems = problems or []

    def render(self) -> str:
        lines = [str(self)] + [f"  - {problem}" for problem in self.problems]
        return "\n".join(lines)


class GateFailed(SparsecliError):
    """A quality gate in the recipe was not met (exit 1)."""

    exit_code = 1


class BadInput(SparsecliError):
    """The recipe, an argument or an input file is wrong (exit 2)."""

    exit_code = 2


class RunFailed(SparsecliError):
    """The job started but could not finish (exit 3); the message says where partial results are."""

    exit_code = 3

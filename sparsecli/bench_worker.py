"""The benchmark's timing process: `bench.run` starts `python -m sparsecli.bench_worker` and talks JSON lines.

Why a process of its own: the timed sessions share one onnxruntime thread pool (bench_session.share_threads),
which must be configured before the process's first session, and once it is, sessions with their own pools
can no longer be created there. The caller (prune, tests, a user's script) keeps its own runtime untouched,
and every benchmark starts from the same clean state: no other sessions, arenas or spinning threads.

Protocol: the request (paths, batches, inputs, settings) is one JSON object on stdin; the worker writes
{"progress": [what, done, total]} lines, then {"result": document} or {"error": message} (bad input, exit 2).
Anything onnxruntime prints goes to stderr, which the caller shows only when the worker fails.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import IO, Any

from sparsecli.bench_inputs import InputSpec
from sparsecli.bench_session import Settings
from sparsecli.errors import BadInput

PACKAGE_ROOT = Path(__file__).resolve().parents[1]


def _request(paths: Sequence[Path], batches: Sequence[int | None], spec: InputSpec, s: Settings) -> str:
    return json.dumps(
        {
            "paths": [str(p) for p in paths],  # as given: the worker shares our working directory
            "batches": list(batches),
            "spec": {
                "shapes": {k: list(v) for k, v in spec.shapes.items()},
                "seq_len": spec.seq_len,
                "npz": str(spec.npz) if spec.npz else None,
                "seed": spec.seed,
            },
            "settings": asdict(s),
        }
    )


def _decode(request: dict) -> tuple[list[Path], list[int | None], InputSpec, Settings]:
    raw = request["spec"]
    spec = InputSpec(
        shapes={k: tuple(v) for k, v in raw["shapes"].items()},
        seq_len=raw["seq_len"],
        npz=Path(raw["npz"]) if raw["npz"] else None,
        seed=raw["seed"],
    )
    return [Path(p) for p in request["paths"]], request["batches"], spec, Settings(**request["settings"])


def call(
    paths: Sequence[Path],
    batches: Sequence[int | None],
    spec: InputSpec,
    s: Settings,
    progress: Callable[[str, int, int], None] | None = None,
) -> dict:
    """Run the benchmark in a worker process; its document, or BadInput with the worker's message."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(PACKAGE_ROOT), os.environ.get("PYTHONPATH")]))}
    with tempfile.TemporaryFile("w+", encoding="utf-8") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "sparsecli.bench_worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            env=env,
        )
        try:
            result, error = _converse(proc, _request(paths, batches, spec, s), progress)
            code = proc.wait()
        finally:
            if proc.poll() is None:  # interrupted: the worker goes with us
                proc.kill()
                proc.wait()
        stderr.seek(0)
        detail = stderr.read().strip()
    if error is not None:
        raise BadInput(error)
    if result is None or code != 0:
        raise RuntimeError(f"the benchmark process failed (exit {code}):\n{detail[-4000:]}")
    return result


def _converse(proc: subprocess.Popen, request: str, progress: Callable | None) -> tuple[dict | None, str | None]:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(request)
    proc.stdin.close()
    result = error = None
    for line in proc.stdout:
        message = json.loads(line)
        if "progress" in message and progress:
            progress(*message["progress"])
        result = message.get("result", result)
        error = message.get("error", error)
    return result, error


def _send(channel: IO[str], **message: Any) -> None:
    channel.write(json.dumps(message) + "\n")
    channel.flush()


def main() -> int:
    # our channel is the original stdout; anything else written to fd 1 (onnxruntime's C++ logging) goes to stderr
    channel = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    from sparsecli import bench
    from sparsecli.bench_session import share_threads

    paths, batches, spec, s = _decode(json.loads(sys.stdin.read()))
    share_threads(s)
    try:
        document = bench.measure(paths, batches, spec, s, lambda *p: _send(channel, progress=p))
    except BadInput as exc:
        _send(channel, error=str(exc))
        return 2
    _send(channel, result=document)
    return 0


if __name__ == "__main__":
    sys.exit(main())

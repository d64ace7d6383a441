"""Structured attention-head pruning: whole heads leave each attention layer, so its projections shrink.

Every attention layer's heads are scored, by the norm of their q/k/v rows and out-projection
columns (`l2`, `l1`) or by how much each adds to the layer's output on calibration batches
(`activation`, after Michel et al., 2019, "Are Sixteen Heads Really Better than One?"), and the
lowest-scored `ratio` of them go from every layer alike. nn.MultiheadAttention (alone or inside
nn.TransformerEncoderLayer/DecoderLayer) ties its width to its head count, so it is first replaced by
the equivalent `SlimAttention` (passes/attention.py), whose q/k/v/out Linear layers can lose heads;
checkpoints record the replacement, so a pruned checkpoint reloads into a fresh model of the recipe.
BERT-style Hugging Face encoders (separate query/key/value Linears, `attention.output.dense`) are
handled by their layout adapter, `passes/bert.py`; another layout needs only its own adapter saying
which Linears and which head-count attributes it has.

    passes:
      - kind: heads
        ratio: 0.5
        importance: l2

`finish` leaves SlimAttention modules with fewer heads (`num_heads`, and `kept_heads` naming which
of the original heads remain) and smaller q/k/v/out weights: fewer parameters and MACs.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from sparsecli.passes import bert
from sparsecli.passes.attention import SlimAttention
from sparsecli.passes.structure import Block, UnitsPass, UnitsSpec, Unprunable


class HeadsSpec(UnitsSpec):
    kind: Literal["heads"] = "heads"


class HeadsPass(UnitsPass):
    kind = "heads"
    spec_type = HeadsSpec
    spec: HeadsSpec
    unit_name = "heads"
    candidate_types = (nn.MultiheadAttention, SlimAttention)
    where = (
        "looked for nn.MultiheadAttention (also inside nn.TransformerEncoderLayer), SlimAttention "
        "and BERT-style attention"
    )

    def _survey(self, model: nn.Module) -> None:
        # BERT-style attention is recognised by its layout, not its class: the classes found join the candidates.
        found = sorted({type(m) for m in model.modules() if bert.is_attention(m)}, key=lambda t: t.__qualname__)
        self.candidate_types = (*type(self).candidate_types, *found)

    def _block(self, model: nn.Module, fqn: str, module: nn.Module) -> Block:
        if bert.is_attention(module):
            return bert.attention_block(fqn, module)
        if isinstance(module, nn.MultiheadAttention):
            module = _replace(model, fqn, module)
        attention = module

        def resized(keep: torch.Tensor) -> None:
            attention.kept_heads = tuple(attention.kept_heads[i] for i in keep.tolist())
            attention.num_heads = len(attention.kept_heads)

        producers = [attention.q_proj, attention.k_proj, attention.v_proj]
        return Block(fqn, attention, producers, attention.out_proj, attention.head_dim, resized)


def _replace(model: nn.Module, fqn: str, mha: nn.MultiheadAttention) -> SlimAttention:
    """Put an equivalent SlimAttention where `mha` is; encoders around it stop using nested tensors."""
    if not fqn:
        raise Unprunable("is the whole model; wrap it in a module so it can be replaced")
    slim = SlimAttention.from_mha(mha)
    parent, _, name = fqn.rpartition(".")
    setattr(model.get_submodule(parent), name, slim)
    for encoder_fqn, encoder in model.named_modules():
        inside = not encoder_fqn or fqn.startswith(f"{encoder_fqn}.")
        if isinstance(encoder, nn.TransformerEncoder) and inside:
            encoder.use_nested_tensor = False  # its nested-tensor fast path reads the packed weights
    return slim

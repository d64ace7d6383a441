"""An attention module whose heads can be removed: what `kind: heads` puts in place of nn.MultiheadAttention.

nn.MultiheadAttention ties `embed_dim` (the width of its input and output) to `num_heads * head_dim`
(the width of its q/k/v projections), so a head cannot leave it. `SlimAttention` computes the same
function with separate q/k/v/out Linear layers (the layout BERT-style encoders use) whose inner width
`num_heads * head_dim` may be smaller than `embed_dim`. It is a drop-in for nn.MultiheadAttention,
inside nn.TransformerEncoderLayer too: same call signature, masks, batch_first, returned weights. Its
forward is plain matmul/softmax, so the TorchScript ONNX exporter and PyTorch's flop counter see
every operation (nn.MultiheadAttention's fused eval-mode fast path is invisible to both).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from sparsecli.passes.structure import Unprunable


class SlimAttention(nn.Module):
    """Multi-head attention with `num_heads * head_dim` independent of `embed_dim`."""

    # nn.TransformerEncoderLayer and nn.TransformerEncoder read these to decide on their fused fast
    # path; there is no packed in-projection here, so they always take the plain, exportable path.
    _qkv_same_embed_dim = False
    in_proj_weight = None
    in_proj_bias = None

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        head_dim: int,
        *,
        kdim: int | None = None,
        vdim: int | None = None,
        bias: bool = True,
        dropout: float = 0.0,
        batch_first: bool = False,
    ):
        super().__init__()
        self.embed_dim, self.num_heads, self.head_dim = embed_dim, num_heads, head_dim
        self.kdim, self.vdim = kdim or embed_dim, vdim or embed_dim
        self.bias, self.dropout, self.batch_first = bias, dropout, batch_first
        self.original_heads = num_heads  # per-head masks come with a row for each original head
        self.kept_heads = tuple(range(num_heads))  # which of those each head here is
        inner = num_heads * head_dim
        self.q_proj = nn.Linear(embed_dim, inner, bias=bias)
        self.k_proj = nn.Linear(self.kdim, inner, bias=bias)
        self.v_proj = nn.Linear(self.vdim, inner, bias=bias)
        self.out_proj = nn.Linear(inner, embed_dim, bias=bias)

    @classmethod
    def from_architecture(cls, attributes: dict[str, Any]) -> SlimAttention:
        """An empty module of a checkpoint's recorded shape (see `sparsecli.checkpoint`); weights come after."""
        names = ("kdim", "vdim", "bias", "dropout", "batch_first")
        module = cls(
            attributes["embed_dim"],
            attributes["num_heads"],
            attributes["head_dim"],
            **{n: attributes[n] for n in names},
        )
        module.original_heads, module.kept_heads = attributes["original_heads"], tuple(attributes["kept_heads"])
        return module

    @classmethod
    @torch.no_grad()
    def from_mha(cls, mha: nn.MultiheadAttention) -> SlimAttention:
        """The same function as `mha`, with its packed q/k/v weights split into three Linear layers."""
        if mha.bias_k is not None or mha.add_zero_attn:
            raise Unprunable("uses bias_k/bias_v or add_zero_attn, which head removal does not support")
        bias = mha.in_proj_bias is not None
        slim = cls(
            mha.embed_dim,
            mha.num_heads,
            mha.head_dim,
            kdim=mha.kdim,
            vdim=mha.vdim,
            bias=bias,
            dropout=mha.dropout,
            batch_first=mha.batch_first,
        )
        if mha._qkv_same_embed_dim:
            weights = mha.in_proj_weight.chunk(3)
        else:
            weights = (mha.q_proj_weight, mha.k_proj_weight, mha.v_proj_weight)
        biases = mha.in_proj_bias.chunk(3) if bias else (None,) * 3
        for proj, w, b in zip((slim.q_proj, slim.k_proj, slim.v_proj), weights, biases, strict=True):
            proj.weight.copy_(w)
            if b is not None:
                proj.bias.copy_(b)
        slim.out_proj.weight.copy_(mha.out_proj.weight)
        if bias:
            slim.out_proj.bias.copy_(mha.out_proj.bias)
        return slim.to(mha.out_proj.weight.device, mha.out_proj.weight.dtype).train(mha.training)

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        key_padding_mask: torch.Tensor | None = None,
        need_weights: bool = True,
        attn_mask: torch.Tensor | None = None,
        average_attn_weights: bool = True,
        is_causal: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """nn.MultiheadAttention's contract: (output, weights averaged over heads or per head, or None)."""
        batched = query.dim() == 3
        if not batched:
            query, key, value = (t.unsqueeze(0 if self.batch_first else 1) for t in (query, key, value))
            key_padding_mask = key_padding_mask.unsqueeze(0) if key_padding_mask is not None else None
        if not self.batch_first:
            query, key, value = (t.transpose(0, 1) for t in (query, key, value))
        q, k, v = (self._split(proj(t)) for proj, t in ((self.q_proj, query), (self.k_proj, key), (self.v_proj, value)))
        scores = torch.matmul(q, k.transpose(-2, -1)) * self.head_dim**-0.5
        bias = self._mask_bias(attn_mask, key_padding_mask, is_causal, scores)
        weights = torch.softmax(scores if bias is None else scores + bias, dim=-1)
        context = torch.matmul(F.dropout(weights, self.dropout, self.training), v)
        out = self.out_proj(context.transpose(1, 2).flatten(2))
        if not self.batch_first:
            out = out.transpose(0, 1)
        if not batched:
            out = out.squeeze(0 if self.batch_first else 1)
        if not need_weights:
            return out, None
        weights = weights.mean(1) if average_attn_weights else weights
        return out, weights if batched else weights.squeeze(0)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, tokens, heads * head_dim) -> (batch, heads, tokens, head_dim)."""
        return x.unflatten(-1, (self.num_heads, self.head_dim)).transpose(1, 2)

    def _mask_bias(
        self,
        attn_mask: torch.Tensor | None,
        key_padding_mask: torch.Tensor | None,
        is_causal: bool,
        scores: torch.Tensor,
    ) -> torch.Tensor | None:
        """One additive mask, broadcastable to the scores (batch, heads, queries, keys); None without masks."""
        if attn_mask is None and is_causal:
            queries, keys = scores.shape[-2:]
            attn_mask = torch.ones(queries, keys, dtype=torch.bool, device=scores.device).triu(1)
        bias = None
        if attn_mask is not None:
            if attn_mask.dim() == 3:  # (batch * original heads, queries, keys): keep the rows of kept heads
                heads = torch.tensor(self.kept_heads, device=attn_mask.device)
                attn_mask = attn_mask.unflatten(0, (-1, self.original_heads))
                attn_mask = attn_mask.index_select(1, heads)
            bias = _additive(attn_mask, scores.dtype)
        if key_padding_mask is not None:
            padding = _additive(key_padding_mask, scores.dtype)[:, None, None, :]
            bias = padding if bias is None else bias + padding
        return bias


def _additive(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """A boolean mask (True: may not attend) as 0/-inf; a float mask as it is."""
    if mask.dtype == torch.bool:
        return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(mask, float("-inf"))
    return mask.to(dtype)

"""A small encoder classifier built from nn.TransformerEncoderLayer, for any input shape.

The input's last axis is a token's features and every axis before it (after the batch) counts
tokens: an 8x8 digit is 8 tokens (its rows) of 8 features, a (C, H, W) image C*H tokens of W, a
flat vector one token. Tokens are embedded by a Linear, get a learned position embedding, pass
`depth` pre-norm encoder layers, and are averaged into the Linear `classifier`.

nn.MultiheadAttention has a fused eval-mode fast path (`torch._transformer_encoder_layer_fwd`)
that the TorchScript ONNX exporter cannot translate and PyTorch's flop counter does not count;
`plain_attention()` turns it off around export and MAC counting, so both see the plain operators
that PyTorch itself runs in training.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence

import torch
from torch import nn


class Transformer(nn.Module):
    """Embed tokens, run encoder layers, mean-pool, classify."""

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        dim: int = 64,
        depth: int = 2,
        heads: int = 4,
        ffn: int = 128,
        dropout: float = 0.1,
    ):
        super().__init__()
        self.tokens = math.prod(input_shape[:-1]) if len(input_shape) > 1 else 1
        self.features = int(input_shape[-1])
        self.embed = nn.Linear(self.features, dim)
        self.position = nn.Parameter(torch.randn(1, self.tokens, dim) * 0.02)
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(dim, heads, ffn, dropout, activation="gelu", batch_first=True, norm_first=True)
            for _ in range(depth)
        )  # built one by one: nn.TransformerEncoder would deep-copy one layer, so all would start identical
        self.norm = nn.LayerNorm(dim)
        self.classifier = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.embed(x.reshape(-1, self.tokens, self.features)) + self.position
        for layer in self.layers:
            x = layer(x)
        return self.classifier(self.norm(x).mean(1))


def transformer(
    input_shape: Sequence[int], num_classes: int, dim: int = 64, depth: int = 2, heads: int = 4, ffn: int = 128
) -> nn.Module:
    """Encoder classifier: `depth` layers of width `dim`, `heads` attention heads, FFN hidden size `ffn`."""
    if dim % heads:
        raise TypeError(f"dim ({dim}) must be a multiple of heads ({heads})")
    return Transformer(input_shape, num_classes, dim, depth, heads, ffn)


@contextlib.contextmanager
def plain_attention() -> Iterator[None]:
    """nn.MultiheadAttention and nn.TransformerEncoderLayer without their fused fast path, restored after."""
    enabled = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        yield
    finally:
        torch.backends.mha.set_fastpath_enabled(enabled)

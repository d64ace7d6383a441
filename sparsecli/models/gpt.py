"""A small GPT-style causal language model (nanoGPT's shape), its brief pre-training, and perplexity.

Token and position embeddings, `depth` pre-norm blocks of causal self-attention and a GELU MLP (every
projection an nn.Linear, so one-shot pruning passes see them), a final LayerNorm and an untied LM head.
Attention is written out (no fused kernel), so the TorchScript ONNX exporter translates it op for op.
The builder takes the zoo's (input_shape, num_classes) as (context length,) and vocabulary size.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn


class CausalSelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int, context: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.register_buffer("causal", torch.ones(context, context).tril().bool(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, dim = x.shape
        q, k, v = (t.view(batch, tokens, self.heads, -1).transpose(1, 2) for t in self.qkv(x).split(dim, dim=2))
        scores = (q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])
        scores = scores.masked_fill(~self.causal[:tokens, :tokens], float("-inf"))
        out = (scores.softmax(-1) @ v).transpose(1, 2).reshape(batch, tokens, dim)
        return self.proj(out)


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, context: int):
        super().__init__()
        self.ln1 = nn.LayerNorm(dim)
        self.attn = CausalSelfAttention(dim, heads, context)
        self.ln2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class GPT(nn.Module):
    """Token ids (batch, tokens) -> next-token logits (batch, tokens, vocab)."""

    def __init__(self, vocab: int, context: int, dim: int, depth: int, heads: int):
        super().__init__()
        self.token = nn.Embedding(vocab, dim)
        self.position = nn.Embedding(context, dim)
        self.blocks = nn.ModuleList(Block(dim, heads, context) for _ in range(depth))
        self.ln_f = nn.LayerNorm(dim)
        self.lm_head = nn.Linear(dim, vocab, bias=False)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(ids.shape[1], device=ids.device)
        x = self.token(ids) + self.position(positions)
        for block in self.blocks:
            x = block(x)
        return self.lm_head(self.ln_f(x))


def gpt(input_shape: Sequence[int], num_classes: int, dim: int = 128, depth: int = 4, heads: int = 4) -> GPT:
    """Causal LM over `num_classes` tokens with a context of `input_shape[0]` tokens."""
    if dim % heads:
        raise TypeError(f"dim ({dim}) must be a multiple of heads ({heads})")
    return GPT(num_classes, int(input_shape[0]), dim, depth, heads)


def windows(tokens: torch.Tensor, context: int, count: int, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
    """`count` random windows: inputs (count, context) and their next tokens, the same shape."""
    starts = torch.randint(0, len(tokens) - context - 1, (count,), generator=generator)
    rows = torch.stack([tokens[s : s + context + 1] for s in starts.tolist()])
    return rows[:, :-1], rows[:, 1:]


def lm_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


@torch.no_grad()
def perplexity(model: nn.Module, tokens: torch.Tensor, context: int, batch_size: int = 64) -> float:
    """exp(mean next-token cross-entropy) over consecutive non-overlapping windows of `tokens`."""
    model.eval()
    usable = (len(tokens) - 1) // context * context
    inputs, targets = tokens[:usable].view(-1, context), tokens[1 : usable + 1].view(-1, context)
    total = 0.0
    for start in range(0, len(inputs), batch_size):
        x, y = inputs[start : start + batch_size], targets[start : start + batch_size]
        total += float(lm_loss(model(x), y)) * len(x)
    return math.exp(total / len(inputs))


def pretrain(model: nn.Module, tokens: torch.Tensor, steps: int, batch_size: int = 32, lr: float = 3e-3, seed: int = 0):
    """Brief AdamW training on random windows, learning rate warming up then decaying on a cosine."""
    context = model.position.num_embeddings
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    model.train()
    for step in range(steps):
        warmup = min(1.0, (step + 1) / max(1, steps // 20))
        for group in optimizer.param_groups:
            group["lr"] = lr * warmup * 0.5 * (1 + math.cos(math.pi * step / steps))
        x, y = windows(tokens, context, batch_size, generator)
        loss = lm_loss(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
    return model.eval()

"""What a model is for: its training loss, its distillation loss against the dense model, and its quality metric.

One small object per task, so training, evaluation and the report never branch on the task. Every
metric is a mean over items (samples or tokens) of a per-item value, accumulated batch by batch as
(total, count): accuracy, cosine similarity of embeddings to the dense model, or per-token negative
log-likelihood, turned into perplexity at the end.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from sparsecli.passes.base import Inputs, forward


@dataclass(frozen=True)
class Task:
    """Classification: cross-entropy, logits distillation, top-1 accuracy."""

    name: str = "classification"
    metric: str = "accuracy"
    output_name: str = "output"
    needs_labels: bool = True  # outputs are class scores, trained against the data's labels
    has_own_loss: bool = True  # False: the task learns only by distillation
    lower_is_better: bool = False

    def loss(self, outputs: torch.Tensor, inputs: Inputs, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(outputs, labels)

    def distill_loss(self, student: torch.Tensor, teacher: torch.Tensor, inputs: Inputs, temperature: float):
        """Hinton et al., 2015: KL between softened distributions, times T^2 so gradients keep their scale."""
        return soft_kl(student, teacher, temperature).mean() * temperature**2

    def metric_parts(self, outputs: np.ndarray, inputs: Inputs, labels: np.ndarray, reference: np.ndarray):
        """(sum of the per-item metric, number of items) for one batch; `reference` is the dense model's outputs."""
        return float((np.asarray(outputs).argmax(1) == np.asarray(labels)).sum()), len(labels)

    def finalize(self, total: float, count: int) -> float:
        return total / max(1, count)

    def drop_points(self, dense: float, compressed: float) -> float:
        """Quality lost, in percentage points (for perplexity: percent increase), what `max_accuracy_drop` gates."""
        return 100.0 * (dense - compressed)


@dataclass(frozen=True)
class FeatureExtraction(Task):
    """Sentence embeddings: no labels; quality is the cosine similarity to the dense model's embedding."""

    name: str = "feature-extraction"
    metric: str = "cosine"
    output_name: str = "embeddings"
    needs_labels: bool = False
    has_own_loss: bool = False

    def loss(self, outputs, inputs, labels):
        raise ValueError("feature-extraction has no labels to learn from; it learns only by distillation")

    def distill_loss(self, student, teacher, inputs, temperature):
        return (1.0 - F.cosine_similarity(student, teacher, dim=-1)).mean()

    def metric_parts(self, outputs, inputs, labels, reference):
        a, b = np.asarray(outputs, np.float64), np.asarray(reference, np.float64)
        cosine = (a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)
        return float(cosine.sum()), len(cosine)


@dataclass(frozen=True)
class CausalLM(Task):
    """Next-token prediction on the batch's own tokens; quality is perplexity over the non-padding tokens."""

    name: str = "causal-lm"
    metric: str = "perplexity"
    output_name: str = "logits"
    needs_labels: bool = False
    lower_is_better: bool = True

    def loss(self, outputs, inputs, labels):
        targets, weights = next_tokens(inputs)
        nll = F.cross_entropy(outputs[:, :-1].flatten(0, 1), targets.flatten(), reduction="none")
        return (nll * weights.flatten()).sum() / weights.sum().clamp(min=1)

    def distill_loss(self, student, teacher, inputs, temperature):
        _, weights = next_tokens(inputs)
        kl = soft_kl(student[:, :-1], teacher[:, :-1], temperature)
        return (kl * weights).sum() / weights.sum().clamp(min=1) * temperature**2

    def metric_parts(self, outputs, inputs, labels, reference):
        logits = torch.from_numpy(np.asarray(outputs, np.float32))
        targets, weights = next_tokens(inputs)
        nll = F.cross_entropy(logits[:, :-1].flatten(0, 1), targets.flatten(), reduction="none")
        return float((nll * weights.flatten()).sum()), int(weights.sum())

    def finalize(self, total, count):
        return math.exp(total / max(1, count))

    def drop_points(self, dense, compressed):
        return 100.0 * (compressed / dense - 1.0)


TASKS: dict[str, Task] = {
    "classification": Task(),
    "sequence-classification": Task(name="sequence-classification", output_name="logits"),
    "feature-extraction": FeatureExtraction(),
    "causal-lm": CausalLM(),
}


def soft_kl(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(teacher || student) of the softened distributions, per position (last axis summed)."""
    log_student = F.log_softmax(student / temperature, dim=-1)
    log_teacher = F.log_softmax(teacher / temperature, dim=-1)
    return (log_teacher.exp() * (log_teacher - log_student)).sum(-1)


def next_tokens(inputs: Inputs) -> tuple[torch.Tensor, torch.Tensor]:
    """Targets (tokens 1..T) and their weights (1 where both the target and its context are real tokens)."""
    ids, mask = (inputs[0], inputs[1]) if isinstance(inputs, tuple | list) else (inputs, torch.ones_like(inputs))
    ids, mask = torch.as_tensor(ids), torch.as_tensor(mask)
    return ids[:, 1:], (mask[:, 1:] * mask[:, :-1]).float()


@dataclass
class Objective:
    """The loss the training loop minimises on one batch: the task's own loss and/or distillation from a teacher.

    With `hidden_layers`, the mean squared difference of those layers' outputs (student vs teacher)
    is added too: the layer-wise signal of TinyBERT-style distillation (Jiao et al., 2020).
    """

    task: Task
    teacher: nn.Module | None = None
    weight: float = 1.0
    temperature: float = 1.0
    hidden_layers: Callable[[nn.Module], list[nn.Module]] | None = None

    def __call__(self, model: nn.Module, inputs: Inputs, labels: torch.Tensor) -> torch.Tensor:
        student_hidden, outputs = _capture(model, inputs, self.hidden_layers)
        loss = self.task.loss(outputs, inputs, labels) if self.task.has_own_loss else outputs.new_zeros(())
        if self.teacher is None:
            return loss
        with torch.no_grad():
            teacher_hidden, reference = _capture(self.teacher.eval(), inputs, self.hidden_layers)
        loss = loss + self.weight * self.task.distill_loss(outputs, reference, inputs, self.temperature)
        for s, t in zip(student_hidden, teacher_hidden, strict=True):
            loss = loss + self.weight * F.mse_loss(s, t)
        return loss


def _capture(model: nn.Module, inputs: Inputs, layers_of) -> tuple[list[torch.Tensor], torch.Tensor]:
    """The model's output and, when `layers_of` is given, the outputs of those layers (first tensor of a tuple)."""
    captured: list[torch.Tensor] = []

    def keep(module: nn.Module, args: Any, output: Any) -> None:
        captured.append(output[0] if isinstance(output, tuple) else output)

    handles = [layer.register_forward_hook(keep) for layer in (layers_of(model) if layers_of else [])]
    try:
        return captured, forward(model, inputs)
    finally:
        for handle in handles:
            handle.remove()

"""Task metrics and losses against independent computations (plain loops, torch's own functions)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from sparsecli.tasks import TASKS, Objective
from sparsecli.train import evaluate


def _metric(name: str, outputs, inputs, labels, reference) -> float:
    task = TASKS[name]
    return task.finalize(*task.metric_parts(outputs, inputs, labels, reference))


def test_accuracy_counts_argmax_hits():
    logits = np.array([[0.1, 0.9], [2.0, -1.0], [0.3, 0.2], [0.0, 5.0]])
    labels = np.array([1, 0, 1, 1])
    assert _metric("classification", logits, None, labels, logits) == pytest.approx(3 / 4)


def test_cosine_is_mean_cosine_to_the_reference():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((5, 7)), rng.standard_normal((5, 7))
    expected = F.cosine_similarity(torch.from_numpy(a), torch.from_numpy(b), dim=1).mean().item()
    assert _metric("feature-extraction", a, None, None, b) == pytest.approx(expected, rel=1e-9)
    assert _metric("feature-extraction", a, None, None, 3 * a) == pytest.approx(1.0)


def test_perplexity_is_exp_of_mean_next_token_nll_over_real_tokens():
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 6)
    ids = torch.tensor([[1, 2, 3, 4], [5, 0, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])
    nll, tokens = 0.0, 0
    for b in range(2):
        for t in range(1, 4):
            if mask[b, t] and mask[b, t - 1]:
                nll -= torch.log_softmax(logits[b, t - 1], -1)[ids[b, t]].item()
                tokens += 1
    got = _metric("causal-lm", logits.numpy(), (ids, mask), None, None)
    assert got == pytest.approx(math.exp(nll / tokens), rel=1e-5)
    assert TASKS["causal-lm"].loss(logits, (ids, mask), None).item() == pytest.approx(nll / tokens, rel=1e-5)


def test_drop_points_follow_the_direction_of_the_metric():
    assert TASKS["feature-extraction"].drop_points(1.0, 0.93) == pytest.approx(7.0)
    assert TASKS["causal-lm"].drop_points(20.0, 25.0) == pytest.approx(25.0)  # perplexity: percent increase


def test_logits_distillation_is_kl_of_softened_distributions_times_t_squared():
    torch.manual_seed(0)
    student, teacher, t = torch.randn(4, 5), torch.randn(4, 5), 2.0
    expected = F.kl_div(F.log_softmax(student / t, -1), F.softmax(teacher / t, -1), reduction="batchmean") * t * t
    assert TASKS["classification"].distill_loss(student, teacher, None, t).item() == pytest.approx(expected.item())
    assert TASKS["classification"].distill_loss(teacher, teacher, None, t).item() == pytest.approx(0.0, abs=1e-6)


class _Tower(nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = nn.ModuleList([nn.Linear(4, 4), nn.Linear(4, 4)])

    def forward(self, x):
        for layer in self.layers:
            x = torch.tanh(layer(x))
        return x


def test_objective_distills_embeddings_and_hidden_states():
    torch.manual_seed(0)
    student, teacher, x = _Tower(), _Tower(), torch.randn(3, 4)
    task = TASKS["feature-extraction"]
    plain = Objective(task, teacher)(student, x, torch.zeros(3))
    cosine = (1 - F.cosine_similarity(student(x), teacher(x), dim=-1)).mean()
    assert plain.item() == pytest.approx(cosine.item(), rel=1e-6)
    hidden = Objective(task, teacher, hidden_layers=lambda m: list(m.layers))(student, x, torch.zeros(3))
    h_s, h_t = torch.tanh(student.layers[0](x)), torch.tanh(teacher.layers[0](x))
    mse = F.mse_loss(student.layers[0](x), teacher.layers[0](x)) + F.mse_loss(
        student.layers[1](h_s), teacher.layers[1](h_t)
    )
    assert hidden.item() == pytest.approx((cosine + mse).item(), rel=1e-5)
    assert Objective(task, student)(student, x, torch.zeros(3)).item() == pytest.approx(0.0, abs=1e-6)


def test_evaluate_compares_with_the_reference_model():
    torch.manual_seed(0)
    a, b = _Tower(), _Tower()
    batches = [(torch.randn(4, 4), torch.zeros(4)), (torch.randn(2, 4), torch.zeros(2))]
    x = torch.cat([x for x, _ in batches])
    with torch.no_grad():
        expected = F.cosine_similarity(a(x), b(x), dim=1).mean().item()
    assert evaluate(a, batches, TASKS["feature-extraction"], b) == pytest.approx(expected, rel=1e-5)


def test_causal_lm_learns_without_labels_and_feature_extraction_only_by_distillation():
    torch.manual_seed(0)
    ids = torch.randint(0, 6, (2, 5))
    lm = Objective(TASKS["causal-lm"])
    model = lambda i, m: torch.nn.functional.one_hot(i, 6).float() * 3.0  # noqa: E731
    loss = lm(model, (ids, torch.ones_like(ids)), torch.zeros(2)).item()
    assert loss == pytest.approx(TASKS["causal-lm"].loss(model(ids, None), (ids, torch.ones_like(ids)), None).item())
    assert loss > 0
    assert Objective(TASKS["feature-extraction"])(_Tower(), torch.randn(2, 4), torch.zeros(2)).item() == 0.0

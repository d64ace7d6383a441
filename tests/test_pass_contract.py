"""Every registered pass through prepare -> on_step x k -> finish on a tiny model.

Checks: the target is reached, masked weights stay zero after every optimizer step, nothing stays
attached after finish, the exported ONNX matches PyTorch, `describe()` is valid JSON.
"""

from __future__ import annotations

import json

import pytest
import torch
from pydantic import TypeAdapter

from sparsecli.export import check_parity, export_onnx
from sparsecli.models.zoo import ZOO
from sparsecli.passes import REGISTRY, PassContext, build, masking
from sparsecli.recipe import PassEntry

# kind -> (recipe entry, zoo model). Every registered kind needs an entry: the first test enforces it.
CONTRACT_CASES: dict[str, tuple[dict, str]] = {
    "magnitude": ({"kind": "magnitude", "target": 0.6, "schedule": {"curve": "linear", "every_steps": 1}}, "convnet"),
    "channels": ({"kind": "channels", "ratio": 0.5, "importance": "taylor", "steps": 3}, "resnet"),
    "wanda": ({"kind": "wanda", "target": 0.5}, "convnet"),
    "sparsegpt": ({"kind": "sparsegpt", "target": 0.5, "blocksize": 16}, "convnet"),
    "l1": ({"kind": "l1", "l1": 1e-3, "target": 0.5}, "convnet"),
    "l2": ({"kind": "l2", "l2": 1e-3, "threshold": 0.01}, "mlp"),
    "l1_l2": ({"kind": "l1_l2", "l1": 1e-3, "l2": 1e-3, "target": 0.4, "threshold": 0.01}, "resnet"),
    "group_lasso": ({"kind": "group_lasso", "strength": 0.01, "threshold": 0.5}, "resnet"),
    "regrow": ({"kind": "regrow", "target": 0.8, "every": 2, "fraction": 0.5, "exclude": ["classifier"]}, "convnet"),
    "nm": ({"kind": "nm", "schedule": {"curve": "linear", "every_steps": 1}}, "convnet"),
    "activation": ({"kind": "activation", "strength": 1e-3}, "resnet"),
    "heads": ({"kind": "heads", "ratio": 0.5, "importance": "activation", "steps": 2}, "transformer"),
    "neurons": ({"kind": "neurons", "ratio": 0.5, "steps": 3}, "transformer"),
}

STEPS = 6


def test_every_registered_pass_has_a_contract_case():
    assert set(REGISTRY) <= set(CONTRACT_CASES), f"add CONTRACT_CASES for {set(REGISTRY) - set(CONTRACT_CASES)}"


def _masked_weights_are_zero(model: torch.nn.Module) -> bool:
    for module in model.modules():
        mask = masking.find(module)
        if mask is not None and (module.weight[~mask.mask] != 0).any():
            return False
    return True


def _attachments(model: torch.nn.Module) -> list[str]:
    found = []
    for fqn, module in model.named_modules():
        hooks = (module._forward_hooks, module._forward_pre_hooks, module._backward_hooks)
        if any(hooks):
            found.append(f"hook on {fqn or 'model'}")
        if torch.nn.utils.parametrize.is_parametrized(module):
            found.append(f"parametrization on {fqn}")
    return found


@pytest.mark.parametrize("kind", sorted(CONTRACT_CASES))
def test_pass_contract(kind, tmp_path):
    entry, zoo_name = CONTRACT_CASES[kind]
    spec = TypeAdapter(PassEntry).validate_python(entry)
    torch.manual_seed(0)
    model = ZOO[zoo_name]((1, 8, 8), 10)
    x, y = torch.rand(32, 1, 8, 8), torch.randint(0, 10, (32,))
    params_before = sum(p.numel() for p in model.parameters())
    ctx = PassContext(x[:1], steps_per_epoch=2, total_epochs=STEPS / 2, calibration=[(x[:16], y[:16])])
    the_pass = build(spec)
    the_pass.prepare(model, ctx)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    for step in range(1, STEPS + 1):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        penalty = the_pass.penalty(model)
        (loss if penalty is None else loss + penalty).backward()
        optimizer.step()
        the_pass.on_step(model, step)
        optimizer.zero_grad()
        assert _masked_weights_are_zero(model), f"masked weights moved after step {step}"
    model = the_pass.finish(model).eval()

    assert _attachments(model) == []
    target = getattr(spec, "target", None)
    if target:
        weights = [m.weight for m in the_pass.modules.values()]
        zeros = sum(int((w == 0).sum()) for w in weights)
        assert zeros / sum(w.numel() for w in weights) >= target - 1e-3
    if getattr(spec, "ratio", None):
        assert sum(p.numel() for p in model.parameters()) < params_before
    path = export_onnx(model, x[:1], tmp_path / "m.onnx", opset=17, dynamic_batch=True)
    assert check_parity(path, model, x, atol=1e-4) <= 1e-4
    json.dumps(the_pass.describe())

    with pytest.raises(RuntimeError):
        the_pass.on_step(model, STEPS + 1)

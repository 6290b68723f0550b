"""Every Gramian-only method takes the same step on the loop and Gramian engine paths, float32 model,
for full-rank and for exactly rank-deficient task gradients (L3 = L1 + L2).

Regression for issue 12, item 2: Aligned-MTL took its rank tolerance from the dtype of what it was
handed, float32 gradients on the loop path but the float64 Gram factor on the Gramian path, where it
kept the float32 rounding noise of a rank-deficient Gram matrix as a direction (a step ~1e4 too short).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mtlbench import methods
from mtlbench.methods.gradients import EngineOptions
from mtlbench.models.base import MultiTaskModel

GRAMIAN_ONLY = [name for name in methods.METHODS.names() if getattr(methods.METHODS[name], "gramian_only", False)]


def _model(seed: int = 0) -> tuple[MultiTaskModel, torch.Tensor, torch.Tensor]:
    torch.manual_seed(seed)
    encoder = nn.Sequential(nn.Linear(5, 12), nn.Tanh(), nn.Linear(12, 7), nn.Tanh())
    heads = {f"t{i}": nn.Sequential(nn.Linear(7, 4), nn.Tanh(), nn.Linear(4, 1)) for i in range(3)}
    model = MultiTaskModel(encoder, heads, representation_size=7)  # float32, as in training
    x = torch.randn(10, 5)
    y = x[:, :1] + 0.5 * torch.randn(10, 3)
    return model, x, y


def _losses(model: MultiTaskModel, x: torch.Tensor, y: torch.Tensor, rank_deficient: bool):
    z = model.encode(x)
    outputs = model.decode(z)
    losses = [((outputs[f"t{i}"].squeeze(-1) - y[:, i]) ** 2).mean() for i in range(3)]
    if rank_deficient:  # L3 = L1 + L2 on the shared parameters (head 3 gets a zero gradient)
        losses[2] = losses[0] + losses[1] + 0.0 * outputs["t2"].sum()
    return z, torch.stack(losses)


def _step(name: str, path: str, rank_deficient: bool):
    model, x, y = _model()
    method = methods.create(name, n_tasks=3, generator=torch.Generator().manual_seed(3), space="parameters")
    method.engine = EngineOptions(path, max_gradient_bytes=400 if path == "gramian" else None)
    z, losses = _losses(model, x, y, rank_deficient)
    result = method.backward(losses, model.shared_parameters(), features=z, task_parameters=model.task_parameters())
    shared = torch.cat([p.grad.reshape(-1) for p in model.shared_parameters()])
    return shared, result


def _largest_task_gradient(rank_deficient: bool) -> float:
    model, x, y = _model()
    _, losses = _losses(model, x, y, rank_deficient)
    params = list(model.shared_parameters())
    norms = []
    for loss in losses:
        grads = torch.autograd.grad(loss, params, retain_graph=True)
        norms.append(float(torch.cat([g.reshape(-1) for g in grads]).norm()))
    return max(norms)


def test_every_gramian_only_method_is_covered():
    assert {"aligned_mtl", "cagrad", "mgda", "nash_mtl", "upgrad", "fairgrad", "pcgrad", "imtl_g"} <= set(GRAMIAN_ONLY)


@pytest.mark.parametrize("rank_deficient", [False, True], ids=["full_rank", "L3=L1+L2"])
@pytest.mark.parametrize("name", GRAMIAN_ONLY)
def test_loop_and_gramian_paths_give_the_same_step(name, rank_deficient):
    loop, loop_result = _step(name, "loop", rank_deficient)
    gramian, gramian_result = _step(name, "gramian", rank_deficient)
    # the same shared-parameter step, to float32 rounding of the gradients (relative to the larger of its
    # norm and the largest task gradient's: IMTL-G's exact step is 0 here, both paths give rounding noise)
    scale = max(float(loop.norm()), _largest_task_gradient(rank_deficient))
    assert float((gramian - loop).norm()) <= 1e-4 * scale, (float(gramian.norm()), float(loop.norm()))
    if not rank_deficient and loop_result.weights is not None:  # weights are unique only at full rank
        torch.testing.assert_close(gramian_result.weights, loop_result.weights, rtol=1e-4, atol=1e-6)


def test_aligned_mtl_rank_deficient_gradients_keep_rank_two_on_both_paths():
    results = [_step("aligned_mtl", path, rank_deficient=True)[1] for path in ("loop", "gramian")]
    assert [r.info["rank"] for r in results] == [2.0, 2.0]
    # on the gradients' span the weights are unique: W 1 with W = sigma V Lambda^(-1/2) V^T on the kept space
    torch.testing.assert_close(results[1].weights, results[0].weights, rtol=1e-4, atol=1e-6)

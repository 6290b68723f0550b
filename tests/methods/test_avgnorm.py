"""AvgNorm (Guo et al., eq. 6): w_i = ||sum_j g_j|| / ||g_i|| on the last shared layer."""

from __future__ import annotations

import torch

from mtlbench.methods import TrainingContext, create

from .conftest import make_tiny_problem


def _check(method_context: bool) -> None:
    problem = make_tiny_problem(3)
    model = problem.model
    method = create("avgnorm", 3)
    if method_context:
        method.attach(
            TrainingContext(
                model=model,
                optimizer=None,  # type: ignore[arg-type]
                lr=1e-3,
                weight_decay=0.0,
                task_names=model.task_names,
                loss_types=["mse"] * 3,
                compute_losses=problem.losses,
            )
        )
        measured = list(model.last_shared_layer.parameters())
    else:
        measured = model.shared_parameters()
    losses = problem.losses()
    everything = [*model.shared_parameters(), *[p for ps in model.task_parameters() for p in ps]]
    per_task = [torch.autograd.grad(losses[i], everything, retain_graph=True, allow_unused=True) for i in range(3)]
    flat = [
        torch.cat([g.reshape(-1) for g, p in zip(grads, everything, strict=True) if any(p is m for m in measured)])
        for grads in per_task
    ]
    weights = method.backward(losses, model.shared_parameters(), task_parameters=model.task_parameters()).weights
    total = torch.stack(flat).sum(0).norm()
    for i in range(3):
        torch.testing.assert_close((weights[i] * flat[i]).norm(), total)
    # the backward pass is sum_i w_i L_i: shared and head gradients are weighted
    for j, p in enumerate(everything):
        expected = sum(weights[i] * per_task[i][j] for i in range(3) if per_task[i][j] is not None)
        torch.testing.assert_close(p.grad, expected, rtol=1e-5, atol=1e-6)


def test_weighted_norms_equal_the_norm_of_the_sum_on_all_shared_parameters() -> None:
    _check(method_context=False)


def test_weighted_norms_equal_the_norm_of_the_sum_on_the_last_shared_layer() -> None:
    _check(method_context=True)

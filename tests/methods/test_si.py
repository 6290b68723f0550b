"""SI (Navon et al. 2022): gradient sum_i g_i / L_i, weights reported normalised to sum T."""

from __future__ import annotations

import torch

from mtlbench.methods import create

from .conftest import make_tiny_problem


def test_gradient_is_inverse_loss_weighted_and_weights_sum_to_t() -> None:
    problem = make_tiny_problem(3)
    shared = problem.model.shared_parameters()
    losses = problem.losses()
    per_task = [torch.autograd.grad(losses[i], shared, retain_graph=True) for i in range(3)]
    method = create("si", 3)
    result = method.backward(losses, shared)
    inverse = 1.0 / losses.detach()
    torch.testing.assert_close(result.weights, 3 * inverse / inverse.sum())
    torch.testing.assert_close(result.weights.sum(), torch.tensor(3.0))
    scale = method.scale(losses)
    for j, p in enumerate(shared):
        expected = scale * sum(result.weights[i] * per_task[i][j] for i in range(3))
        torch.testing.assert_close(p.grad, expected, rtol=1e-5, atol=1e-7)


def test_scale_invariance() -> None:
    grads = []
    for scales in (torch.ones(2), torch.tensor([100.0, 0.1])):
        problem = make_tiny_problem(2)
        create("si", 2).backward(problem.losses() * scales, problem.model.shared_parameters())
        grads.append([p.grad.clone() for p in problem.model.shared_parameters()])
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)

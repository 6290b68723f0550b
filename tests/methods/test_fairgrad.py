"""FairGrad (Ban & Ji 2024): G^T G w = w^(-1/alpha), alpha = 1 is Nash-MTL, symmetry, fallback, clipping."""

from __future__ import annotations

import pytest
import torch

from mtlbench.methods import aggregate, create

from .conftest import make_tiny_problem


def _gradients(n: int, seed: int, d: int = 12) -> torch.Tensor:
    rng = torch.Generator().manual_seed(seed)
    g = (
        torch.randn(n, d, generator=rng, dtype=torch.float64)
        * torch.linspace(0.3, 2.5, n, dtype=torch.float64)[:, None]
    )
    return g + 0.4 * torch.randn(1, d, generator=rng, dtype=torch.float64)


@pytest.mark.parametrize("alpha", [0.5, 1.0, 2.0, 5.0])
@pytest.mark.parametrize("n", [2, 4])
def test_optimality_condition(n, alpha):
    g = _gradients(n, seed=n)
    result = aggregate("fairgrad", g, alpha=alpha)
    w = result.weights / n  # the paper's w; the direction is T sum_i w_i g_i
    assert bool((w > 0).all())
    rhs = w ** (-1.0 / alpha)
    assert float(((g @ g.T) @ w - rhs).norm() / rhs.norm()) < 1e-8
    torch.testing.assert_close(result.direction, n * (w @ g))


def test_alpha_one_is_nash_mtl():
    g = _gradients(3, seed=8)
    fair = aggregate("fairgrad", g, alpha=1.0).weights / 3
    nash = aggregate("nash_mtl", g).weights
    torch.testing.assert_close(fair, nash, rtol=1e-7, atol=0.0)


def test_equal_norms_equal_weights():
    g = _gradients(2, seed=1)
    g = g / g.norm(dim=1, keepdim=True)
    weights = aggregate("fairgrad", g, alpha=2.0).weights
    assert float(weights[0]) == pytest.approx(float(weights[1]), rel=1e-9)


def test_no_solution_uses_the_reference_least_squares():
    g = torch.tensor([[1.0, 0.0], [-1.0, 0.0]], dtype=torch.float64)
    result = aggregate("fairgrad", g)
    assert result.info["count_solver_fallback"] == 1
    assert bool(torch.isfinite(result.weights).all())


def test_backward_clips_the_shared_gradient():
    problem = make_tiny_problem(3, seed=4)
    model = problem.model
    method = create("fairgrad", 3, max_norm=0.01)
    heads = model.task_parameters()
    losses = problem.losses()
    plain = [torch.autograd.grad(losses[i], heads[i], retain_graph=True) for i in range(3)]
    method.backward(losses, model.shared_parameters(), task_parameters=heads)
    norm = torch.sqrt(sum((p.grad**2).sum() for p in model.shared_parameters()))
    assert float(norm) <= 0.01 * (1 + 1e-5)
    for i in range(3):  # heads: their own plain gradient
        for p, expected in zip(heads[i], plain[i], strict=True):
            torch.testing.assert_close(p.grad, expected)

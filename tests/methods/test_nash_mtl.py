"""Nash-MTL (Navon et al. 2022): G^T G alpha = 1/alpha, 000's Proposition 2, the convex-approximation
sequence and its sub-problems, warm start, solver fallback, clipping and weighted heads."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import mtlbench.methods.solvers_qp as solvers_qp
from mtlbench.methods import aggregate, create
from mtlbench.methods.solvers_qp import ccp_subproblem, power_balance

from .conftest import make_tiny_problem


def _well_conditioned(n: int, seed: int, d: int = 20) -> torch.Tensor:
    rng = torch.Generator().manual_seed(seed)
    g = (
        torch.randn(n, d, generator=rng, dtype=torch.float64)
        * torch.linspace(0.3, 2.0, n, dtype=torch.float64)[:, None]
    )
    return g + 0.5 * torch.randn(1, d, generator=rng, dtype=torch.float64)  # some shared component


@pytest.mark.parametrize("n", [2, 3, 5])
def test_solution_satisfies_the_bargaining_equation(n):
    g = _well_conditioned(n, seed=n)
    result = aggregate("nash_mtl", g)
    alpha = result.weights
    K = g @ g.T
    assert bool((alpha > 0).all())
    residual = (K @ alpha - 1 / alpha).norm() / (1 / alpha).norm()
    assert float(residual) < 1e-8
    torch.testing.assert_close(result.direction, alpha @ g)
    assert "count_solver_fallback" not in result.info


def test_proposition_2_equal_norms_give_equal_weights():
    g = _well_conditioned(2, seed=11)
    g = g / g.norm(dim=1, keepdim=True) * 0.7
    alpha = aggregate("nash_mtl", g).weights
    assert float(alpha[0]) == pytest.approx(float(alpha[1]), rel=1e-9)
    # closed form: alpha^2 A^2 (1 + p) = 1 with A = ||g||, p = cos(g1, g2)
    cosine = float(g[0] @ g[1]) / 0.49
    assert float(alpha[0]) == pytest.approx((0.49 * (1 + cosine)) ** -0.5, rel=1e-9)


def test_warm_start_state_and_update_every():
    g = _well_conditioned(3, seed=5)
    method = create("nash_mtl", 3)
    first = method.combine(g, state=method.initial_state())
    assert first.state["step"] == 1
    second = method.combine(g, state=first.state)  # warm start at the solution: stops at once
    assert second.info["solver_iterations"] == 1
    torch.testing.assert_close(second.weights, first.weights)
    lazy = create("nash_mtl", 3, update_weights_every=2)
    state = lazy.initial_state()
    state = lazy.combine(g, state=state).state
    other = _well_conditioned(3, seed=99)
    kept = lazy.combine(other, state=state)  # step 1: not an update step, previous alpha reused
    torch.testing.assert_close(kept.weights, state["alpha"].to(other.dtype))
    assert "solver_iterations" not in kept.info


def test_no_solution_falls_back_to_the_current_iterate():
    g = torch.tensor([[1.0, 2.0, 0.0], [-1.0, -2.0, 0.0]], dtype=torch.float64)  # opposite gradients
    method = create("nash_mtl", 2)
    result = method.combine(g, state=method.initial_state())
    assert result.info["count_solver_fallback"] == 1
    torch.testing.assert_close(result.weights, torch.ones(2, dtype=g.dtype))  # the reference keeps alpha_t


def _feasible_points(K: np.ndarray, center: np.ndarray, rng: np.random.Generator, count: int) -> np.ndarray:
    Z = center * rng.lognormal(0.0, 0.5, size=(count, K.shape[0]))
    products = Z * (Z @ K)
    Z = Z[(products > 0).all(axis=1)]
    return Z * np.sqrt(1.0 / (Z * (Z @ K)).min(axis=1))[:, None]  # scaled onto the feasible set


def test_sub_problems_are_solved_exactly(monkeypatch):
    """Each convex approximation: feasible and no worse than many feasible points (both solver paths)."""
    calls = {"barrier": 0}
    original = solvers_qp._barrier_subproblem

    def counting(*args):
        calls["barrier"] += 1
        return original(*args)

    monkeypatch.setattr(solvers_qp, "_barrier_subproblem", counting)
    rng = np.random.default_rng(0)
    checked = 0
    for _ in range(80):
        n = int(rng.integers(2, 5))
        g = rng.normal(size=(n, 8)) * rng.uniform(0.1, 10.0, size=(n, 1)) + rng.normal(size=(1, 8))
        K = g @ g.T
        star = power_balance(K)
        previous = star * rng.lognormal(0.0, 2.0, size=n)
        solution = ccp_subproblem(K, previous, star)
        if solution is None:
            continue
        checked += 1
        c = K.sum(axis=1) + 1 / previous + K @ (1 / (K @ previous))
        assert float((solution * (K @ solution)).min()) >= 1 - 1e-8
        others = _feasible_points(K, star, rng, 4000)
        assert len(others) > 50
        assert float(c @ solution) <= float((others @ c).min()) + 1e-9 * abs(float(c @ solution))
    assert checked > 60 and calls["barrier"] > 0


def test_backward_clips_shared_gradient_and_weights_heads():
    problem = make_tiny_problem(2, seed=3)
    model = problem.model
    method = create("nash_mtl", 2, max_norm=0.05)
    losses = problem.losses()
    heads = model.task_parameters()
    plain = [torch.autograd.grad(losses[i], heads[i], retain_graph=True) for i in range(2)]
    result = method.backward(losses, model.shared_parameters(), task_parameters=heads)
    shared_norm = torch.sqrt(sum((p.grad**2).sum() for p in model.shared_parameters()))
    assert float(shared_norm) <= 0.05 * (1 + 1e-5)
    assert result.info["shared_grad_norm"] > 0.05  # it was clipped
    for i in range(2):
        for p, g in zip(heads[i], plain[i], strict=True):
            torch.testing.assert_close(p.grad, result.weights[i] * g)

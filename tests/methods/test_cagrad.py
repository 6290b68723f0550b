"""CAGrad (Liu et al. 2021): c = 0, the trust region, 000's Proposition 1 and dual/primal optimality."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mtlbench.errors import UserInputError
from mtlbench.methods import aggregate, create
from mtlbench.methods.solvers_qp import _cagrad_two, cagrad_weights


def _gradients(n: int, seed: int, d: int = 12) -> torch.Tensor:
    g = torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return g * torch.linspace(0.5, 3.0, n, dtype=torch.float64)[:, None]


@pytest.mark.parametrize("n", [2, 3, 5])
def test_c_zero_is_the_sum(n):
    g = _gradients(n, seed=n)
    for rescale in (0, 1, 2):
        result = aggregate("cagrad", g, c=0.0, rescale=rescale)
        torch.testing.assert_close(result.weights, torch.ones(n, dtype=g.dtype))
        torch.testing.assert_close(result.direction, g.sum(0))


@pytest.mark.parametrize(("n", "c"), [(2, 0.2), (2, 0.8), (3, 0.5), (4, 0.9)])
def test_trust_region_boundary_and_rescale(n, c):
    g = _gradients(n, seed=10 + n)
    g0 = g.mean(0)
    raw = aggregate("cagrad", g, c=c, rescale=0).direction / n  # reference scale, before rescaling
    assert float((raw - g0).norm()) <= c * float(g0.norm()) * (1 + 1e-9)
    assert float((raw - g0).norm()) == pytest.approx(c * float(g0.norm()), rel=1e-9)  # on the boundary
    for rescale, divisor in ((1, 1 + c**2), (2, 1 + c)):
        scaled = aggregate("cagrad", g, c=c, rescale=rescale)
        torch.testing.assert_close(scaled.direction * divisor, raw * n)
        # weights are the coefficients before the rescale and reproduce the raw direction
        torch.testing.assert_close(scaled.weights @ g, raw * n)


@pytest.mark.parametrize("c", [0.2, 0.5, 0.8])
def test_proposition_1_equal_norms_give_equal_weights(c):
    g = _gradients(2, seed=3)
    g = g / g.norm(dim=1, keepdim=True) * 2.5  # ||g1|| = ||g2||, arbitrary angle
    result = aggregate("cagrad", g, c=c, rescale=0)
    # 000 Prop. 1: w* = (1/2, 1/2), g_w = g_0, d = (1 + c) g_0, i.e. coefficients (1 + c) each (sum scale)
    torch.testing.assert_close(result.weights, torch.full((2,), 1 + c, dtype=g.dtype))
    torch.testing.assert_close(result.direction, (1 + c) * g.sum(0))


def _dual_objective(K: np.ndarray, W: np.ndarray, c: float) -> np.ndarray:
    """CAGrad's dual objective for each row of ``W`` (points of the simplex)."""
    n = K.shape[0]
    b = np.full(n, 1.0 / n)
    W = np.atleast_2d(W)
    quadratic = np.clip(np.einsum("ki,ij,kj->k", W, K, W), 0.0, None)
    return W @ K @ b + c * math.sqrt(b @ K @ b) * np.sqrt(quadratic)


@pytest.mark.parametrize(("n", "c"), [(2, 0.5), (3, 0.5), (4, 0.2), (5, 0.8)])
def test_dual_optimality_against_random_simplex_points(n, c):
    rng = np.random.default_rng(n)
    g = rng.normal(size=(n, 9)) * rng.uniform(0.2, 4.0, size=(n, 1))
    K = g @ g.T
    w = cagrad_weights(K, c)
    assert w.min() >= 0 and w.sum() == pytest.approx(1.0)
    best = float(_dual_objective(K, w, c)[0])
    others = np.vstack([rng.dirichlet(np.ones(n), size=20000), np.eye(n)])
    assert best <= float(_dual_objective(K, others, c).min()) + 1e-9 * abs(best) + 1e-12


@pytest.mark.parametrize(("n", "c"), [(2, 0.4), (3, 0.5), (4, 0.7)])
def test_primal_direction_maximises_the_worst_improvement_in_the_ball(n, c):
    g = _gradients(n, seed=20 + n)
    g[0] = -0.7 * g[1] + 0.3 * g[0]  # a conflict
    g0 = g.mean(0)
    d = aggregate("cagrad", g, c=c, rescale=0).direction / n
    worst = float((g @ d).min())
    rng = torch.Generator().manual_seed(1)
    u = torch.randn(20000, g.shape[1], generator=rng, dtype=g.dtype)
    radius = c * g0.norm() * torch.rand(20000, 1, generator=rng, dtype=g.dtype) ** (1 / g.shape[1])
    others = g0 + radius * u / u.norm(dim=1, keepdim=True)
    assert worst >= float((others @ g.T).min(dim=1).values.max()) - 1e-9 * abs(worst)


def test_two_task_closed_form_matches_a_fine_search():
    rng = np.random.default_rng(7)
    for _ in range(50):
        g = rng.normal(size=(2, 5)) * rng.uniform(0.1, 5.0, size=(2, 1))
        K = g @ g.T
        K = K / np.trace(K)
        c = float(rng.uniform(0.0, 0.99))
        x = _cagrad_two(K, c)
        grid = np.linspace(0, 1, 20001)
        values = _dual_objective(K, np.stack([grid, 1 - grid], axis=1), c)
        assert float(_dual_objective(K, np.array([x, 1 - x]), c)[0]) <= float(values.min()) + 1e-12


def test_bad_hyperparameters_are_one_line_errors():
    with pytest.raises(UserInputError, match=r"c=1\.0"):
        create("cagrad", 2, c=1.0)
    with pytest.raises(UserInputError, match="rescale"):
        create("cagrad", 2, rescale=3)
    assert create("cagrad", 2).grid("cityscapes") == {"c": [0.2, 0.5, 0.8]}

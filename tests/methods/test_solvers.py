"""The shared solvers: min-norm point in the convex hull (closed form, exact for T > 2), simplex projection."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import minimize

from mtlbench.methods.solvers import gram, min_norm_2, min_norm_weights, project_simplex, randperm, uniform


def _kkt_gap(G: torch.Tensor, w: torch.Tensor) -> tuple[float, float]:
    """(max violation of (G w)_i >= w^T G w, max |(G w)_i - w^T G w| on the support), relative to max G_ii."""
    G, w = G.double(), w.double()
    grad = G @ w
    value = w @ grad
    scale = float(G.diagonal().max())
    violation = float((value - grad).max()) / scale
    support = w > 1e-9
    slack = float((grad[support] - value).abs().max()) / scale
    return violation, slack


@pytest.mark.parametrize("seed", range(6))
def test_two_tasks_closed_form_matches_a_fine_grid(seed):
    g = torch.randn(2, 5, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    g[1] *= 0.2 + seed  # includes cases where one vertex is the optimum
    if seed == 5:
        g[1] = -3.0 * g[0]  # opposite gradients: the minimum is the zero vector inside the segment
    w = min_norm_weights(gram(g))
    gammas = torch.linspace(0, 1, 100_001, dtype=torch.float64)
    values = ((gammas[:, None] * g[0] + (1 - gammas[:, None]) * g[1]) ** 2).sum(dim=1)
    best = gammas[values.argmin()]
    assert abs(float(w[0]) - float(best)) < 2e-5
    assert float(w.sum()) == pytest.approx(1.0)
    gamma = min_norm_2(*(float(v) for v in gram(g)[[0, 0, 1], [0, 1, 1]]))
    assert gamma == pytest.approx(float(w[0]))


@pytest.mark.parametrize("n_tasks,dim", [(3, 5), (4, 3), (6, 20), (11, 8)])
def test_many_tasks_satisfy_kkt_and_match_scipy(n_tasks, dim):
    generator = torch.Generator().manual_seed(n_tasks * 100 + dim)
    for trial in range(5):
        g = torch.randn(n_tasks, dim, generator=generator, dtype=torch.float64)
        g = g * torch.rand(n_tasks, 1, generator=generator, dtype=torch.float64) * 4 + (trial % 2) * 0.5
        G = gram(g)
        w = min_norm_weights(G)
        assert bool((w >= 0).all()) and float(w.sum()) == pytest.approx(1.0, abs=1e-12)
        violation, slack = _kkt_gap(G, w)
        assert violation < 1e-9 and slack < 1e-9
        Gn = G.numpy()
        result = minimize(
            lambda x, Gn=Gn: x @ Gn @ x,
            np.full(n_tasks, 1.0 / n_tasks),
            jac=lambda x, Gn=Gn: 2 * Gn @ x,
            bounds=[(0, 1)] * n_tasks,
            constraints=[{"type": "eq", "fun": lambda x: x.sum() - 1}],
            method="SLSQP",
            options={"ftol": 1e-15, "maxiter": 500},
        )
        assert float(w @ G @ w) <= result.fun + 1e-9 * float(G.diagonal().max())


def test_degenerate_inputs_give_simplex_points():
    generator = torch.Generator().manual_seed(0)
    row = torch.randn(1, 7, generator=generator, dtype=torch.float64)
    rank_deficient = torch.randn(5, 2, generator=generator, dtype=torch.float64)  # T > D
    for G in (gram(row.repeat(4, 1)), torch.zeros(3, 3, dtype=torch.float64), gram(rank_deficient)):
        w = min_norm_weights(G)
        assert bool(torch.isfinite(w).all()) and bool((w >= 0).all())
        assert float(w.sum()) == pytest.approx(1.0)
        if float(G.abs().max()) > 0:
            assert _kkt_gap(G, w)[0] < 1e-9
    # a float32 Gram matrix of rank-deficient gradients is only PSD up to rounding: optimal to that level
    G32 = gram(rank_deficient.float())
    assert _kkt_gap(G32, min_norm_weights(G32))[0] < 1e-6
    assert min_norm_weights(torch.ones(1, 1)).tolist() == [1.0]


def test_min_norm_keeps_dtype_and_rejects_non_square():
    assert min_norm_weights(gram(torch.randn(3, 4)).float()).dtype == torch.float32
    with pytest.raises(ValueError):
        min_norm_weights(torch.ones(2, 3))


def test_project_simplex_is_the_euclidean_projection():
    generator = torch.Generator().manual_seed(0)
    for _ in range(20):
        v = torch.randn(5, generator=generator, dtype=torch.float64) * 3
        x = project_simplex(v)
        assert bool((x >= 0).all()) and float(x.sum()) == pytest.approx(1.0)
        # variational inequality of the projection: (v - x) . (y - x) <= 0 for every vertex y
        for vertex in torch.eye(5, dtype=torch.float64):
            assert float((v - x) @ (vertex - x)) <= 1e-12
    inside = torch.tensor([0.2, 0.3, 0.5])
    assert torch.allclose(project_simplex(inside), inside)
    assert float(project_simplex(torch.tensor([1.0, 2.0]), total=3.0).sum()) == pytest.approx(3.0)


def test_random_draws_follow_the_generator():
    like = torch.zeros(3)
    a = uniform((4, 2), torch.Generator().manual_seed(3), like)
    b = uniform((4, 2), torch.Generator().manual_seed(3), like)
    assert torch.equal(a, b) and bool(((a >= 0) & (a < 1)).all())
    assert randperm(6, torch.Generator().manual_seed(1)) == randperm(6, torch.Generator().manual_seed(1))
    assert sorted(randperm(6, None)) == list(range(6))

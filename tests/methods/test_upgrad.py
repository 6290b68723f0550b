"""UPGrad (Quinton & Rey 2024): non-conflicting result, the mean (sum scale) without conflict, the dual-cone QP."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mtlbench.methods import aggregate
from mtlbench.methods.solvers_qp import dual_cone_weights


def _conflicting(n: int, seed: int, d: int = 10) -> torch.Tensor:
    g = torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    g[1] = -0.8 * g[0] + 0.2 * g[1]
    return g * torch.linspace(0.5, 3.0, n, dtype=torch.float64)[:, None]


@pytest.mark.parametrize("n", [2, 3, 5])
def test_result_does_not_conflict_with_any_gradient(n):
    g = _conflicting(n, seed=n)
    assert float((g @ g.sum(0)).min()) < 0 or float((g @ g.T).min()) < 0  # there is a conflict
    exact = aggregate("upgrad", g, reg_eps=0.0)
    assert float((g @ exact.direction).min()) >= -1e-10 * float(g.norm() * exact.direction.norm())
    regularised = aggregate("upgrad", g)  # TorchJD's defaults: up to the 1e-4 regularisation
    assert float((g @ regularised.direction).min()) >= -1e-3 * float(g.norm() * regularised.direction.norm())
    torch.testing.assert_close(regularised.weights @ g, regularised.direction)


def test_no_conflict_gives_the_sum():
    g = torch.rand(3, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)  # positive entries
    result = aggregate("upgrad", g)
    torch.testing.assert_close(result.weights, torch.ones(3, dtype=g.dtype))
    torch.testing.assert_close(result.direction, g.sum(0))


def test_two_tasks_match_the_projections_onto_the_normal_planes():
    g = _conflicting(2, seed=1)
    g1, g2 = g
    p1 = g1 - (g1 @ g2) / (g2 @ g2) * g2
    p2 = g2 - (g1 @ g2) / (g1 @ g1) * g1
    result = aggregate("upgrad", g, reg_eps=0.0)
    torch.testing.assert_close(result.direction, p1 + p2)


def test_dual_cone_qp_kkt_conditions():
    rng = np.random.default_rng(3)
    for n in (2, 4, 7):
        J = rng.normal(size=(n, 12))
        G = J @ J.T
        U = rng.normal(size=(n, n))
        V = dual_cone_weights(G, U)
        for u, v in zip(U, V, strict=True):
            multipliers = G @ v  # gradient of v^T G v / 2: the KKT multipliers of v >= u
            assert v.min() - u.min() >= -1e-12 and bool((v >= u - 1e-12).all())
            assert multipliers.min() >= -1e-9 * np.abs(multipliers).max()
            assert abs(float((v - u) @ multipliers)) <= 1e-9 * float(np.abs(v) @ np.abs(multipliers) + 1)

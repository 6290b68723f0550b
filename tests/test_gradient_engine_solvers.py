"""The fast exact solvers: CAGrad's active-set dual against SLSQP, and its optimality conditions."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.optimize import minimize

from mtlbench.methods.solvers_qp import _cagrad_active_set, _cagrad_kkt


def _slsqp(K: np.ndarray, a: np.ndarray, C: float) -> np.ndarray:
    n = K.shape[0]

    def objective(w: np.ndarray) -> tuple[float, np.ndarray]:
        Kw = K @ w
        norm = math.sqrt(max(float(w @ Kw), 0.0) + 1e-16)
        return float(w @ a) + C * norm, a + C * Kw / norm

    result = minimize(
        objective,
        np.full(n, 1.0 / n),
        jac=True,
        method="SLSQP",
        bounds=[(0.0, 1.0)] * n,
        constraints=({"type": "eq", "fun": lambda w: 1.0 - w.sum(), "jac": lambda w: -np.ones_like(w)},),
        options={"ftol": 1e-15, "maxiter": 500},
    )
    w = np.clip(result.x, 0.0, None)
    return w / w.sum()


def _dual(K: np.ndarray, a: np.ndarray, C: float, w: np.ndarray) -> float:
    return float(w @ a) + C * math.sqrt(float(w @ K @ w))


@pytest.mark.parametrize("seed", range(4))
def test_cagrad_active_set_is_optimal_and_never_worse_than_slsqp(seed):
    rng = np.random.default_rng(seed)
    faces = 0
    for _ in range(25):
        n = int(rng.integers(3, 12))
        g = rng.normal(size=(n, n + 5)) * rng.uniform(0.1, 5.0, size=(n, 1)) + rng.normal(size=(1, n + 5))
        K = g @ g.T
        K /= np.trace(K)
        b = np.full(n, 1.0 / n)
        a = K @ b
        C = rng.uniform(0.05, 0.95) * math.sqrt(float(b @ a))
        w = _cagrad_active_set(K, a, C)
        assert w is not None
        assert _cagrad_kkt(K, a, C, w)
        assert w.min() >= 0.0 and w.sum() == pytest.approx(1.0, abs=1e-12)
        assert _dual(K, a, C, w) <= _dual(K, a, C, _slsqp(K, a, C)) + 1e-12
        faces += int((w == 0).any())
    assert faces > 0  # some optima lie on a face of the simplex (a weight exactly 0)


def test_kkt_check_rejects_a_non_optimal_point():
    K = np.array([[1.0, 0.2, -0.3], [0.2, 0.5, 0.1], [-0.3, 0.1, 0.8]])
    a = K @ np.full(3, 1 / 3)
    assert not _cagrad_kkt(K, a, 0.2, np.full(3, 1 / 3) + np.array([0.1, -0.05, -0.05]))

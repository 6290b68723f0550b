"""The min-norm solver (MGDA, MGDA-UB, CAGrad's inner problem) is scale-free: optimal at any Gram scale.

Regression for issue 12, item 1: Wolfe's affine step accepted the exact KKT solve only below an
absolute residual, so large Gram entries (MGDA's ``loss+`` normalisation once the losses are small)
sent it cycling to the iteration cap at a non-optimal vertex.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

import mtlbench.methods as methods
from mtlbench.methods.solvers import _scaled, _wolfe, min_norm_weights

# The audit's fixture: normalised gradients V (rows), losses 1 / ||V_i||, g_i = V_i / ||V_i|| * scale_i.
V = np.array(
    [
        [1510.5724767089173, -4954.925009898778, -674.6161025971121, -2829.8647547439264, 181.39601823835602],
        [1344.77829979435, -4128.418202797489, 211.57178663294576, -3339.672865679511, 365.29573023729694],
        [1373.8368797427222, -4026.9720628515583, -897.7265889751664, -3263.261593147074, 752.599721418486],
        [-1367.0573183895717, -4072.798608173186, -1117.6181972534528, -2745.5069548987476, 2224.31648156427],
    ]
)
SCALES = np.array([3.0, 0.5, 1.0, 2.0])


def _exhaustive_min_norm(G: np.ndarray) -> tuple[np.ndarray, float]:
    """The min-norm point by enumerating every support (affine minimiser, kept if inside the simplex)."""
    n = G.shape[0]
    best_w, best = np.full(n, np.nan), np.inf
    for k in range(1, n + 1):
        for support in itertools.combinations(range(n), k):
            S = list(support)
            system = np.zeros((k + 1, k + 1))
            system[:k, :k], system[:k, k], system[k, :k] = G[np.ix_(S, S)], 1.0, 1.0
            mu = np.linalg.solve(system, np.r_[np.zeros(k), 1.0])[:k]
            if (mu >= 0).all():
                w = np.zeros(n)
                w[S] = mu
                if w @ G @ w < best:
                    best_w, best = w, float(w @ G @ w)
    return best_w, best


def _certificate(G: np.ndarray, w: np.ndarray, rtol: float = 1e-9) -> tuple[float, float]:
    """KKT certificate of the min-norm point: ``min_j (G w)_j >= w'Gw (1 - rtol)``, equality on the support.

    Returns (violation of the inequality, largest gap on the support), both relative to ``w'Gw``.
    """
    products = G @ w
    value = float(w @ products)
    violation = max(0.0, (value - float(products.min())) / value)
    support = w > 0
    gap = float(np.abs(products[support] - value).max()) / value
    return violation, gap


def test_audit_fixture_gives_the_min_norm_point():
    norms = np.linalg.norm(V, axis=1)
    g = torch.from_numpy(V / norms[:, None] * SCALES[:, None])
    losses = torch.from_numpy(1.0 / norms)
    result = methods.aggregate("mgda", g, losses=losses, direction="raw")  # weights = alpha
    alpha = result.weights.numpy()
    G = V @ V.T  # the loss+ normalised Gram matrix: g_i / (L_i ||g_i||) = V_i
    expected, best = _exhaustive_min_norm(G)
    np.testing.assert_allclose(expected, [0.0, 0.5775972738, 0.0, 0.4224027262], atol=1e-9)
    assert best == pytest.approx(2.7876346378e7, rel=1e-9)
    np.testing.assert_allclose(alpha, expected, atol=1e-9)
    assert float(alpha @ G @ alpha) == pytest.approx(best, rel=1e-12)
    violation, gap = _certificate(G, alpha)
    assert violation <= 1e-9 and gap <= 1e-9


def _gradients(n_tasks: int, seed: int) -> np.ndarray:
    """Gradients with a common component (the hull keeps away from 0), different norms, some conflict."""
    rng = np.random.default_rng(seed)
    dim = n_tasks + 3
    common = rng.normal(size=dim)
    g = 0.8 * common + rng.normal(size=(n_tasks, dim))
    return g * rng.uniform(0.2, 5.0, size=(n_tasks, 1))


@pytest.mark.parametrize("n_tasks", range(3, 12))
def test_kkt_certificate_in_float64_at_every_gram_scale(n_tasks):
    for seed in range(3):
        g = _gradients(n_tasks, 1000 * n_tasks + seed)
        base = g @ g.T
        reference = None
        for scale in (1e-12, 1e-8, 1e-4, 1.0, 1e4, 1e8, 1e12):
            G = base * scale
            w = min_norm_weights(torch.from_numpy(G)).numpy()
            assert (w >= 0).all() and abs(w.sum() - 1.0) <= 1e-12
            violation, gap = _certificate(G, w)
            assert violation <= 1e-9 and gap <= 1e-9, (n_tasks, seed, scale, violation, gap)
            if reference is None:
                reference = w
            np.testing.assert_allclose(w, reference, atol=1e-9)  # the weights do not depend on the scale


def test_wolfe_fallback_is_scale_free_too():
    """Wolfe's algorithm (the fallback where the NNLS point fails its certificate) on the fixture and scales."""
    G = V @ V.T
    w = _wolfe(_scaled(G))
    np.testing.assert_allclose(w, _exhaustive_min_norm(G)[0], atol=1e-9)
    for n_tasks in (3, 7, 11):
        g = _gradients(n_tasks, n_tasks)
        for scale in (1e-12, 1.0, 1e12):
            G = g @ g.T * scale
            violation, gap = _certificate(G, _wolfe(_scaled(G)))
            assert violation <= 1e-9 and gap <= 1e-9

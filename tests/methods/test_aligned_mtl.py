"""Aligned-MTL (Senushkin et al. 2023): the aligned gradients' Gram matrix is a multiple of the identity."""

from __future__ import annotations

import pytest
import torch

from mtlbench.methods import aggregate
from mtlbench.methods.aligned_mtl import alignment_matrix


def _gradients(n: int, seed: int, d: int = 15) -> torch.Tensor:
    g = torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return g * torch.linspace(0.2, 4.0, n, dtype=torch.float64)[:, None]


@pytest.mark.parametrize("n", [2, 3, 6])
def test_aligned_gram_is_a_multiple_of_identity(n):
    g = _gradients(n, seed=n)
    K = g @ g.T
    W, eigenvalues = alignment_matrix(K, "min", torch.finfo(torch.float32).eps)
    aligned = W.T @ g  # rows: aligned gradients g_hat_j = sum_i W_ij g_i
    gram = aligned @ aligned.T
    torch.testing.assert_close(gram, float(eigenvalues[-1]) * torch.eye(n, dtype=g.dtype))
    result = aggregate("aligned_mtl", g)
    torch.testing.assert_close(result.direction, aligned.sum(0))  # the update is their sum
    torch.testing.assert_close(result.weights @ g, result.direction)
    assert result.info["condition_number"] == pytest.approx(float(eigenvalues[0] / eigenvalues[-1]))


@pytest.mark.parametrize(("mode", "scale"), [("median", "median"), ("rmse", "mean")])
def test_scale_modes(mode, scale):
    g = _gradients(3, seed=4)
    eigenvalues = torch.linalg.eigvalsh(g @ g.T)
    sigma2 = float(torch.median(eigenvalues) if scale == "median" else eigenvalues.mean())
    W, _ = alignment_matrix(g @ g.T, mode)
    aligned = W.T @ g
    torch.testing.assert_close(aligned @ aligned.T, sigma2 * torch.eye(3, dtype=g.dtype))


def test_orthogonal_equal_norms_are_left_alone():
    g = torch.zeros(3, 5, dtype=torch.float64)
    g[0, 0], g[1, 2], g[2, 4] = 2.0, -2.0, 2.0
    result = aggregate("aligned_mtl", g)
    torch.testing.assert_close(result.weights, torch.ones(3, dtype=g.dtype))
    torch.testing.assert_close(result.direction, g.sum(0))


def test_rank_deficient_gradients():
    g = _gradients(2, seed=9)
    g = torch.cat([g, (g[0] + g[1]).unsqueeze(0)])  # g3 = g1 + g2: rank 2
    result = aggregate("aligned_mtl", g)
    assert result.info["rank"] == 2
    assert bool(torch.isfinite(result.weights).all())
    W, eigenvalues = alignment_matrix(g @ g.T, "min")
    aligned = W.T @ g
    spectrum = torch.linalg.eigvalsh(aligned @ aligned.T)
    torch.testing.assert_close(spectrum, torch.tensor([0.0, 1.0, 1.0], dtype=g.dtype) * eigenvalues[-1])


def test_zero_gradients_give_zero_direction():
    result = aggregate("aligned_mtl", torch.zeros(2, 4))
    assert bool((result.direction == 0).all()) and bool(torch.isfinite(result.weights).all())

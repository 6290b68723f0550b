"""UPGrad's fallback for small gradients (TorchJD's ``norm_eps``) is an option: the plain sum or a projection."""

from __future__ import annotations

import torch

from mtlbench.methods import aggregate


def _conflicting(scale: float) -> torch.Tensor:
    g = torch.randn(3, 8, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    g[1] = -0.9 * g[0] + 0.1 * g[1]  # g0 and g1 conflict
    return scale * g


def test_small_gradients_give_the_plain_sum_by_default_as_torchjd():
    g = _conflicting(1e-3)
    assert float((g * g).sum()) < 1e-4  # trace of the Gram matrix below norm_eps
    result = aggregate("upgrad", g)
    torch.testing.assert_close(result.weights, torch.ones(3, dtype=g.dtype))
    torch.testing.assert_close(result.direction, g.sum(0))
    assert float((g @ result.direction).min()) < 0  # the sum conflicts: nothing was projected


def test_small_gram_project_is_scale_free():
    g = _conflicting(1.0)
    assert float((g * g).sum()) > 1e-4
    large = aggregate("upgrad", g)
    for scale in (1e-3, 1e-9):
        small = aggregate("upgrad", scale * g, small_gram="project")
        torch.testing.assert_close(small.weights, large.weights, rtol=1e-9, atol=1e-12)
        assert float((g @ small.direction).min()) >= -1e-3 * float(g.norm() * small.direction.norm())


def test_zero_gradients_give_a_zero_direction_with_either_option():
    for option in ("sum", "project"):
        for norm_eps in (1e-4, 0.0):
            result = aggregate("upgrad", torch.zeros(3, 5), small_gram=option, norm_eps=norm_eps)
            assert bool(torch.isfinite(result.weights).all()) and bool((result.direction == 0).all())

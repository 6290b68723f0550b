"""EDM (Katrutsa et al. 2020): equal angles, 000 Proposition 4, weights gamma w_i / ||g_i||."""

from __future__ import annotations

import pytest
import torch

import mtlbench.methods as methods


def _cosines(g: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    return (g @ d) / (g.norm(dim=1) * d.norm())


@pytest.mark.parametrize("seed", range(5))
def test_two_tasks_equal_angles_and_the_closed_form_of_proposition_4(seed):
    generator = torch.Generator().manual_seed(seed)
    g = torch.randn(2, 7, generator=generator, dtype=torch.float64)
    g[1] *= 0.1 + 5 * seed
    result = methods.aggregate("edm", g)
    cosines = _cosines(g, result.direction)
    assert float(cosines[0]) == pytest.approx(float(cosines[1]), abs=1e-12)
    norms = g.norm(dim=1)
    expected = (g / norms[:, None]).sum(dim=0) / (1 / norms).sum()
    assert torch.allclose(result.direction, expected, atol=1e-12)
    assert torch.allclose(result.weights, (1 / norms) / (1 / norms).sum(), atol=1e-12)
    assert torch.allclose(result.weights @ g, result.direction, atol=1e-12)


def test_equal_norms_give_equal_weights_and_the_mean():
    g = torch.randn(2, 9, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    g = 2.5 * g / g.norm(dim=1, keepdim=True)
    result = methods.aggregate("edm", g)
    assert torch.allclose(result.weights, torch.full((2,), 0.5, dtype=torch.float64))
    assert torch.allclose(result.direction, g.mean(dim=0))


def test_many_tasks_equal_angles_when_all_weights_are_positive_and_agree_with_imtl_g():
    generator = torch.Generator().manual_seed(3)
    checked = 0
    for _ in range(10):
        g = torch.randn(4, 12, generator=generator, dtype=torch.float64) + 0.8  # mostly agreeing tasks
        g = g * (torch.rand(4, 1, generator=generator, dtype=torch.float64) * 5 + 0.1)
        result = methods.aggregate("edm", g)
        assert float(result.weights.sum()) == pytest.approx(1.0)
        if bool((result.weights > 1e-9).all()):
            cosines = _cosines(g, result.direction)
            assert torch.allclose(cosines, cosines[0].expand(4), atol=1e-10)
            # the affine combination with equal projections is unique: IMTL-G finds the same one
            imtl = methods.aggregate("imtl_g", g, eps=0.0)
            assert torch.allclose(imtl.weights, result.weights, atol=1e-8)
            checked += 1
    assert checked >= 3


def test_zero_gradient_gives_no_shared_update():
    g = torch.randn(3, 5)
    g[1] = 0
    result = methods.aggregate("edm", g)
    assert torch.equal(result.direction, torch.zeros(5)) and result.info["count_solver_fallback"] == 1

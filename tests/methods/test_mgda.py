"""MGDA and MGDA-UB (Sener & Koltun 2018): min-norm weights, normalisations, reported coefficients."""

from __future__ import annotations

import itertools

import pytest
import torch

import mtlbench.methods as methods
from mtlbench.errors import UserInputError
from mtlbench.methods import MethodKind


def _simplex_grid(n_tasks: int, steps: int) -> torch.Tensor:
    points = [
        [a / steps for a in combo] + [1 - sum(combo) / steps]
        for combo in itertools.product(range(steps + 1), repeat=n_tasks - 1)
        if sum(combo) <= steps
    ]
    return torch.tensor(points, dtype=torch.float64)


@pytest.mark.parametrize("n_tasks,steps", [(2, 20_000), (3, 300)])
def test_min_norm_point_matches_brute_force_and_kkt(n_tasks, steps):
    generator = torch.Generator().manual_seed(n_tasks)
    grid = _simplex_grid(n_tasks, steps)
    for _ in range(3):
        g = torch.randn(n_tasks, 6, generator=generator, dtype=torch.float64)
        g = g * (torch.rand(n_tasks, 1, generator=generator, dtype=torch.float64) * 3 + 0.1)
        result = methods.aggregate("mgda", g, normalize="none", direction="raw")
        alpha = result.weights
        G = g @ g.T
        best = ((grid @ G) * grid).sum(dim=1).min()
        value = alpha @ G @ alpha
        assert float(value) <= float(best) + 1e-12
        assert float(value) >= float(best) - 1e-3 * float(G.diagonal().max())  # the grid is near-optimal too
        # KKT: every task's gradient has a projection on d of at least ||d||^2 (equality on the support)
        d = result.direction
        assert torch.allclose(d, alpha @ g)
        products = g @ d
        assert bool((products >= d @ d - 1e-10).all())
        assert torch.allclose(products[alpha > 1e-9], (d @ d).expand(int((alpha > 1e-9).sum())), atol=1e-10)


def test_loss_plus_normalisation_and_reported_coefficients():
    generator = torch.Generator().manual_seed(1)
    g = torch.randn(3, 8, generator=generator, dtype=torch.float64)
    losses = torch.tensor([0.5, 2.0, 1.3], dtype=torch.float64)
    normalizers = losses * g.norm(dim=1)
    g_tilde = g / normalizers[:, None]
    alpha = methods.aggregate("mgda", g_tilde, normalize="none", direction="raw").weights
    result = methods.aggregate("mgda", g, losses=losses)  # defaults: loss+, normalised direction
    assert torch.allclose(result.direction, alpha @ g_tilde, atol=1e-12)
    assert torch.allclose(result.weights, alpha / normalizers, atol=1e-12)
    assert torch.allclose(result.weights @ g, result.direction, atol=1e-12)
    raw = methods.aggregate("mgda", g, losses=losses, direction="raw")
    assert torch.allclose(raw.weights, alpha, atol=1e-12) and float(raw.weights.sum()) == pytest.approx(1.0)
    for kind, scale in (("l2", g.norm(dim=1)), ("loss", losses)):
        expected = methods.aggregate("mgda", g / scale[:, None], normalize="none", direction="raw").weights
        assert torch.allclose(methods.aggregate("mgda", g, losses=losses, normalize=kind).weights * scale, expected)


def test_l2_normalised_direction_ignores_gradient_scales():
    g = torch.randn(3, 5, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    scaled = g * torch.tensor([[10.0], [0.1], [3.0]], dtype=torch.float64)
    a = methods.aggregate("mgda", g, normalize="l2").direction
    b = methods.aggregate("mgda", scaled, normalize="l2").direction
    assert torch.allclose(a, b, atol=1e-12)


def test_zero_loss_leaves_gradient_unscaled_and_bad_losses_are_rejected():
    g = torch.randn(2, 4, dtype=torch.float64)
    zero = methods.aggregate("mgda", g, losses=torch.tensor([0.0, 1.0]), normalize="loss")
    plain = methods.aggregate("mgda", g, normalize="none")
    assert torch.allclose(zero.direction, plain.direction)
    with pytest.raises(UserInputError, match="losses"):
        methods.aggregate("mgda", g)  # loss+ needs the losses
    with pytest.raises(UserInputError, match="non-negative"):
        methods.aggregate("mgda", g, losses=torch.tensor([-1.0, 1.0]))
    with pytest.raises(UserInputError, match="normalize"):
        methods.create("mgda", 2, normalize="sigmoid")


def test_mgda_ub_defaults_follow_the_reference():
    cls = methods.get("mgda_ub")
    assert cls.kind is MethodKind.REPRESENTATION and methods.get("mgda").kind is MethodKind.PARAMETERS
    hparams = cls.validate({})
    assert hparams == {"normalize": "loss+", "direction": "raw", "space": "representation"}
    g = torch.randn(3, 10, dtype=torch.float64)
    result = methods.aggregate("mgda_ub", g, losses=torch.tensor([1.0, 2.0, 3.0]))
    assert float(result.weights.sum()) == pytest.approx(1.0)
    assert torch.allclose(result.weights @ g, result.direction)

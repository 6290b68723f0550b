"""GradDrop (Chen et al. 2020): sign-purity masks, leak, batch-summed input-signed purity, generator."""

from __future__ import annotations

import pytest
import torch

import mtlbench.methods as methods


def _run(g, seed=0, **kwargs):
    kwargs.setdefault("renormalize", False)
    return methods.aggregate("graddrop", g, generator=torch.Generator().manual_seed(seed), **kwargs).direction


def test_pure_sign_coordinates_are_kept_and_mixed_ones_keep_one_sign():
    generator = torch.Generator().manual_seed(0)
    g = torch.randn(3, 300, generator=generator, dtype=torch.float64)
    g[:, :50] = g[:, :50].abs()  # all positive
    g[:, 50:100] = -g[:, 50:100].abs()  # all negative
    d = _run(g, space="parameters")
    assert torch.allclose(d[:100], g[:, :100].sum(dim=0))
    positive_part = g.clamp_min(0).sum(dim=0)
    negative_part = g.clamp_max(0).sum(dim=0)
    is_positive = torch.isclose(d, positive_part)
    is_negative = torch.isclose(d, negative_part)
    assert bool((is_positive | is_negative).all())
    mixed = (g > 0).any(dim=0) & (g < 0).any(dim=0)
    assert bool(is_positive[mixed].any()) and bool(is_negative[mixed].any())


def test_positive_sign_is_kept_with_probability_the_sign_purity():
    n = 4000
    g = torch.stack([torch.full((n,), 3.0), torch.full((n,), -1.0)])  # P = (1 + 2/4) / 2 = 0.75
    d = _run(g, seed=1, space="parameters")
    kept_positive = float((d == 3.0).double().mean())
    assert float(((d == 3.0) | (d == -1.0)).double().mean()) == 1.0
    assert kept_positive == pytest.approx(0.75, abs=0.04)  # about 5 standard deviations
    steep = _run(g, seed=1, space="parameters", k=2.0)  # P = 0.5 + 2 * 0.25 = 1: always positive
    assert bool((steep == 3.0).all())
    random_drop = _run(g, seed=2, space="parameters", use_sign=False, p=0.3)
    assert float((random_drop == 2.0).double().mean()) == pytest.approx(0.7 * 0.7, abs=0.04)


def test_leak_and_renormalisation():
    g = torch.randn(3, 50, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    pure = _run(g, seed=5, space="parameters")
    half = _run(g, seed=5, space="parameters", leak=0.5)
    assert torch.allclose(half, 0.5 * g.sum(dim=0) + 0.5 * pure)
    assert torch.allclose(_run(g, seed=5, space="parameters", leak=1.0), g.sum(dim=0))
    scaled = _run(g, seed=5, space="parameters", renormalize=True)
    assert float(scaled.norm()) == pytest.approx(float(g.sum(dim=0).norm()), rel=1e-6)
    assert torch.allclose(scaled / scaled.norm(), pure / pure.norm())


def test_representation_purity_uses_input_signs_summed_over_the_batch():
    generator = torch.Generator().manual_seed(4)
    batch, width = 5, 40
    features = torch.randn(batch, width, generator=generator, dtype=torch.float64)
    g = torch.randn(2, batch * width, generator=generator, dtype=torch.float64)
    d = _run(g, seed=9, features=features).view(batch, width)
    grads = g.view(2, batch, width)
    # each column keeps, for every sample, the tasks on one side of the sign of G_i = sum_b g_ib sign(z_b)
    signed = (grads * features.sign()).sum(dim=1)
    keep_positive = torch.isclose(d, (grads * (signed >= 0).unsqueeze(1)).sum(dim=0)).all(dim=0)
    keep_negative = torch.isclose(d, (grads * (signed <= 0).unsqueeze(1)).sum(dim=0)).all(dim=0)
    assert bool((keep_positive | keep_negative).all())
    # flipping a sample's activation and gradient signs together leaves G (so the masks) unchanged
    flipped_features, flipped = features.clone(), grads.clone()
    flipped_features[2] *= -1
    flipped[:, 2] *= -1
    e = _run(flipped.reshape(2, -1), seed=9, features=flipped_features).view(batch, width)
    assert torch.allclose(e[2], -d[2]) and torch.allclose(e[[0, 1, 3, 4]], d[[0, 1, 3, 4]])


def test_randomness_comes_from_the_generator():
    g = torch.randn(3, 200, generator=torch.Generator().manual_seed(6))
    assert torch.equal(_run(g, seed=11), _run(g, seed=11))
    assert not torch.equal(_run(g, seed=11), _run(g, seed=12))
    assert methods.get("graddrop").randomized and methods.aggregate("graddrop", g).weights is None

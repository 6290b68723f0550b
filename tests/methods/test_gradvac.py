"""GradVac (Wang et al. 2021): the adjustment reaches the target cosine, EMA of the targets, PCGrad at zero targets."""

from __future__ import annotations

import pytest
import torch

from mtlbench.methods import aggregate, create
from mtlbench.methods.gradvac import vaccine_coefficients


def _cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(a @ b / (a.norm() * b.norm()))


def _pair(cosine: float, norms: tuple[float, float] = (1.0, 3.0)) -> torch.Tensor:
    angle = torch.arccos(torch.tensor(cosine, dtype=torch.float64))
    g = torch.zeros(2, 4, dtype=torch.float64)
    g[0, 0] = norms[0]
    g[1, 0], g[1, 1] = norms[1] * torch.cos(angle), norms[1] * torch.sin(angle)
    return g


@pytest.mark.parametrize(("cosine", "target"), [(-0.3, 0.4), (0.1, 0.5), (-0.9, 0.0)])
def test_adjustment_reaches_the_target_cosine(cosine, target):
    g = _pair(cosine)
    targets = torch.full((2, 2), target, dtype=torch.float64)
    C, new_targets = vaccine_coefficients(g @ g.T, targets, 0.5, [[1], [0]])
    adjusted = C[0] @ g
    assert _cosine(adjusted, g[1]) == pytest.approx(target, abs=1e-7)  # eps 1e-8 in the denominators
    assert _cosine(C[1] @ g, g[0]) == pytest.approx(target, abs=1e-7)  # eps 1e-8 in the denominators
    torch.testing.assert_close(new_targets[0, 1], torch.tensor(0.5 * target + 0.5 * cosine, dtype=torch.float64))


def test_no_adjustment_above_target_and_ema_rules():
    g = _pair(0.6)
    targets = torch.full((2, 2), 0.2, dtype=torch.float64)
    C, always = vaccine_coefficients(g @ g.T, targets, 0.25, [[1], [0]], ema_always=True)
    torch.testing.assert_close(C, torch.eye(2, dtype=torch.float64))
    assert float(always[0, 1]) == pytest.approx(0.75 * 0.2 + 0.25 * 0.6)
    _, adjusted_only = vaccine_coefficients(g @ g.T, targets, 0.25, [[1], [0]], ema_always=False)
    assert float(adjusted_only[0, 1]) == pytest.approx(0.2)  # LibMTL: unchanged without an adjustment


def test_zero_targets_give_pcgrad_projections():
    g = _pair(-0.5)
    result = aggregate("gradvac", g, generator=torch.Generator().manual_seed(0))
    g1, g2 = g
    expected = (g1 - (g1 @ g2) / (g2 @ g2) * g2) + (g2 - (g1 @ g2) / (g1 @ g1) * g1)
    torch.testing.assert_close(result.direction, expected)
    torch.testing.assert_close(result.weights @ g, result.direction)
    # targets move halfway (beta 0.5) to the observed cosine
    torch.testing.assert_close(result.state, torch.tensor([[0.0, -0.25], [-0.25, 0.0]], dtype=torch.float64))


def test_state_and_generator_determinism():
    g = torch.randn(4, 9, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    method = create("gradvac", 4)
    runs = []
    for _ in range(2):
        state = method.initial_state()
        generator = torch.Generator().manual_seed(7)
        out = []
        for _ in range(3):
            result = method.combine(g, state=state, generator=generator)
            state = result.state
            out.append(result.weights)
        runs.append(torch.stack(out))
    torch.testing.assert_close(runs[0], runs[1])
    assert state.shape == (4, 4) and bool(torch.isfinite(state).all())

"""GradNorm (Chen et al. 2018): learned weights shrink the gap of weighted gradient norms to target."""

from __future__ import annotations

import torch

from mtlbench.methods import create


def _run(scales_after_first: torch.Tensor, steps: int = 300) -> tuple[list[float], torch.Tensor, torch.Tensor]:
    """A fixed problem: theta never moves; L_i = s_i ||theta - t_i||^2 with s = 1 at the first step."""
    torch.manual_seed(0)
    theta = torch.nn.Parameter(torch.randn(5))
    targets = torch.randn(3, 5)

    def losses(scales: torch.Tensor) -> torch.Tensor:
        return torch.stack([scales[i] * (theta - targets[i]).pow(2).sum() for i in range(3)])

    method = create("gradnorm", 3, lr=0.01, alpha=1.5)
    initial = losses(torch.ones(3)).detach()
    norms = torch.stack(
        [torch.autograd.grad(losses(scales_after_first)[i], theta)[0].norm() for i in range(3)]
    ).detach()
    ratio = losses(scales_after_first).detach() / initial
    target_shape = (ratio / ratio.mean()).pow(1.5)
    gaps = []
    for step in range(steps):
        theta.grad = None
        weights = method.backward(losses(torch.ones(3) if step == 0 else scales_after_first), [theta]).weights
        torch.testing.assert_close(weights.sum(), torch.tensor(3.0))
        if step > 0:
            g = weights * norms
            gaps.append(((g - g.mean() * target_shape).abs().sum() / g.mean()).item())
    weighted_norms = weights * norms
    return gaps, target_shape, weighted_norms / weighted_norms.mean()


def test_equal_training_rates_equalise_the_weighted_gradient_norms() -> None:
    gaps, _, weighted_norms = _run(torch.ones(3))
    assert gaps[0] > 0.3
    assert gaps[-1] < 0.03
    torch.testing.assert_close(weighted_norms, torch.ones(3), atol=0.02, rtol=0)


def test_gap_to_the_asymmetric_target_shrinks_to_its_l1_minimum() -> None:
    gaps, target_shape, _ = _run(torch.tensor([0.5, 2.0, 1.0]))
    # with mean(G) fixed, sum_i |G_i / G_bar - rho_i| >= |T - sum_i rho_i| (triangle inequality)
    floor = abs(3 - target_shape.sum().item())
    assert gaps[0] > floor + 0.3
    assert gaps[-1] < floor + 0.02
    assert sum(gaps[-20:]) < sum(gaps[:20])

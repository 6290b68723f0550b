"""UW-O (Elich et al., eq. 2): weights 1/L from the current losses, loss-scale invariance."""

from __future__ import annotations

import torch

from mtlbench.methods import create

from .conftest import make_tiny_problem


def _gradients(name: str, scales: torch.Tensor, seed: int = 0) -> tuple[list[torch.Tensor], torch.Tensor]:
    problem = make_tiny_problem(2, seed=seed)
    model = problem.model
    losses = problem.losses() * scales
    result = create(name, 2).backward(losses, model.shared_parameters(), task_parameters=model.task_parameters())
    return [p.grad.clone() for p in model.parameters()], result.weights


def test_weights_are_inverse_losses() -> None:
    losses = torch.tensor([0.25, 4.0])
    torch.testing.assert_close(create("uw_optimal", 2).loss_weights(losses), torch.tensor([4.0, 0.25]))


def test_update_is_invariant_to_task_loss_scales() -> None:
    plain, weights = _gradients("uw_optimal", torch.ones(2))
    scaled, scaled_weights = _gradients("uw_optimal", torch.tensor([10.0, 0.01]))
    for a, b in zip(plain, scaled, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)
    # the weights absorb the scales exactly
    torch.testing.assert_close(scaled_weights * torch.tensor([10.0, 0.01]), weights)


def test_equals_the_optimum_of_laplace_uw_and_the_gradient_of_si() -> None:
    losses = torch.tensor([0.4, 3.0])
    uw = create("uw", 2, loss_types="l1,l1")
    with torch.no_grad():
        uw.parameters()[0].copy_(losses.log())  # sigma = L, the Laplace optimum
    torch.testing.assert_close(uw.weighted_loss(losses)[1], create("uw_optimal", 2).loss_weights(losses))
    optimal, _ = _gradients("uw_optimal", torch.ones(2))
    si, _ = _gradients("si", torch.ones(2))
    for a, b in zip(optimal, si, strict=True):
        torch.testing.assert_close(a, b)

"""UW (Kendall et al. 2018): loss forms per loss type, analytic optimum, effective coefficients."""

from __future__ import annotations

import math

import pytest
import torch

from mtlbench.errors import UserInputError
from mtlbench.methods import TrainingContext, create

from .conftest import make_tiny_problem, train_steps


def _context(loss_types: list[str]) -> TrainingContext:
    return TrainingContext(
        model=None,  # type: ignore[arg-type]
        optimizer=None,  # type: ignore[arg-type]
        lr=1e-3,
        weight_decay=0.0,
        task_names=[f"t{i}" for i in range(len(loss_types))],
        loss_types=loss_types,
        compute_losses=lambda batch: torch.zeros(len(loss_types)),
    )


def test_log_variances_converge_to_the_analytic_optimum_of_each_form() -> None:
    losses = torch.tensor([0.3, 2.0, 5.0])
    method = create("uw", 3, loss_types="mse,cross_entropy,l1")
    optimizer = torch.optim.SGD(method.parameters(), lr=0.2)
    for _ in range(200):
        optimizer.zero_grad()
        total, _ = method.weighted_loss(losses)
        total.backward()
        optimizer.step()
    sigma = method.parameters()[0].detach().exp()
    # Gaussian: sigma^2 = L; Boltzmann: sigma^2 = 2 L; Laplace: sigma = L
    expected = torch.tensor([math.sqrt(0.3), math.sqrt(2 * 2.0), 5.0])
    torch.testing.assert_close(sigma, expected, rtol=1e-4, atol=1e-5)
    # at the optimum the coefficients are 1/(2L), 1/(2L) and 1/L
    _, weights = method.weighted_loss(losses)
    torch.testing.assert_close(weights, torch.tensor([1 / 0.6, 1 / 4.0, 1 / 5.0]), rtol=1e-4, atol=1e-6)


def test_reported_weights_are_the_derivatives_of_the_objective() -> None:
    method = create("uw", 3, loss_types="mse,nll,l1", init=0.3)
    losses = torch.tensor([0.7, 1.3, 2.1], requires_grad=True)
    total, weights = method.weighted_loss(losses)
    (derivative,) = torch.autograd.grad(total, losses)
    torch.testing.assert_close(weights, derivative)
    eta = 0.3
    torch.testing.assert_close(weights, torch.tensor([math.exp(-2 * eta) / 2, math.exp(-2 * eta), math.exp(-eta)]))


def test_loss_types_come_from_the_context_unless_given() -> None:
    losses = torch.tensor([1.0, 1.0])
    from_context = create("uw", 2)
    from_context.attach(_context(["cross_entropy", "l1"]))
    assert from_context.forms == ["boltzmann", "laplace"]
    torch.testing.assert_close(from_context.weighted_loss(losses)[1], torch.ones(2))
    explicit = create("uw", 2, loss_types="mse,mse")
    explicit.attach(_context(["cross_entropy", "l1"]))
    assert explicit.forms == ["gaussian", "gaussian"]
    assert create("uw", 2).forms == ["gaussian", "gaussian"]


@pytest.mark.parametrize("value", ["mse,huber", "mse"])
def test_bad_loss_types_are_rejected(value: str) -> None:
    with pytest.raises(UserInputError, match="loss"):
        create("uw", 2, loss_types=value)


def test_main_optimizer_trains_the_log_variances_and_state_round_trips() -> None:
    method = create("uw", 2)
    before = method.parameters()[0].detach().clone()
    train_steps(method, make_tiny_problem(2), steps=3)
    after = method.parameters()[0].detach().clone()
    assert not torch.equal(before, after)
    fresh = create("uw", 2)
    fresh.load_state_dict(method.state_dict())
    torch.testing.assert_close(fresh.parameters()[0].detach(), after)

"""The LibMTL forms 001 ran on NYUv2: UW ``form=libmtl`` and RLW ``weights_sum=one``."""

from __future__ import annotations

import math

import pytest
import torch

from mtlbench.errors import UserInputError
from mtlbench.methods import create


def test_uw_libmtl_objective_weights_and_init_by_hand() -> None:
    method = create("uw", 3, form="libmtl")
    s = method.parameters()[0]
    torch.testing.assert_close(s.detach(), torch.full((3,), -0.5))  # LibMTL's initial value
    losses = torch.tensor([0.4, 1.5, 3.0], requires_grad=True)
    total, weights = method.weighted_loss(losses)
    expected = sum(loss / (2 * math.exp(-0.5)) + (-0.5) / 2 for loss in (0.4, 1.5, 3.0))
    assert float(total.detach()) == pytest.approx(expected)
    torch.testing.assert_close(weights, torch.full((3,), 1 / (2 * math.exp(-0.5))))
    (derivative,) = torch.autograd.grad(total, losses)
    torch.testing.assert_close(weights, derivative)  # the reported weights are dObjective/dL
    assert method.forms == ["gaussian"] * 3
    torch.testing.assert_close(
        create("uw", 2, form="libmtl", init=0.25).parameters()[0].detach(), torch.full((2,), 0.25)
    )
    torch.testing.assert_close(create("uw", 2).parameters()[0].detach(), torch.zeros(2))  # kendall's eta = 0


def test_uw_libmtl_converges_to_s_equal_log_loss() -> None:
    losses = torch.tensor([0.3, 2.0, 5.0])
    method = create("uw", 3, form="libmtl")
    optimizer = torch.optim.SGD(method.parameters(), lr=0.5)
    for _ in range(300):  # d/ds (L e^-s / 2 + s / 2) = (1 - L e^-s) / 2 = 0 at s = log L
        optimizer.zero_grad()
        method.weighted_loss(losses)[0].backward()
        optimizer.step()
    torch.testing.assert_close(method.parameters()[0].detach(), losses.log(), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(method.optimal_log_sigma(losses), losses.log())
    torch.testing.assert_close(method.coefficients(), 1 / (2 * losses), rtol=1e-4, atol=1e-6)


def test_uw_libmtl_equals_the_gaussian_form_at_s_equal_two_eta() -> None:
    eta = torch.tensor([0.1, -0.3])
    losses = torch.tensor([0.8, 2.5])
    kendall = create("uw", 2, loss_types="mse,mse")
    libmtl = create("uw", 2, form="libmtl")
    with torch.no_grad():
        kendall.parameters()[0].copy_(eta)
        libmtl.parameters()[0].copy_(2 * eta)
    k_total, k_weights = kendall.weighted_loss(losses)
    l_total, l_weights = libmtl.weighted_loss(losses)
    torch.testing.assert_close(l_total, k_total)  # eta + L e^{-2 eta}/2 = s/2 + L e^{-s}/2
    torch.testing.assert_close(l_weights, k_weights)
    with pytest.raises(UserInputError, match="form=libmtl uses one form"):
        create("uw", 2, form="libmtl", loss_types="mse,l1")
    with pytest.raises(UserInputError, match="form='lib'"):
        create("uw", 2, form="lib")


def test_rlw_normal_weights_sum_one_is_libmtls_softmax() -> None:
    for n_tasks in (2, 3):
        generator = torch.Generator().manual_seed(5)
        one = create("rlw_normal", n_tasks, weights_sum="one", generator=torch.Generator().manual_seed(5))
        tasks = create("rlw_normal", n_tasks, generator=torch.Generator().manual_seed(5))
        for _ in range(5):
            expected = torch.softmax(torch.randn(n_tasks, generator=generator), dim=0)
            weights = one.loss_weights(torch.ones(n_tasks))
            torch.testing.assert_close(weights, expected)
            assert float(weights.sum()) == pytest.approx(1.0)
            torch.testing.assert_close(tasks.loss_weights(torch.ones(n_tasks)), n_tasks * expected)


def test_rlw_dirichlet_weights_sum_one() -> None:
    one = create("rlw_dirichlet", 3, weights_sum="one", generator=torch.Generator().manual_seed(0))
    tasks = create("rlw_dirichlet", 3, generator=torch.Generator().manual_seed(0))
    for _ in range(5):
        weights = one.loss_weights(torch.ones(3))
        assert float(weights.sum()) == pytest.approx(1.0) and (weights > 0).all()
        torch.testing.assert_close(tasks.loss_weights(torch.ones(3)), 3 * weights)
    with pytest.raises(UserInputError, match="weights_sum='two'"):
        create("rlw_normal", 2, weights_sum="two")

"""FAMO (Liu et al. 2023): log-loss objective, logit update from the loss decrease, 000's Proposition 6."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from mtlbench.errors import UserInputError
from mtlbench.methods import create, get
from mtlbench.models.base import MultiTaskModel
from mtlbench.problems.base import Batch

from .conftest import TinyProblem, train_steps


def _identical_tasks(n_tasks: int, seed: int = 0) -> TinyProblem:
    """T copies of one task (same head initialisation, same targets): equal losses at every step."""
    torch.manual_seed(seed)
    encoder = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 6), nn.ReLU())
    head = nn.Linear(6, 1)
    names = [f"t{i}" for i in range(n_tasks)]
    model = MultiTaskModel(encoder, {name: copy.deepcopy(head) for name in names}, representation_size=6)
    x, y = torch.randn(32, 4), torch.randn(32)
    return TinyProblem(model, Batch(x, {name: y.clone() for name in names}, 32), n_tasks)


@pytest.mark.parametrize("n_tasks", [2, 3, 5])
def test_proposition_6_equal_losses_keep_equal_weights(n_tasks: int) -> None:
    method = create("famo", n_tasks, gamma=1e-2)
    with torch.no_grad():
        method.logits.xi.fill_(0.7)  # equal but not zero, so that the weight decay moves them
    weights = train_steps(method, _identical_tasks(n_tasks), steps=6)
    for w in weights:
        torch.testing.assert_close(w, torch.ones(n_tasks))
    xi = method.logits.xi.detach()
    assert not torch.allclose(xi, torch.full_like(xi, 0.7))  # the logits did move
    torch.testing.assert_close(xi, torch.full_like(xi, xi[0].item()))


def test_logits_move_weight_towards_the_task_that_decreased_less() -> None:
    method = create("famo", 3)
    p = torch.ones(3, requires_grad=True)
    before = torch.tensor([1.0, 2.0, 3.0]) * p
    method.backward(before, [p])
    after = torch.tensor([0.9, 1.0, 2.0])  # log-decreases: 0.105 (task 0), 0.69, 0.41
    method.after_step(lambda: after)
    z = method.task_weights()
    assert z[0] > 1 / 3 > z[2] > z[1]


def test_logit_gradient_is_the_softmax_vjp_of_the_log_decrease() -> None:
    method = create("famo", 3)
    with torch.no_grad():
        method.logits.xi.copy_(torch.tensor([0.3, -0.2, 0.5]))
    before, after = torch.tensor([1.0, 2.0, 3.0]), torch.tensor([0.8, 1.9, 1.0])
    xi = method.logits.xi.detach().clone().requires_grad_(True)
    delta = before.log() - after.log()
    (expected,) = torch.autograd.grad(torch.softmax(xi, 0), xi, grad_outputs=delta)
    torch.testing.assert_close(method.logit_gradient(before, after), expected)


def test_effective_weights_are_the_coefficients_of_the_objective() -> None:
    method = create("famo", 3, min_losses="0.1,0,0.5")
    with torch.no_grad():
        method.logits.xi.copy_(torch.tensor([0.3, -0.2, 0.5]))
    losses = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
    total, weights = method.weighted_loss(losses)
    (derivative,) = torch.autograd.grad(total, losses)
    torch.testing.assert_close(weights, derivative)
    torch.testing.assert_close(weights.sum(), torch.tensor(3.0))
    z = torch.softmax(torch.tensor([0.3, -0.2, 0.5]), 0)
    shifted = torch.tensor([0.9, 2.0, 2.5])
    torch.testing.assert_close(weights, 3 * (z / shifted) / (z / shifted).sum())


def test_errors_grid_and_state() -> None:
    with pytest.raises(UserInputError, match="recompute_losses"):
        create("famo", 2).after_step(None)
    with pytest.raises(UserInputError, match="min_losses"):
        create("famo", 2, min_losses="0,0,0")
    assert get("famo").grid("multi_mnist") == {"gamma": [1e-2, 1e-3, 1e-4]}
    method = create("famo", 2)
    problem = _identical_tasks(2)
    problem.batch.targets["t1"] = problem.batch.targets["t1"] * 3
    train_steps(method, problem, steps=3)
    fresh = create("famo", 2)
    fresh.load_state_dict(method.state_dict())
    torch.testing.assert_close(fresh.logits.xi.detach(), method.logits.xi.detach())
    assert fresh.logits_optimizer.state_dict()["state"][0]["step"] == 3

"""DWA (Liu et al. 2019): T softmax(r / tau) with r = L(t-1) / L(t-2) from epoch means."""

from __future__ import annotations

import math

import pytest
import torch

from mtlbench.methods import create

from .conftest import make_tiny_problem, train_steps


def _closed_form(previous: list[float], last: list[float], tau: float) -> torch.Tensor:
    exps = [math.exp(b / a / tau) for a, b in zip(previous, last, strict=True)]
    return torch.tensor([len(exps) * e / sum(exps) for e in exps])


@pytest.mark.parametrize("tau", [2.0, 0.5])
def test_weights_follow_the_closed_form(tau: float) -> None:
    method = create("dwa", 3, temperature=tau)
    step_losses = torch.tensor([5.0, 0.1, 1.0])
    epochs = [[1.0, 2.0, 4.0], [0.5, 1.8, 4.0], [0.45, 0.9, 1.0]]
    torch.testing.assert_close(method.loss_weights(step_losses), torch.ones(3))
    method.end_epoch(torch.tensor(epochs[0]))
    torch.testing.assert_close(method.loss_weights(step_losses), torch.ones(3))  # equal for two epochs
    method.end_epoch(torch.tensor(epochs[1]))
    expected = _closed_form(epochs[0], epochs[1], tau)
    torch.testing.assert_close(method.loss_weights(step_losses), expected)
    # constant within an epoch: the step's losses do not matter
    torch.testing.assert_close(method.loss_weights(torch.tensor([0.2, 9.0, 3.0])), expected)
    # the slower task (ratio 1.0) gets the largest weight
    assert expected.argmax().item() == 2
    method.end_epoch(torch.tensor(epochs[2]))
    torch.testing.assert_close(method.loss_weights(step_losses), _closed_form(epochs[1], epochs[2], tau))


def test_state_round_trip_and_protocol() -> None:
    method = create("dwa", 2)
    problem = make_tiny_problem(2)
    for _ in range(3):
        weights = train_steps(method, problem, steps=2)
    assert all(torch.equal(w, weights[0]) for w in weights)
    fresh = create("dwa", 2)
    fresh.load_state_dict(method.state_dict())
    losses = torch.ones(2)
    torch.testing.assert_close(fresh.loss_weights(losses), method.loss_weights(losses))
    assert not torch.allclose(fresh.loss_weights(losses), torch.ones(2))

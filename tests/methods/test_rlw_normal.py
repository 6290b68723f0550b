"""RLW-Normal (Lin et al. 2022): T * softmax(x), x ~ N(0, I); deterministic given the generator."""

from __future__ import annotations

import math

import torch
from scipy import stats

from mtlbench.methods import create

DRAWS = 4000


def _draws(seed: int, n_tasks: int = 3, n: int = DRAWS) -> torch.Tensor:
    method = create("rlw_normal", n_tasks, generator=torch.Generator().manual_seed(seed))
    losses = torch.ones(n_tasks)
    return torch.stack([method.loss_weights(losses) for _ in range(n)]).double()


def test_deterministic_given_the_generator() -> None:
    torch.testing.assert_close(_draws(7, n=20), _draws(7, n=20))
    assert not torch.allclose(_draws(7, n=20), _draws(8, n=20))


def test_weight_distribution() -> None:
    weights = _draws(0)
    torch.testing.assert_close(weights.sum(dim=1), torch.full((DRAWS,), 3.0, dtype=torch.float64), atol=1e-5, rtol=0)
    assert (weights > 0).all()
    # exchangeable tasks: every weight has mean T / T = 1
    torch.testing.assert_close(weights.mean(dim=0), torch.ones(3, dtype=torch.float64), atol=0.05, rtol=0)
    # log(w_i / w_j) = x_i - x_j ~ N(0, 2)
    log_ratio = (weights[:, 0] / weights[:, 1]).log() / math.sqrt(2.0)
    assert stats.kstest(log_ratio.numpy(), "norm").pvalue > 1e-3
    assert abs(log_ratio.var().item() - 1.0) < 0.1

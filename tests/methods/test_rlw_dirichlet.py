"""RLW-Dirichlet (Lin et al. 2022): T * lambda, lambda ~ Dirichlet(alpha); marginals are Beta laws."""

from __future__ import annotations

import pytest
import torch
from scipy import stats

from mtlbench.errors import UserInputError
from mtlbench.methods import create

DRAWS = 4000


def _draws(seed: int, n_tasks: int = 3, n: int = DRAWS, **hyperparameters: float) -> torch.Tensor:
    method = create("rlw_dirichlet", n_tasks, generator=torch.Generator().manual_seed(seed), **hyperparameters)
    losses = torch.ones(n_tasks)
    return torch.stack([method.loss_weights(losses) for _ in range(n)]).double()


def test_deterministic_given_the_generator() -> None:
    torch.testing.assert_close(_draws(3, n=20), _draws(3, n=20))
    assert not torch.allclose(_draws(3, n=20), _draws(4, n=20))


@pytest.mark.parametrize("concentration", [1.0, 2.0])
def test_marginals_match_the_dirichlet(concentration: float) -> None:
    n_tasks = 3
    weights = _draws(0, n_tasks, concentration=concentration)
    torch.testing.assert_close(weights.sum(dim=1), torch.full((DRAWS,), 3.0, dtype=torch.float64), atol=1e-5, rtol=0)
    torch.testing.assert_close(weights.mean(dim=0), torch.ones(3, dtype=torch.float64), atol=0.05, rtol=0)
    # lambda_i ~ Beta(a, (T - 1) a): Var(T lambda_i) = T^2 a (T-1) a / ((T a)^2 (T a + 1)) = (T - 1) / (T a + 1)
    a = concentration
    expected_variance = (n_tasks - 1) / (n_tasks * a + 1)
    assert abs(weights[:, 0].var().item() - expected_variance) < 0.05
    marginal = stats.beta(a, (n_tasks - 1) * a)
    assert stats.kstest((weights[:, 1] / n_tasks).numpy(), marginal.cdf).pvalue > 1e-3


def test_bad_concentration() -> None:
    with pytest.raises(UserInputError, match="concentration"):
        create("rlw_dirichlet", 2, concentration=0)

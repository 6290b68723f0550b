"""RotoGrad's fast exponential of skew-symmetric matrices: the same values and gradients as ``matrix_exp``."""

from __future__ import annotations

import pytest
import torch

from mtlbench.methods.rotograd import SkewExpm


def _skew(weight: torch.Tensor) -> torch.Tensor:
    lower = torch.tril(weight, diagonal=-1)
    return lower - lower.T


@pytest.mark.parametrize(
    "case",
    ["random", "large", "zero", "repeated"],
)
def test_skew_expm_matches_matrix_exp_and_its_gradient(case):
    generator = torch.Generator().manual_seed(0)
    size = 7
    if case == "zero":  # all eigenvalues equal: the divided differences at their limit
        weight = torch.zeros(size, size, dtype=torch.float64)
    elif case == "repeated":  # two identical 2x2 rotation blocks: repeated eigenvalue pairs
        weight = torch.zeros(size, size, dtype=torch.float64)
        weight[1, 0] = weight[3, 2] = 0.7
    else:
        weight = torch.randn(size, size, generator=generator, dtype=torch.float64) * (3.0 if case == "large" else 0.3)
    weight.requires_grad_(True)
    grad_output = torch.randn(size, size, generator=generator, dtype=torch.float64)
    expected = torch.linalg.matrix_exp(_skew(weight))
    (expected_grad,) = torch.autograd.grad(expected, weight, grad_output)
    got = SkewExpm.apply(_skew(weight))
    (got_grad,) = torch.autograd.grad(got, weight, grad_output)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(got_grad, expected_grad, rtol=1e-10, atol=1e-11)
    torch.testing.assert_close(got @ got.T, torch.eye(size, dtype=torch.float64), rtol=0, atol=1e-12)


def test_skew_expm_passes_gradcheck():
    weight = (0.5 * torch.randn(5, 5, dtype=torch.float64)).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda w: SkewExpm.apply(_skew(w)), (weight,))


def test_normalized_losses_give_the_gradients_of_l_over_l0():
    """normalize_losses: per-task gradients of L_k / L_k^0, taken from the stacked losses and rescaled."""
    from mtlbench import methods
    from mtlbench.methods.base import TrainingContext
    from tests.methods.conftest import make_tiny_problem

    problem = make_tiny_problem(3, seed=1)
    method = methods.create("rotograd", n_tasks=3, normalize_losses=True, initial_rotation="identity")
    model = method.wrap_model(problem.model)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.0)
    method.attach(TrainingContext(model, optimizer, 0.0, 0.0, model.task_names, ["mse"] * 3, problem.losses, None))
    losses = problem.losses()
    heads = model.task_parameters()
    expected = [torch.autograd.grad(losses[k] / losses[k].detach(), heads[k], retain_graph=True) for k in range(3)]
    z = model.encode(problem.batch.inputs)
    outputs = model.decode(z)
    fresh = torch.stack(
        [torch.nn.functional.mse_loss(outputs[n].squeeze(-1), problem.batch.targets[n]) for n in model.task_names]
    )
    method.backward(fresh, model.shared_parameters(), features=z, task_parameters=heads)
    for k in range(3):
        for p, g in zip(heads[k], expected[k], strict=True):
            torch.testing.assert_close(p.grad, g, rtol=1e-5, atol=1e-7)

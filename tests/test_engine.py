"""The method seam: hyperparameter validation, registry errors, the per-task gradient engine and heads."""

import pytest
import torch

from mtlbench import methods
from mtlbench.errors import UserInputError
from mtlbench.methods.base import Aggregation, GradientMethod, HeadGradient
from mtlbench.methods.gradients import per_task_gradients
from tests.methods.conftest import make_tiny_problem, train_steps


def test_unknown_method_lists_the_registered_ones():
    with pytest.raises(UserInputError, match=r"unknown method 'nope'; choose one of: .*unit_scal"):
        methods.create("nope", n_tasks=2)


def test_unknown_and_out_of_range_hyperparameters_are_one_line_errors():
    with pytest.raises(UserInputError, match="unknown hyperparameter of fixed_weights 'c'"):
        methods.create("fixed_weights", n_tasks=2, c=1)
    with pytest.raises(UserInputError, match=r"weights=.*out of range; allowed: \[0, inf\]"):
        methods.create("fixed_weights", n_tasks=2, weights="-1,2")
    with pytest.raises(UserInputError, match="2 tasks need 2"):
        methods.create("fixed_weights", n_tasks=2, weights="1,2,3")


def test_fixed_weights_are_renormalised_to_sum_t():
    method = methods.create("fixed_weights", n_tasks=3, weights="1,1,2")
    assert method.loss_weights(torch.ones(3)).tolist() == pytest.approx([0.75, 0.75, 1.5])


def test_per_task_gradients_match_separate_backward_passes():
    problem = make_tiny_problem(3)
    model = problem.model
    losses = problem.losses()
    shared = model.shared_parameters()
    matrix, heads = per_task_gradients(losses, shared, model.task_parameters())
    for i in range(3):
        expected = torch.autograd.grad(problem.losses()[i], shared)
        assert torch.allclose(matrix[i], torch.cat([g.reshape(-1) for g in expected]), atol=1e-6)
        own = torch.autograd.grad(problem.losses()[i], model.task_parameters()[i])
        assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(heads[i], own, strict=True))


class _HalfAndDouble(GradientMethod):
    """Test method: direction 0.5 g_1 + 2 g_2, weights (0.5, 2)."""

    name = "_half_and_double"
    title = citation = "test"
    head_gradient = HeadGradient.WEIGHTED

    def combine(self, gradients, *, losses=None, features=None, state=None, generator=None):
        weights = torch.tensor([0.5, 2.0])
        return Aggregation(weights @ gradients, weights, state)


@pytest.mark.parametrize("space", ["parameters", "representation"])
@pytest.mark.parametrize("named_heads", [True, False])
def test_gradient_method_writes_the_weighted_sum_into_grad(space, named_heads):
    problem = make_tiny_problem(2)
    model = problem.model
    method = _HalfAndDouble(2, space=space)
    features = model.encode(problem.batch.inputs)
    outputs = model.decode(features)
    losses = torch.stack(
        [torch.nn.functional.mse_loss(outputs[n].squeeze(-1), problem.batch.targets[n]) for n in model.task_names]
    )
    method.backward(
        losses,
        model.shared_parameters(),
        features=features,
        task_parameters=model.task_parameters() if named_heads else None,
    )
    got = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    (0.5 * problem.losses()[0] + 2.0 * problem.losses()[1]).backward()
    expected = [p.grad for p in model.parameters()]
    for a, b in zip(got, expected, strict=True):
        assert torch.allclose(a, b, atol=1e-5)


def test_own_head_rule_gives_heads_their_plain_gradient():
    problem = make_tiny_problem(2)
    model = problem.model
    method = methods.create("sum", n_tasks=2)
    losses = problem.losses()
    method.backward(
        losses * torch.tensor([3.0, 1.0]), model.shared_parameters(), task_parameters=model.task_parameters()
    )
    head0 = [p.grad.clone() for p in model.heads["t0"].parameters()]
    model.zero_grad()
    (3.0 * problem.losses()[0]).backward()
    assert all(torch.allclose(a, p.grad, atol=1e-6) for a, p in zip(head0, model.heads["t0"].parameters(), strict=True))


def test_unit_scal_through_the_step_protocol_reports_ones():
    weights = train_steps(methods.create("unit_scal", n_tasks=2), make_tiny_problem(2), steps=2)
    assert all(w.tolist() == [1.0, 1.0] for w in weights)


def test_aggregate_rejects_loss_methods_and_bad_shapes():
    with pytest.raises(UserInputError, match="does not combine gradients"):
        methods.aggregate("unit_scal", torch.zeros(2, 3))
    with pytest.raises(UserInputError, match=r"\(T, D\) matrix"):
        methods.aggregate("sum", torch.zeros(3))

"""Auto-Lambda: the hypergradient (finite difference and exact) against autograd, lambda's dynamics, state."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.func import functional_call

from mtlbench.errors import UserInputError
from mtlbench.methods import StepResult, TrainingContext, create
from mtlbench.methods.auto_lambda import AutoLambda
from mtlbench.models.base import MultiTaskModel
from mtlbench.problems.base import Batch

from .conftest import TinyProblem, make_tiny_problem, train_steps


def _double(problem: TinyProblem) -> TinyProblem:
    problem.model.double()
    batch = problem.batch
    problem.batch = Batch(batch.inputs.double(), {k: v.double() for k, v in batch.targets.items()}, batch.size)
    return problem


def _smooth(problem: TinyProblem) -> TinyProblem:
    """Tanh instead of ReLU: the central difference then has its O(eps^2) error (no kink inside +-eps)."""
    encoder = problem.model.encoder
    for index, module in enumerate(encoder):
        if isinstance(module, nn.ReLU):
            encoder[index] = nn.Tanh()
    return problem


def _validation(problem: TinyProblem) -> Batch:
    batch = problem.batch
    return Batch(batch.inputs.flip(0) + 0.1, {k: 0.5 * v.flip(0) for k, v in batch.targets.items()}, batch.size)


def _context(
    problem: TinyProblem,
    optimizer: torch.optim.Optimizer,
    validation: Batch,
    *,
    with_batch: bool = True,
) -> TrainingContext:
    group = optimizer.param_groups[0]
    return TrainingContext(
        model=problem.model,
        optimizer=optimizer,
        lr=group["lr"],
        weight_decay=group["weight_decay"],
        task_names=problem.model.task_names,
        loss_types=["mse"] * problem.n_tasks,
        compute_losses=problem.losses,
        next_validation_batch=lambda: validation,
        current_batch=(lambda: problem.batch) if with_batch else None,
    )


def _direct_hypergradient(
    model: MultiTaskModel, problem: TinyProblem, validation: Batch, lam: torch.Tensor, optimizer: torch.optim.SGD
) -> torch.Tensor:
    """d/dlambda of L_val(theta - a (m + grad sum_i lambda_i L_i + wd theta)), by autograd through the step."""
    group = optimizer.param_groups[0]
    lam = lam.clone().requires_grad_(True)
    params = dict(model.named_parameters())
    gradients = torch.autograd.grad((lam * problem.losses()).sum(), list(params.values()), create_graph=True)
    stepped = {}
    for (name, p), g in zip(params.items(), gradients, strict=True):
        momentum = optimizer.state.get(p, {}).get("momentum_buffer")
        extra = 0.0 if momentum is None else group["momentum"] * momentum
        stepped[name] = p - group["lr"] * (extra + g + group["weight_decay"] * p)
    outputs = functional_call(model, stepped, (validation.inputs,))
    loss = sum(nn.functional.mse_loss(outputs[n].squeeze(-1), validation.targets[n]) for n in model.task_names)
    return torch.autograd.grad(loss, lam)[0]


@pytest.mark.parametrize("mode", ["finite_difference", "exact"])
@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_hypergradient_matches_autograd_through_the_virtual_step(mode: str, momentum: float) -> None:
    problem = _double(_smooth(make_tiny_problem(3)))
    validation = _validation(problem)
    optimizer = torch.optim.SGD(problem.model.parameters(), lr=0.05, momentum=momentum, weight_decay=0.01)
    if momentum:  # fill the momentum buffers with one real step
        problem.losses().sum().backward()
        optimizer.step()
        optimizer.zero_grad()
    method = create("auto_lambda", 3, hypergradient=mode)
    method.attach(_context(problem, optimizer, validation))
    lam = torch.tensor([0.3, 0.7, 1.1], dtype=torch.float64)
    with torch.no_grad():
        method.meta.weights.copy_(lam)
    computed, _ = method.hypergradient(problem.losses(), validation, train_batch=problem.batch)
    expected = _direct_hypergradient(problem.model, problem, validation, method.weights.double(), optimizer)
    assert expected.abs().min() > 1e-4  # not a vacuous comparison
    tolerance = 1e-3 if mode == "finite_difference" else 1e-9
    torch.testing.assert_close(computed, expected, rtol=tolerance, atol=tolerance * expected.abs().max())


def test_finite_difference_error_is_second_order_in_the_radius(monkeypatch: pytest.MonkeyPatch) -> None:
    problem = _double(_smooth(make_tiny_problem(3, seed=2)))
    validation = _validation(problem)
    optimizer = torch.optim.SGD(problem.model.parameters(), lr=0.05)
    method = create("auto_lambda", 3, hypergradient="finite_difference")
    method.attach(_context(problem, optimizer, validation))
    expected = _direct_hypergradient(problem.model, problem, validation, method.weights.double(), optimizer)
    errors = []
    for radius in (1e-2, 1e-3):
        monkeypatch.setattr("mtlbench.methods.auto_lambda.FD_RADIUS", radius)
        computed, _ = method.hypergradient(problem.losses(), validation, train_batch=problem.batch)
        errors.append(float((computed - expected).abs().max()))
    assert errors[1] < errors[0] / 50  # central difference: error ~ radius^2


@pytest.mark.parametrize("with_batch", [True, False])
def test_step_updates_lambda_by_adam_and_trains_on_the_new_weighted_sum(with_batch: bool) -> None:
    problem = _double(make_tiny_problem(2))
    validation = _validation(problem)
    optimizer = torch.optim.SGD(problem.model.parameters(), lr=0.05)
    method = create("auto_lambda", 2, lr_scale=2.0)
    method.attach(_context(problem, optimizer, validation, with_batch=with_batch))
    expected_meta = _direct_hypergradient(problem.model, problem, validation, method.weights.double(), optimizer)
    before = method.weights.clone()

    losses = problem.losses()
    result = method.backward(losses, problem.model.shared_parameters(), task_parameters=problem.model.task_parameters())

    # Adam's first step moves each lambda by lr x sign(gradient), lr = 0.05 x 2
    step = method.weights.double() - before.double()
    torch.testing.assert_close(step, -0.1 * torch.sign(expected_meta), rtol=1e-5, atol=1e-7)
    mode = "finite_difference" if with_batch else "exact"
    assert method.counters[f"hypergradient_{mode}"] == 1
    # the network's gradient is that of sum_i lambda_i L_i with the updated lambda (heads included)
    lam = method.weights.double()
    params = list(problem.model.parameters())
    expected = torch.autograd.grad((lam * problem.losses()).sum(), params)
    for p, g in zip(params, expected, strict=True):
        torch.testing.assert_close(p.grad, g, rtol=1e-9, atol=1e-12)
    # reported weights: lambda rescaled to sum T; info keeps the raw sum
    torch.testing.assert_close(result.weights, 2 * lam / lam.sum())
    assert result.info["lambda_sum"] == pytest.approx(float(lam.sum()))


def _helpful_and_harmful_tasks() -> tuple[TinyProblem, Batch]:
    """Task 0's training data matches validation; task 1's training targets have the opposite sign."""
    torch.manual_seed(0)
    encoder = nn.Sequential(nn.Linear(4, 8), nn.Tanh())
    heads = {"t0": nn.Linear(8, 1), "t1": nn.Linear(8, 1)}
    for head in heads.values():
        nn.init.zeros_(head.weight)
        nn.init.zeros_(head.bias)
    model = MultiTaskModel(encoder, heads, representation_size=8)
    x = torch.randn(64, 4)
    y0, y1 = x @ torch.randn(4), x @ torch.randn(4)
    train = Batch(x, {"t0": y0, "t1": y1}, 64)
    validation = Batch(x, {"t0": y0, "t1": -y1}, 64)
    return TinyProblem(model, train, 2), validation


def test_lambda_grows_for_the_task_whose_training_helps_validation() -> None:
    problem, validation = _helpful_and_harmful_tasks()
    optimizer = torch.optim.Adam(problem.model.parameters(), lr=1e-2)
    method = create("auto_lambda", 2, lr_scale=1.0)
    method.attach(_context(problem, optimizer, validation))
    for _ in range(5):
        optimizer.zero_grad(set_to_none=True)
        method.backward(problem.losses(), problem.model.shared_parameters())
        optimizer.step()
    helpful, harmful = method.weights.tolist()
    assert helpful > 0.1 > harmful


def _run(method: AutoLambda, problem: TinyProblem, optimizer: torch.optim.Optimizer, steps: int) -> StepResult:
    result = None
    for _ in range(steps):
        optimizer.zero_grad(set_to_none=True)
        result = method.backward(problem.losses(), problem.model.shared_parameters())
        optimizer.step()
    return result


def test_state_round_trip_resumes_identically() -> None:
    problem = make_tiny_problem(2)
    validation = _validation(problem)
    optimizer = torch.optim.Adam(problem.model.parameters(), lr=1e-2)
    method = create("auto_lambda", 2, lr_scale=10.0)
    method.attach(_context(problem, optimizer, validation))
    _run(method, problem, optimizer, 3)

    twin = TinyProblem(copy.deepcopy(problem.model), problem.batch, 2)
    twin_optimizer = torch.optim.Adam(twin.model.parameters(), lr=1e-2)
    twin_optimizer.load_state_dict(copy.deepcopy(optimizer.state_dict()))
    restored = create("auto_lambda", 2, lr_scale=10.0)
    restored.attach(_context(twin, twin_optimizer, validation))
    restored.load_state_dict(copy.deepcopy(method.state_dict()))
    torch.testing.assert_close(restored.weights, method.weights, atol=0, rtol=0)
    first, second = _run(method, problem, optimizer, 2), _run(restored, twin, twin_optimizer, 2)
    torch.testing.assert_close(second.weights, first.weights, atol=0, rtol=0)
    torch.testing.assert_close(restored.weights, method.weights, atol=0, rtol=0)


@pytest.mark.parametrize("n_tasks", [2, 3])
def test_trainer_protocol_runs_with_finite_weights_summing_to_t(n_tasks: int) -> None:
    method = create("auto_lambda", n_tasks, lr_scale=100.0)
    weights = train_steps(method, make_tiny_problem(n_tasks), steps=4)
    for w in weights:
        assert w is not None and torch.isfinite(w).all()
        assert float(w.sum()) == pytest.approx(n_tasks, rel=1e-5)
    assert torch.isfinite(method.weights).all() and (method.weights != 0.1).all()


def test_bad_use_raises_one_line_errors() -> None:
    problem = make_tiny_problem(2)
    optimizer = torch.optim.SGD(problem.model.parameters(), lr=0.1)
    method = create("auto_lambda", 2, hypergradient="finite_difference")
    with pytest.raises(UserInputError, match="attach"):
        method.backward(problem.losses(), problem.model.shared_parameters())
    method.attach(_context(problem, optimizer, problem.batch, with_batch=False))
    with pytest.raises(UserInputError, match="current_batch"):
        method.backward(problem.losses(), problem.model.shared_parameters())
    context = _context(problem, optimizer, problem.batch)
    context.next_validation_batch = None
    with pytest.raises(UserInputError, match="validation"):
        create("auto_lambda", 2).attach(context)

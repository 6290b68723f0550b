"""RotoGrad: orthogonal rotations, the rotation loss, gradient-magnitude homogenisation, checkpoints."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from mtlbench.errors import UserInputError
from mtlbench.methods import StepResult, TrainingContext, create
from mtlbench.methods.rotograd import RotoGrad, rotate

from .conftest import TinyProblem, make_tiny_problem, train_steps


def _attach(method: RotoGrad, problem: TinyProblem, lr: float = 1e-2) -> torch.optim.Optimizer:
    model = problem.model
    optimizer = torch.optim.Adam(
        [*model.shared_parameters(), *[p for ps in model.task_parameters() for p in ps]], lr=lr
    )
    method.attach(
        TrainingContext(
            model=model,
            optimizer=optimizer,
            lr=lr,
            weight_decay=0.0,
            task_names=model.task_names,
            loss_types=["mse"] * problem.n_tasks,
            compute_losses=problem.losses,
        )
    )
    return optimizer


def _backward(method: RotoGrad, problem: TinyProblem) -> StepResult:
    model = problem.model
    model.zero_grad(set_to_none=True)
    features = model.encode(problem.batch.inputs)
    outputs = model.decode(features)
    losses = torch.stack(
        [nn.functional.mse_loss(outputs[n].squeeze(-1), problem.batch.targets[n]) for n in model.task_names]
    )
    return method.backward(
        losses, model.shared_parameters(), features=features, task_parameters=model.task_parameters()
    )


def _assert_rotation(matrix: torch.Tensor) -> None:
    eye = torch.eye(matrix.shape[0])
    torch.testing.assert_close(matrix @ matrix.T, eye, atol=1e-5, rtol=0)
    assert torch.linalg.det(matrix).item() == pytest.approx(1.0, abs=1e-5)


def test_identity_rotations_leave_the_outputs_unchanged() -> None:
    problem = make_tiny_problem(3)
    before = problem.model(problem.batch.inputs)
    method = create("rotograd", 3, initial_rotation="identity")
    wrapped = method.wrap_model(problem.model)
    after = wrapped(problem.batch.inputs)
    for name in wrapped.task_names:
        torch.testing.assert_close(after[name], before[name], atol=0, rtol=0)


def test_random_initial_rotations_are_rotations_applied_before_each_head() -> None:
    problem = make_tiny_problem(2)
    method = create("rotograd", 2, generator=torch.Generator().manual_seed(3))
    wrapped = method.wrap_model(problem.model)
    z = wrapped.encode(problem.batch.inputs)
    outputs = wrapped.decode(z)
    for name, rotation in zip(wrapped.task_names, method.rotations(), strict=True):
        _assert_rotation(rotation)
        assert torch.dist(rotation, torch.eye(6)) > 0.5  # Haar-random, not the identity
        torch.testing.assert_close(outputs[name], wrapped.heads[name](z @ rotation.T))


def test_rotation_of_leading_channels_only() -> None:
    generator = torch.Generator().manual_seed(0)
    z = torch.randn(5, 4, 3, 2, generator=generator)
    matrix = torch.linalg.qr(torch.randn(3, 3, generator=generator)).Q
    rotated = rotate(z, matrix)
    torch.testing.assert_close(rotated[:, 3:], z[:, 3:], atol=0, rtol=0)
    torch.testing.assert_close(rotated[:, :3], torch.einsum("ij,bjhw->bihw", matrix, z[:, :3]))
    torch.testing.assert_close(rotated.flatten(1).norm(dim=1), z.flatten(1).norm(dim=1))


@pytest.mark.parametrize("n_tasks", [2, 3])
def test_rotations_stay_orthogonal_and_move_during_training(n_tasks: int) -> None:
    problem = make_tiny_problem(n_tasks)
    method = create("rotograd", n_tasks, generator=torch.Generator().manual_seed(1), lr_scale=5.0)
    method.wrap_model(problem.model)
    initial = method.rotations()
    weights = train_steps(method, problem, steps=6)
    assert all(w is not None and torch.isfinite(w).all() and (w > 0).all() for w in weights)
    for start, end in zip(initial, method.rotations(), strict=True):
        _assert_rotation(end)
        assert torch.dist(start, end) > 1e-3


def test_one_task_has_zero_rotation_loss_and_keeps_its_rotation() -> None:
    problem = make_tiny_problem(1)
    method = create("rotograd", 1, generator=torch.Generator().manual_seed(2), lr_scale=5.0)
    method.wrap_model(problem.model)
    _attach(method, problem)
    start = method.rotations()[0]
    for _ in range(3):
        result = _backward(method, problem)
        assert result.info["rotation_loss"] < 1e-10
        torch.testing.assert_close(result.weights, torch.ones(1))
    torch.testing.assert_close(method.rotations()[0], start, atol=1e-7, rtol=0)


def test_identical_tasks_have_zero_rotation_loss_and_stay_at_the_identity() -> None:
    problem = make_tiny_problem(2)
    model = problem.model
    model.heads["t1"].load_state_dict(model.heads["t0"].state_dict())
    problem.batch.targets["t1"] = problem.batch.targets["t0"].clone()
    method = create("rotograd", 2, initial_rotation="identity", lr_scale=5.0)
    method.wrap_model(model)
    optimizer = _attach(method, problem)
    for _ in range(3):
        result = _backward(method, problem)
        optimizer.step()
        assert result.info["rotation_loss"] == pytest.approx(0.0, abs=1e-12)
        torch.testing.assert_close(result.weights, torch.ones(2))
    for rotation in method.rotations():
        torch.testing.assert_close(rotation, torch.eye(6), atol=1e-7, rtol=0)


def test_rotation_loss_decreases_and_aligns_conflicting_gradients_on_a_fixed_example() -> None:
    # one example: a rotation per task can make all task gradients at z parallel (000 A.3's goal)
    problem = make_tiny_problem(3, seed=0, n=1)
    method = create("rotograd", 3, generator=torch.Generator().manual_seed(0), lr_scale=5.0)
    method.wrap_model(problem.model)
    _attach(method, problem)  # the model itself is never stepped: only the rotations move

    def worst_cosine() -> float:
        grads, _ = _task_gradients(problem)
        units = nn.functional.normalize(grads.flatten(1), dim=1)
        return float((units @ units.T).min())

    assert worst_cosine() < -0.5  # conflicting at the start
    history = [_backward(method, problem).info["rotation_loss"] for _ in range(30)]
    assert history[-1] < 0.5 * history[0]
    assert worst_cosine() > 0.95


def _task_gradients(problem: TinyProblem) -> tuple[torch.Tensor, list[torch.Tensor]]:
    model = problem.model
    z = model.encode(problem.batch.inputs)
    outputs = model.decode(z)
    losses = [nn.functional.mse_loss(outputs[n].squeeze(-1), problem.batch.targets[n]) for n in model.task_names]
    grads = [torch.autograd.grad(loss, z, retain_graph=True)[0] for loss in losses]
    return torch.stack(grads), losses


def test_encoder_and_heads_receive_the_homogenised_and_own_gradients() -> None:
    problem = make_tiny_problem(3)
    method = create("rotograd", 3, generator=torch.Generator().manual_seed(5), lr_scale=1.0)
    model = method.wrap_model(problem.model)
    optimizer = _attach(method, problem)
    reference = copy.deepcopy(model)
    initial_norms = None
    for step in range(3):
        # expected, from an independent copy: c_k = C / n_k, alpha_k ~ n_k / n_k^0, C = sum alpha_k n_k
        reference.load_state_dict(model.state_dict())
        copy_problem = TinyProblem(reference, problem.batch, 3)
        grads, losses = _task_gradients(copy_problem)
        norms = grads.flatten(1).norm(dim=1)
        initial_norms = norms if initial_norms is None else initial_norms
        ratios = norms / initial_norms
        magnitude = (ratios / ratios.sum() * norms).sum()
        expected = magnitude / norms
        if step == 0:
            torch.testing.assert_close(expected, norms.mean() / norms)
        encoder = list(reference.encoder.parameters())
        encoder_grads = torch.autograd.grad(
            sum(c * loss for c, loss in zip(expected, losses, strict=True)), encoder, retain_graph=True
        )
        head_grads = [
            torch.autograd.grad(loss, list(reference.heads[n].parameters()), retain_graph=True)
            for loss, n in zip(losses, reference.task_names, strict=True)
        ]

        result = _backward(method, problem)
        torch.testing.assert_close(result.weights, expected, rtol=1e-5, atol=1e-7)
        scaled = (result.weights.view(-1, 1, 1) * grads).flatten(1).norm(dim=1)
        torch.testing.assert_close(scaled, magnitude.expand(3), rtol=1e-5, atol=1e-8)
        for p, g in zip(model.encoder.parameters(), encoder_grads, strict=True):
            torch.testing.assert_close(p.grad, g, rtol=1e-4, atol=1e-7)
        for name, grads_k in zip(model.task_names, head_grads, strict=True):
            for p, g in zip(model.heads[name].parameters(), grads_k, strict=True):
                torch.testing.assert_close(p.grad, g, rtol=1e-5, atol=1e-7)
        assert all(p.grad is None for p in model.adapters.parameters())
        optimizer.step()


def test_checkpoint_round_trip_resumes_identically() -> None:
    problem = make_tiny_problem(2)
    method = create("rotograd", 2, generator=torch.Generator().manual_seed(6), lr_scale=5.0)
    method.wrap_model(problem.model)
    train_steps(method, problem, steps=4)
    state, model_state = method.state_dict(), problem.model.state_dict()

    twin = make_tiny_problem(2, seed=1)
    restored = create("rotograd", 2, generator=torch.Generator().manual_seed(99), lr_scale=5.0)
    restored.wrap_model(twin.model)
    twin.model.load_state_dict(model_state)
    restored.load_state_dict(copy.deepcopy(state))
    twin.batch = problem.batch
    for a, b in zip(method.rotations(), restored.rotations(), strict=True):
        torch.testing.assert_close(a, b, atol=0, rtol=0)
    _attach(method, problem)
    _attach(restored, twin)
    first, second = _backward(method, problem), _backward(restored, twin)
    torch.testing.assert_close(first.weights, second.weights, atol=0, rtol=0)
    for a, b in zip(method.rotations(), restored.rotations(), strict=True):
        torch.testing.assert_close(a, b, atol=0, rtol=0)


def test_bad_use_raises_one_line_errors() -> None:
    problem = make_tiny_problem(2)
    method = create("rotograd", 2)
    with pytest.raises(UserInputError, match="wrap_model"):
        _backward(method, problem)
    assert method.wrap_model(problem.model) is method.wrap_model(problem.model)  # idempotent
    with pytest.raises(UserInputError, match="once"):
        create("rotograd", 2).wrap_model(problem.model)
    with pytest.raises(UserInputError, match="context"):
        _backward(method, problem)
    with pytest.raises(UserInputError, match="rotation_size"):
        create("rotograd", 2, rotation_size=0)
    capped = create("rotograd", 2, rotation_size=100)
    capped.wrap_model(make_tiny_problem(2).model)
    assert capped.rotation_size == 6

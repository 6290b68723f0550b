"""The trainer's per-step protocol for CAGrad, Nash-MTL, Aligned-MTL, UPGrad, GradVac and FairGrad."""

from __future__ import annotations

import pytest
import torch

from mtlbench.methods import HeadGradient, aggregate, create, get

from .conftest import make_tiny_problem, train_steps

METHODS = ["cagrad", "nash_mtl", "aligned_mtl", "upgrad", "gradvac", "fairgrad"]


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models: one intra-op thread avoids OpenMP spinning on a shared CPU (results are unchanged)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("n_tasks", [2, 3])
@pytest.mark.parametrize("name", METHODS)
def test_trains_with_finite_weights(name, n_tasks):
    problem = make_tiny_problem(n_tasks, seed=n_tasks)
    method = create(name, n_tasks, generator=torch.Generator().manual_seed(0))
    before = [p.detach().clone() for p in problem.model.parameters()]
    weights = train_steps(method, problem, steps=4)
    assert len(weights) == 4
    for w in weights:
        assert w is not None and w.shape == (n_tasks,) and bool(torch.isfinite(w).all())
    after = list(problem.model.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, after, strict=True))
    state = method.state_dict()
    restored = create(name, n_tasks)
    restored.load_state_dict(state)
    assert method.counters.get("solver_fallback", 0) == 0


@pytest.mark.parametrize("name", METHODS)
def test_representation_space(name):
    problem = make_tiny_problem(2, seed=5)
    method = create(name, 2, space="representation", generator=torch.Generator().manual_seed(0))
    weights = train_steps(method, problem, steps=2)
    assert all(bool(torch.isfinite(w).all()) for w in weights)


@pytest.mark.parametrize("name", METHODS)
def test_one_step_matches_combine_and_head_rule(name):
    problem = make_tiny_problem(3, seed=1)
    model = problem.model
    hparams = {"max_norm": 0.0} if name in {"nash_mtl", "fairgrad"} else {}
    method = create(name, 3, generator=torch.Generator().manual_seed(3), **hparams)
    twin = create(name, 3, generator=torch.Generator().manual_seed(3), **hparams)
    losses = problem.losses()
    shared, heads = model.shared_parameters(), model.task_parameters()
    rows = []
    plain = []
    for i in range(3):
        grads = torch.autograd.grad(losses[i], shared + heads[i], retain_graph=True)
        rows.append(torch.cat([g.reshape(-1) for g in grads[: len(shared)]]))
        plain.append(grads[len(shared) :])
    expected = twin.combine(
        torch.stack(rows), losses=losses.detach(), state=twin.initial_state(), generator=twin.generator
    )
    result = method.backward(losses, shared, task_parameters=heads)
    torch.testing.assert_close(result.weights, expected.weights)
    torch.testing.assert_close(torch.cat([p.grad.reshape(-1) for p in shared]), expected.direction)
    weighted = get(name).head_gradient is HeadGradient.WEIGHTED
    for i in range(3):
        scale = expected.weights[i] if weighted else 1.0
        for p, g in zip(heads[i], plain[i], strict=True):
            torch.testing.assert_close(p.grad, scale * g)


@pytest.mark.parametrize("name", METHODS)
def test_aggregate_without_a_training_loop(name):
    g = torch.randn(3, 7, generator=torch.Generator().manual_seed(4))
    result = aggregate(name, g, generator=torch.Generator().manual_seed(0))
    assert result.direction.shape == (7,) and result.direction.dtype == g.dtype
    assert result.weights is not None and bool(torch.isfinite(result.weights).all())
    torch.testing.assert_close(result.weights @ g, result.direction * _divisor(name, result), rtol=1e-5, atol=1e-6)
    cls = get(name)
    assert cls.citation and cls.title and cls.__doc__
    assert set(cls.grids) <= {"multi_mnist", "cityscapes", "qm9", "default"}
    assert (result.state is None) == cls.stateless


def _divisor(name: str, result) -> float:
    """CAGrad's weights are the coefficients before its default rescaling by 1 + c^2."""
    return 1.0 + 0.5**2 if name == "cagrad" else 1.0

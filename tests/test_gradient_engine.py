"""Exactness of every path of the per-task gradient engine against the plain loop of autograd calls."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mtlbench import methods
from mtlbench.errors import UserInputError
from mtlbench.methods.gradients import (
    EngineOptions,
    gram_factor,
    gramian,
    parameter_blocks,
    per_task_gradients,
    reaches_only_through,
    task_roots,
)
from mtlbench.models.base import MultiTaskModel


def _model(n_tasks: int, seed: int = 0, bypass: bool = False) -> tuple[MultiTaskModel, torch.Tensor, torch.Tensor]:
    """A small MLP trunk with two-layer heads; ``bypass``: head 0 also reads the first trunk layer's bias."""
    torch.manual_seed(seed)
    encoder = nn.Sequential(nn.Linear(5, 12), nn.Tanh(), nn.Linear(12, 7), nn.Tanh())
    heads = {f"t{i}": nn.Sequential(nn.Linear(7, 4), nn.Tanh(), nn.Linear(4, 1)) for i in range(n_tasks)}
    model = MultiTaskModel(encoder, heads, representation_size=7)
    x = torch.randn(10, 5, dtype=torch.float64)
    y = x[:, :1] + 0.5 * torch.randn(10, n_tasks, dtype=torch.float64)  # related tasks, some conflict
    model.double()
    if bypass:
        model._bypass = encoder[0].bias  # type: ignore[attr-defined]
    return model, x, y


def _forward(model: MultiTaskModel, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    z = model.encode(x)
    outputs = model.decode(z)
    losses = []
    for i, name in enumerate(model.task_names):
        loss = ((outputs[name].squeeze(-1) - y[:, i]) ** 2).mean()
        if i == 0 and hasattr(model, "_bypass"):
            loss = loss + model._bypass.pow(2).sum()
        losses.append(loss)
    return z, torch.stack(losses)


def _reference(losses: torch.Tensor, inputs: list[torch.Tensor], heads: list[list[torch.Tensor]] | None = None):
    """The plain loop: one autograd call per task on ``losses[i]``."""
    rows, own = [], []
    for i in range(losses.shape[0]):
        grads = torch.autograd.grad(losses[i], inputs, retain_graph=True, allow_unused=True)
        rows.append(
            torch.cat(
                [(g if g is not None else torch.zeros_like(p)).reshape(-1) for g, p in zip(grads, inputs, strict=False)]
            )
        )
        if heads is not None:
            own.append(torch.autograd.grad(losses[i], heads[i], retain_graph=True))
    return torch.stack(rows), own


@pytest.mark.parametrize("n_tasks", [2, 11])
@pytest.mark.parametrize(
    ("path", "chunk"), [("loop", None), ("two_stage", None), ("batched", None), ("batched", 2), ("batched", 4)]
)
def test_parameter_paths_match_the_plain_loop(n_tasks, path, chunk):
    model, x, y = _model(n_tasks)
    shared, heads = model.shared_parameters(), model.task_parameters()
    z, losses = _forward(model, x, y)
    expected, expected_heads = _reference(losses, shared, heads)
    got, got_heads = per_task_gradients(losses, shared, heads, features=z, path=path, chunk_size=chunk)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-14)
    for mine, theirs in zip(got_heads, expected_heads, strict=True):
        for a, b in zip(mine, theirs, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("n_tasks", [2, 11])
def test_representation_gradients_match_the_plain_loop(n_tasks):
    model, x, y = _model(n_tasks)
    z, losses = _forward(model, x, y)
    expected, _ = _reference(losses, [z])
    got, _ = per_task_gradients(losses, [z], model.task_parameters(), retain_graph=True)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-14)


def test_task_roots_only_for_a_stack_of_scalars_and_other_graphs_stay_exact():
    model, x, y = _model(3)
    shared = model.shared_parameters()
    _z, losses = _forward(model, x, y)
    assert task_roots(losses) is not None and len(task_roots(losses)) == 3
    scaled = losses * torch.tensor([1.0, 2.0, 3.0], dtype=losses.dtype)  # not a stack: select per task
    assert task_roots(scaled) is None
    expected, _ = _reference(scaled, shared)
    got, _ = per_task_gradients(scaled, shared)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-14)


def test_each_head_is_backpropagated_once_per_step():
    """Task i's backward starts at L_i: no other head runs (with a zero gradient)."""
    model, x, y = _model(4)
    calls = {name: 0 for name in model.task_names}
    for name, head in model.heads.items():
        head[0].weight.register_hook(lambda g, name=name: calls.__setitem__(name, calls[name] + 1))
    _z, losses = _forward(model, x, y)
    per_task_gradients(losses, model.shared_parameters(), model.task_parameters())
    assert calls == {name: 1 for name in model.task_names}


def test_a_loss_bypassing_the_representation_is_detected_and_the_result_stays_exact():
    model, x, y = _model(3, bypass=True)
    shared, heads = model.shared_parameters(), model.task_parameters()
    z, losses = _forward(model, x, y)
    assert not reaches_only_through(losses, z, shared)
    assert reaches_only_through(losses, z, shared[2:])  # the second trunk layer is reached through z only
    expected, _ = _reference(losses, shared)
    got, _ = per_task_gradients(losses, shared, heads, features=z, path="batched")
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("n_tasks", [2, 11])
@pytest.mark.parametrize("max_bytes", [None, 1, 2000])
def test_gramian_by_blocks_matches_the_full_matrix(n_tasks, max_bytes):
    model, x, y = _model(n_tasks)
    shared = model.shared_parameters()
    _z, losses = _forward(model, x, y)
    expected, expected_heads = _reference(losses, shared, model.task_parameters())
    blocks = parameter_blocks(shared, n_tasks, max_bytes)
    assert [p for block in blocks for p in block] == shared
    if max_bytes == 1:
        assert len(blocks) == len(shared)
    K, heads = gramian(losses, shared, model.task_parameters(), max_bytes=max_bytes)
    torch.testing.assert_close(K, expected @ expected.T, rtol=1e-12, atol=1e-14)
    for mine, theirs in zip(heads, expected_heads, strict=True):
        for a, b in zip(mine, theirs, strict=True):
            torch.testing.assert_close(a, b)


def test_gram_factor_recovers_the_coefficients_of_any_combination_even_rank_deficient():
    generator = torch.Generator().manual_seed(0)
    basis = torch.randn(3, 40, generator=generator, dtype=torch.float64)
    G = torch.cat([basis, basis[:1] + 2 * basis[1:2], torch.zeros(1, 40, dtype=torch.float64)])  # rank 3 of 5
    K = G @ G.T
    R, R_pinv = gram_factor(K)
    torch.testing.assert_close(R @ R.T, K, rtol=1e-10, atol=1e-10)
    c = torch.randn(5, generator=generator, dtype=torch.float64)
    recovered = (c @ R) @ R_pinv  # a method's direction on R, mapped back to coefficients of G
    torch.testing.assert_close(recovered @ G, c @ G, rtol=1e-10, atol=1e-10)


def _step(name: str, n_tasks: int, engine: EngineOptions, seed: int = 0):
    model, x, y = _model(n_tasks, seed=seed)
    method = methods.create(name, n_tasks=n_tasks, generator=torch.Generator().manual_seed(3))
    method.engine = engine
    z, losses = _forward(model, x, y)
    result = method.backward(losses, model.shared_parameters(), features=z, task_parameters=model.task_parameters())
    grads = [p.grad.clone() for p in model.parameters()]
    return grads, result.weights


GRAMIAN_METHODS = [
    name
    for name in methods.METHODS.names()
    if getattr(methods.METHODS[name], "gramian_only", False) and methods.METHODS[name].default_space == "parameters"
]


def test_the_gramian_only_methods_are_the_expected_ones():
    assert {"mgda", "cagrad", "nash_mtl", "upgrad", "fairgrad", "pcgrad", "imtl_g"} <= set(
        n for n in methods.METHODS.names() if getattr(methods.METHODS[n], "gramian_only", False)
    )


@pytest.mark.parametrize("name", GRAMIAN_METHODS)
@pytest.mark.parametrize("n_tasks", [2, 5])
def test_gramian_path_gives_the_same_step_as_the_loop(name, n_tasks):
    expected, expected_weights = _step(name, n_tasks, EngineOptions("loop"))
    got, got_weights = _step(name, n_tasks, EngineOptions("gramian", max_gradient_bytes=500))
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-9)
    if expected_weights is None:
        assert got_weights is None
    else:
        torch.testing.assert_close(got_weights, expected_weights, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("name", ["mgda", "upgrad", "imtl_g", "graddrop"])
@pytest.mark.parametrize("path", ["two_stage", "batched", "auto"])
def test_method_steps_do_not_depend_on_the_engine_path(name, path):
    expected, _ = _step(name, 3, EngineOptions("loop"))
    got, _ = _step(name, 3, EngineOptions(path, chunk_size=2, max_gradient_bytes=10**9))
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_auto_switches_to_the_gramian_over_the_memory_budget():
    method = methods.create("mgda", n_tasks=2)
    shared = [torch.zeros(100, requires_grad=True)]
    method.engine = EngineOptions("auto", max_gradient_bytes=2 * 100 * 4)
    assert not method._uses_gramian(2, shared)
    method.engine = EngineOptions("auto", max_gradient_bytes=2 * 100 * 4 - 1)
    assert method._uses_gramian(2, shared)
    assert not methods.create("graddrop", n_tasks=2)._uses_gramian(2, shared)  # needs the gradients themselves


@pytest.mark.parametrize("name", ["mgda_ub", "imtl_g", "graddrop", "imtl"])
def test_representation_methods_backpropagate_through_the_encoder_once(name):
    model, x, y = _model(5)
    first = model.encoder[0].weight
    calls = []
    first.register_hook(lambda g: calls.append(1))
    method = methods.create(name, n_tasks=5, generator=torch.Generator().manual_seed(0))
    z, losses = _forward(model, x, y)
    method.backward(losses, model.shared_parameters(), features=z, task_parameters=model.task_parameters())
    assert len(calls) == 1


def test_engine_options_are_validated():
    with pytest.raises(UserInputError, match="engine path 'fast'"):
        EngineOptions("fast")
    with pytest.raises(UserInputError, match="chunk_size=0"):
        EngineOptions("batched", chunk_size=0)

"""IMTL (Liu et al. 2021): IMTL-G equal projections (000 Prop. 3), IMTL-L scale invariance, hybrid."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import mtlbench.methods as methods
from mtlbench.methods import TrainingContext

from .conftest import make_tiny_problem


def _unit(g: torch.Tensor) -> torch.Tensor:
    return g / g.norm(dim=1, keepdim=True)


@pytest.mark.parametrize("n_tasks", [2, 3, 4])
def test_imtl_g_direction_has_equal_projections_on_unit_gradients(n_tasks):
    generator = torch.Generator().manual_seed(n_tasks)
    g = torch.randn(n_tasks, 10, generator=generator, dtype=torch.float64)
    g = g * (torch.rand(n_tasks, 1, generator=generator, dtype=torch.float64) * 4 + 0.2)
    exact = methods.aggregate("imtl_g", g, eps=0.0)
    projections = _unit(g) @ exact.direction
    assert torch.allclose(projections, projections[0].expand(n_tasks), atol=1e-10)
    assert float(exact.weights.sum()) == pytest.approx(1.0) and torch.allclose(exact.weights @ g, exact.direction)
    ridge = methods.aggregate("imtl_g", g)  # the reference's eps = 1e-6 barely moves it
    assert torch.allclose(ridge.direction, exact.direction, rtol=1e-4, atol=1e-5)
    transposed = methods.aggregate("imtl_g", g, eps=0.0, system="transposed")
    if n_tasks == 2:
        assert torch.allclose(transposed.direction, exact.direction)
    else:  # Gama & Grassi's code solves (D U^T) a = U g_1: projections are no longer equal
        projections = _unit(g) @ transposed.direction
        assert not torch.allclose(projections, projections[0].expand(n_tasks), atol=1e-6)


def test_proposition_3_equal_norms_give_equal_weights():
    g = torch.randn(2, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    g = 3.0 * _unit(g)
    result = methods.aggregate("imtl_g", g)
    assert torch.allclose(result.weights, torch.full((2,), 0.5, dtype=torch.float64))
    assert methods.get("imtl_g").validate({})["space"] == "representation"


def test_singular_systems_fall_back_without_crashing():
    row = torch.randn(1, 5)
    same = methods.aggregate("imtl_g", row.repeat(3, 1))  # identical gradients: D = U = 0
    assert same.info["count_solver_fallback"] == 1
    assert torch.allclose(same.direction, row[0]) and bool(torch.isfinite(same.weights).all())
    collinear = methods.aggregate("imtl_g", torch.cat([row, 2 * row, -row]))
    assert collinear.info["count_solver_fallback"] == 1 and bool(torch.isfinite(collinear.direction).all())
    zero = methods.aggregate("imtl_g", torch.cat([row, torch.zeros(1, 5)]))
    assert zero.info["count_solver_fallback"] == 1 and torch.equal(zero.direction, torch.zeros(5))
    assert "count_solver_fallback" not in methods.aggregate("imtl_g", torch.randn(3, 5)).info


def test_fallback_is_counted_by_the_method_in_training():
    problem = make_tiny_problem(2)
    method = methods.create("imtl_g", 2)
    features = problem.model.encode(problem.batch.inputs)
    output = problem.model.decode(features)["t0"].squeeze(-1)
    loss = nn.functional.mse_loss(output, problem.batch.targets["t0"])
    method.backward(torch.stack([loss, loss]), problem.model.shared_parameters(), features=features)
    assert method.counters["solver_fallback"] == 1


def test_imtl_l_first_step_and_convergence_to_unit_scaled_losses():
    losses = torch.tensor([0.5, 4.0])
    method = methods.create("imtl_l", 2, lr=0.1)
    leaf = losses.clone().requires_grad_(True)
    result = method.backward(leaf, [])
    assert torch.allclose(result.weights, torch.ones(2))  # e^0, the scales used in the step
    assert torch.allclose(leaf.grad, torch.ones(2))
    # gradient e^s L - 1 = (-0.5, 3): Adam's first step moves each scale by lr against its sign
    assert torch.allclose(method.log_scales.value.detach(), torch.tensor([0.1, -0.1]), atol=1e-6)
    for step in range(250):
        if step == 150:
            method.scale_optimizer.param_groups[0]["lr"] = 0.01
        method.backward(losses.clone().requires_grad_(True), [])
    assert torch.allclose(method.log_scales.value.detach().exp() * losses, torch.ones(2), atol=0.05)


def test_imtl_l_gradient_at_the_optimum_is_invariant_to_loss_scales():
    a = torch.tensor([[1.0, -2.0, 0.5], [0.3, 0.2, -1.0]])
    b = torch.tensor([0.7, -1.5])
    gradients = []
    for scale in (torch.ones(2), torch.tensor([10.0, 0.01])):
        theta = torch.tensor([0.2, -0.1, 0.4], requires_grad=True)
        losses = scale * (a @ theta - b) ** 2
        method = methods.create("imtl_l", 2, lr=0.1)
        optimum = -losses.detach().log()  # e^{s} L = 1
        method.log_scales.value.data.copy_(optimum)
        result = method.backward(losses, [theta])
        assert torch.allclose(result.weights * losses.detach(), torch.ones(2))  # s-gradient e^s L - 1 = 0
        gradients.append(theta.grad.clone())
    assert torch.allclose(gradients[0], gradients[1], rtol=1e-5)  # sum_i grad L_i / L_i either way


def test_imtl_l_learning_rate_comes_from_the_trainer_unless_given():
    context = TrainingContext(
        model=None,
        optimizer=None,
        lr=0.123,
        weight_decay=0.0,
        task_names=["a", "b"],
        loss_types=[],
        compute_losses=None,
    )
    for name in ("imtl_l", "imtl"):
        default, explicit = methods.create(name, 2), methods.create(name, 2, lr=0.5)
        assert default.scale_optimizer.param_groups[0]["lr"] == pytest.approx(1e-3)
        default.attach(context)
        explicit.attach(context)
        assert default.scale_optimizer.param_groups[0]["lr"] == pytest.approx(0.123)
        assert explicit.scale_optimizer.param_groups[0]["lr"] == pytest.approx(0.5)


def test_hybrid_combine_is_imtl_g_on_scaled_gradients():
    g = torch.randn(3, 8, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    s = torch.tensor([0.3, -1.0, 0.7], dtype=torch.float64)
    hybrid = methods.aggregate("imtl", g, state=s, eps=0.0)
    plain = methods.aggregate("imtl_g", s.exp()[:, None] * g, eps=0.0)
    assert torch.allclose(hybrid.direction, plain.direction)
    assert torch.allclose(hybrid.weights, plain.weights * s.exp())
    assert torch.allclose(hybrid.weights @ g, hybrid.direction)
    assert torch.allclose(methods.aggregate("imtl", g).direction, methods.aggregate("imtl_g", g).direction)


@pytest.mark.parametrize("space", ["parameters", "representation"])
def test_hybrid_step_weights_heads_by_the_scales_and_updates_them(space):
    problem = make_tiny_problem(2, seed=3)
    method = methods.create("imtl", 2, space=space, lr=0.01)
    s = torch.tensor([0.4, -0.2])
    method.log_scales.value.data.copy_(s)
    model = problem.model
    shared, heads = model.shared_parameters(), model.task_parameters()
    features = model.encode(problem.batch.inputs)
    outputs = model.decode(features)
    losses = torch.stack(
        [nn.functional.mse_loss(outputs[n].squeeze(-1), problem.batch.targets[n]) for n in ("t0", "t1")]
    )
    per_task = [torch.autograd.grad(losses[i], shared + heads[i], retain_graph=True) for i in range(2)]
    result = method.backward(losses, shared, features=features, task_parameters=heads)
    for i in range(2):
        for p, g in zip(heads[i], per_task[i][len(shared) :], strict=True):
            assert torch.allclose(p.grad, s[i].exp() * g, atol=1e-6)
    if space == "parameters":
        for k, p in enumerate(shared):
            expected = sum(result.weights[i] * per_task[i][k] for i in range(2))
            assert torch.allclose(p.grad, expected, atol=1e-6)
    steps = torch.sign(s.exp() * losses.detach() - 1.0) * 0.01
    assert torch.allclose(method.log_scales.value.detach(), s - steps, atol=1e-6)
    assert torch.allclose(method.state, s)

"""The solvers and the gradient engine stay exact at T = 40 (CelebA's task count), as they are tested at T = 11."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.optimize import minimize

from mtlbench import methods
from mtlbench.methods import aggregate
from mtlbench.methods.gradients import EngineOptions, gradient_bytes
from mtlbench.methods.solvers import gram, min_norm_weights
from mtlbench.methods.solvers_qp import _cagrad_active_set, _cagrad_kkt, cagrad_weights, dual_cone_weights
from mtlbench.models.base import MultiTaskModel
from mtlbench.models.cifar_resnet import LogSoftmaxHead, build_cifar_resnet

T = 40


def _gradients(seed: int, d: int, shared: float = 0.5) -> torch.Tensor:
    """T gradients of different norms with a shared component (some conflict)."""
    rng = torch.Generator().manual_seed(seed)
    g = (
        torch.randn(T, d, generator=rng, dtype=torch.float64)
        * torch.linspace(0.3, 3.0, T, dtype=torch.float64)[:, None]
    )
    return g + shared * torch.randn(1, d, generator=rng, dtype=torch.float64)


def _slsqp_min_norm(G: np.ndarray) -> float:
    result = minimize(
        lambda x: x @ G @ x,
        np.full(T, 1.0 / T),
        jac=lambda x: 2 * G @ x,
        bounds=[(0, 1)] * T,
        constraints=[{"type": "eq", "fun": lambda x: x.sum() - 1}],
        method="SLSQP",
        options={"ftol": 1e-15, "maxiter": 1000},
    )
    return float(result.fun)


@pytest.mark.parametrize("dim", [15, 200])  # T > D (rank-deficient Gram matrix) and D > T
def test_min_norm_point_satisfies_kkt_and_beats_slsqp(dim: int) -> None:
    g = _gradients(dim, dim)
    G = gram(g)
    w = min_norm_weights(G)
    assert bool((w >= 0).all()) and float(w.sum()) == pytest.approx(1.0, abs=1e-12)
    grad, value, scale = G @ w, float(w @ G @ w), float(G.diagonal().max())
    assert float((value - grad).max()) / scale < 1e-9  # (G w)_i >= w^T G w for every i
    support = w > 1e-9
    assert float((grad[support] - value).abs().max()) / scale < 1e-9  # equality on the support
    assert value <= _slsqp_min_norm(G.numpy()) + 1e-9 * scale


def test_cagrad_active_set_is_optimal_at_forty_tasks() -> None:
    rng = np.random.default_rng(40)
    for trial in range(3):
        g = rng.normal(size=(T, 60)) * rng.uniform(0.1, 5.0, size=(T, 1)) + rng.normal(size=(1, 60))
        K = g @ g.T
        K /= np.trace(K)
        b = np.full(T, 1.0 / T)
        a = K @ b
        C = (0.2 + 0.3 * trial) * math.sqrt(float(b @ a))
        w = _cagrad_active_set(K, a, C)
        assert w is not None and _cagrad_kkt(K, a, C, w)
        assert w.min() >= 0.0 and w.sum() == pytest.approx(1.0, abs=1e-12)
        # the dual objective is no larger at any of 5,000 random simplex points or the vertices
        others = np.vstack([rng.dirichlet(np.ones(T), size=5000), np.eye(T)])
        objective = others @ a + C * np.sqrt(np.clip(np.einsum("ki,ij,kj->k", others, K, others), 0, None))
        assert float(w @ a + C * math.sqrt(w @ K @ w)) <= float(objective.min()) + 1e-12
    assert cagrad_weights(g @ g.T, 0.5).shape == (T,)


def test_nash_mtl_and_fairgrad_optimality_conditions() -> None:
    g = _gradients(1, 80)
    K = g @ g.T
    alpha = aggregate("nash_mtl", g).weights
    assert bool((alpha > 0).all())
    assert float((K @ alpha - 1 / alpha).norm() / (1 / alpha).norm()) < 1e-7
    for power in (0.5, 2.0):
        result = aggregate("fairgrad", g, alpha=power)
        w = result.weights / T
        rhs = w ** (-1.0 / power)
        assert float((K @ w - rhs).norm() / rhs.norm()) < 1e-7
        torch.testing.assert_close(result.direction, T * (w @ g))


def test_upgrad_imtl_g_and_pcgrad_properties() -> None:
    g = _gradients(2, 80, shared=0.1)
    assert float((g @ g.T).min()) < 0  # there are conflicts
    upgrad = aggregate("upgrad", g, reg_eps=0.0).direction
    assert float((g @ upgrad).min()) >= -1e-9 * float(g.norm() * upgrad.norm())  # conflicts with no task
    U = np.random.default_rng(0).normal(size=(3, T))
    V = dual_cone_weights((g @ g.T).numpy(), U)
    assert bool((V >= U - 1e-12).all())
    unit = g / g.norm(dim=1, keepdim=True)
    imtl = aggregate("imtl_g", g, eps=0.0)
    projections = unit @ imtl.direction
    torch.testing.assert_close(projections, projections[0].expand(T), rtol=1e-8, atol=1e-8)
    # PCGrad removes every conflict it visits; without conflicts it is the sum
    positive = torch.rand(T, 30, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    torch.testing.assert_close(aggregate("pcgrad", positive).direction, positive.sum(0))


def _celeba_like(resnet: bool = True, seed: int = 0) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    """40 log-softmax heads on 003's ResNet at width 1 or on a small MLP (double precision), six inputs.

    Six inputs: the 40 gradients span at most B x 8 dimensions, and B x 8 >= 40 keeps the weights unique.
    """
    torch.manual_seed(seed)
    heads = {f"a{i}": LogSoftmaxHead(8, 2) for i in range(T)}
    if resnet:
        model = build_cifar_resnet(heads, width=1, image_size=32).double()
        x = torch.randn(6, 3, 32, 32, dtype=torch.float64)
    else:
        encoder = torch.nn.Sequential(torch.nn.Linear(5, 24), torch.nn.Tanh(), torch.nn.Linear(24, 8), torch.nn.Tanh())
        model = MultiTaskModel(encoder, heads, representation_size=8).double()
        x = torch.randn(6, 5, dtype=torch.float64)
    model.eval()  # batch norm from running statistics: every path sees the same function
    return model, x, torch.randint(0, 2, (6, T))


def _step(
    name: str, engine: EngineOptions | None, resnet: bool = True
) -> tuple[list[torch.Tensor], torch.Tensor | None]:
    model, x, y = _celeba_like(resnet)
    method = methods.create(name, n_tasks=T, generator=torch.Generator().manual_seed(3))
    if engine is not None:
        method.engine = engine
    z = model.encode(x)
    outputs = model.decode(z)
    losses = torch.stack([torch.nn.functional.nll_loss(outputs[f"a{i}"], y[:, i]) for i in range(T)])
    result = method.backward(losses, model.shared_parameters(), features=z, task_parameters=model.task_parameters())
    return [p.grad.clone() for p in model.parameters()], result.weights


GRAMIAN = [n for n in methods.METHODS.names() if getattr(methods.METHODS[n], "gramian_only", False)]
GRAMIAN = [n for n in GRAMIAN if methods.METHODS[n].default_space == "parameters"]


@pytest.mark.parametrize(("name", "resnet"), [(name, False) for name in GRAMIAN] + [("mgda", True)])
def test_gramian_path_within_a_memory_budget_gives_the_loops_step(name: str, resnet: bool) -> None:
    model = _celeba_like(resnet)[0]
    budget = gradient_bytes(T, model.shared_parameters()) // 2  # the (T, D) matrix does not fit
    expected, expected_weights = _step(name, EngineOptions("loop"), resnet)
    got, got_weights = _step(name, EngineOptions("gramian", max_gradient_bytes=budget), resnet)
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-9)
    if expected_weights is None:
        assert got_weights is None
    else:
        torch.testing.assert_close(got_weights, expected_weights, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("name", ["mgda_ub", "imtl", "graddrop"])
def test_representation_methods_combine_the_forty_gradients_on_z(name: str) -> None:
    """The step equals: T gradients w.r.t. z by plain autograd calls, ``aggregate``, one backward into the encoder."""
    got, _ = _step(name, None, resnet=False)
    model, x, y = _celeba_like(resnet=False)
    z = model.encode(x)
    outputs = model.decode(z)
    losses = torch.stack([torch.nn.functional.nll_loss(outputs[f"a{i}"], y[:, i]) for i in range(T)])
    rows = torch.stack([torch.autograd.grad(losses[i], z, retain_graph=True)[0].reshape(-1) for i in range(T)])
    result = aggregate(name, rows, losses=losses.detach(), features=z, generator=torch.Generator().manual_seed(3))
    encoder = list(model.encoder.parameters())
    expected = torch.autograd.grad(z, encoder, result.direction.view_as(z), retain_graph=True)
    for a, b in zip(got[: len(encoder)], expected, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)
    for i, head in enumerate(model.heads.values()):  # each head gets its own task's plain gradient
        own = torch.autograd.grad(losses[i], list(head.parameters()), retain_graph=True)
        offset = len(encoder) + 2 * i
        for a, b in zip(got[offset : offset + 2], own, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)

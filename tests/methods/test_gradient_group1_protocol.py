"""Group-1 gradient SMTOs through the trainer's step protocol and through ``aggregate``."""

from __future__ import annotations

import copy

import pytest
import torch

from mtlbench.methods import GradientMethod, HeadGradient, MethodKind, aggregate, create, get

from .conftest import make_tiny_problem, train_steps

#: name -> (default space, reports weights)
GRADIENT_METHODS = {
    "mgda": ("parameters", True),
    "mgda_ub": ("representation", True),
    "pcgrad": ("parameters", False),
    "graddrop": ("representation", False),
    "edm": ("parameters", True),
    "cdtt": ("parameters", True),
    "imtl_g": ("representation", True),
    "imtl": ("representation", True),
}
ALL = [*GRADIENT_METHODS, "imtl_l"]


@pytest.mark.parametrize("n_tasks", [2, 3])
@pytest.mark.parametrize("space", ["parameters", "representation"])
@pytest.mark.parametrize("name", sorted(GRADIENT_METHODS))
def test_trains_in_both_spaces(name: str, space: str, n_tasks: int) -> None:
    problem = make_tiny_problem(n_tasks, seed=n_tasks)
    before = [p.detach().clone() for p in problem.model.parameters()]
    method = create(name, n_tasks, generator=torch.Generator().manual_seed(0), space=space)
    weights = train_steps(method, problem, steps=12 if name == "cdtt" else 3)  # CDTT's tensions start at step 11
    for w in weights:
        if GRADIENT_METHODS[name][1]:
            assert w is not None and w.shape == (n_tasks,) and bool(torch.isfinite(w).all())
        else:
            assert w is None
    after = list(problem.model.parameters())
    assert all(bool(torch.isfinite(p).all()) for p in after)
    assert any(not torch.equal(a, b) for a, b in zip(before, after, strict=True))
    assert bool(torch.isfinite(problem.losses()).all())


@pytest.mark.parametrize("n_tasks", [2, 3])
def test_imtl_l_trains(n_tasks: int) -> None:
    problem = make_tiny_problem(n_tasks, seed=n_tasks)
    method = create("imtl_l", n_tasks)
    weights = train_steps(method, problem, steps=3)
    assert all(w is not None and w.shape == (n_tasks,) and bool((w > 0).all()) for w in weights)
    assert method.scale_optimizer.param_groups[0]["lr"] == pytest.approx(1e-2)  # the trainer's lr (attach)
    assert method.kind is MethodKind.LOSS and method.head_gradient is HeadGradient.WEIGHTED


@pytest.mark.parametrize("name", sorted(GRADIENT_METHODS))
def test_declarations_and_aggregate(name: str) -> None:
    cls = get(name)
    space, reports = GRADIENT_METHODS[name]
    assert issubclass(cls, GradientMethod) and cls.validate({})["space"] == space
    assert cls.title and cls.citation and cls.name == name
    assert cls.head_gradient is (HeadGradient.WEIGHTED if name == "imtl" else HeadGradient.OWN)
    generator = torch.Generator().manual_seed(1)
    g = torch.randn(3, 12, generator=generator, dtype=torch.float64)
    losses = torch.rand(3, generator=generator, dtype=torch.float64) + 0.1
    result = aggregate(name, g, losses=losses, generator=torch.Generator().manual_seed(2))
    assert result.direction.shape == (12,) and bool(torch.isfinite(result.direction).all())
    if reports:  # the weights are the effective coefficients of the direction
        assert torch.allclose(result.weights @ g, result.direction, atol=1e-10)
    else:
        assert result.weights is None
    method = create(name, 3, generator=torch.Generator().manual_seed(2))
    again = method.combine(g, losses=losses, state=method.initial_state(), generator=torch.Generator().manual_seed(2))
    assert torch.allclose(again.direction, result.direction)


@pytest.mark.parametrize("name", ["cdtt", "imtl", "imtl_l"])
def test_stateful_methods_resume_from_a_checkpoint(name: str) -> None:
    first = make_tiny_problem(2, seed=4)
    method = create(name, 2)
    train_steps(method, first, steps=11)
    resumed = create(name, 2)
    resumed.load_state_dict(copy.deepcopy(method.state_dict()))  # as a save/load round trip
    assert not get(name).stateless
    twin = make_tiny_problem(2, seed=4)
    twin.model.load_state_dict(first.model.state_dict())
    a = train_steps(method, first, steps=2)
    b = train_steps(resumed, twin, steps=2)
    for wa, wb in zip(a, b, strict=True):
        assert torch.allclose(wa, wb)

"""Every loss-based SMTO through the trainer's step protocol: finite weights of the right shape."""

from __future__ import annotations

import pytest
import torch

from mtlbench.methods import HeadGradient, MethodKind, create, get

from .conftest import make_tiny_problem, train_steps

#: name -> whether its reported weights sum to T (mtlbench's Conventions)
METHODS = {
    "uw": False,  # effective coefficients 1/(2 sigma^2) etc.
    "uw_optimal": False,  # 1 / L_i
    "si": True,
    "rlw_normal": True,
    "rlw_dirichlet": True,
    "dwa": True,
    "famo": True,
    "avgnorm": False,  # ||sum g|| / ||g_i||
    "gradnorm": True,
}


@pytest.mark.parametrize("n_tasks", [2, 3])
@pytest.mark.parametrize("name", sorted(METHODS))
def test_protocol(name: str, n_tasks: int) -> None:
    problem = make_tiny_problem(n_tasks, seed=n_tasks)
    method = create(name, n_tasks, generator=torch.Generator().manual_seed(0))
    start = [p.detach().clone() for p in problem.model.parameters()]
    weights = train_steps(method, problem, steps=4)
    assert len(weights) == 4
    for w in weights:
        assert w is not None and w.shape == (n_tasks,)
        assert torch.isfinite(w).all() and (w > 0).all()
        if METHODS[name]:
            torch.testing.assert_close(w.sum(), torch.tensor(float(n_tasks)), rtol=1e-5, atol=1e-5)
    moved = [not torch.equal(a, b.detach()) for a, b in zip(start, problem.model.parameters(), strict=True)]
    assert all(moved)
    # the method's state survives a checkpoint round trip
    fresh = create(name, n_tasks)
    fresh.load_state_dict(method.state_dict())
    assert fresh.state_dict().keys() == method.state_dict().keys()


@pytest.mark.parametrize("name", sorted(METHODS))
def test_declarations(name: str) -> None:
    cls = get(name)
    assert cls.kind is MethodKind.LOSS and cls.head_gradient is HeadGradient.WEIGHTED
    assert cls.title and cls.citation and cls.__module__.startswith("mtlbench.methods.")
    assert cls.__doc__ and __import__(cls.__module__, fromlist=["_"]).__doc__
    assert cls.randomized == name.startswith("rlw")
    assert cls.needs_extra_forward == (name == "famo")
    for problem, grid in cls.grids.items():
        assert problem in {"multi_mnist", "cityscapes", "qm9"}
        for key, values in grid.items():
            for value in values:
                cls.validate({key: value})

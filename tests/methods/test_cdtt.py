"""CDTT (Nakamura et al. 2022): EDM plus tensions, 000 Proposition 5, state in and out of combine."""

from __future__ import annotations

import math

import pytest
import torch

import mtlbench.methods as methods
from mtlbench.errors import UserInputError


class _ReferenceCDTT:
    """The reference algorithm (MTL_TaskTensioner / Gama & Grassi) in the gradient space, float64."""

    def __init__(self, n_tasks: int, alpha: float, window: int = 10) -> None:
        self.history = torch.zeros(n_tasks, window, dtype=torch.float64)
        self.iterations, self.previous, self.alpha, self.window = 0, None, alpha, window
        self.corrected = False

    def step(self, g: torch.Tensor, losses: torch.Tensor) -> torch.Tensor:
        norms = g.norm(dim=1)
        self.history[:, self.iterations % self.window] = norms
        self.iterations += 1
        d = methods.aggregate("edm", g).direction  # EDM itself is tested in test_edm.py
        if self.iterations < self.window:
            return d
        sums = self.history.sum(dim=1)
        if self.previous is not None:
            v = d.clone()
            for i in range(g.shape[0]):
                delta = float(sums[i] / self.previous[i]) + math.log10(float(losses[i]))
                tension = max(0.0, self.alpha / (1 + math.exp(-delta * math.e + math.e)) + 1 - self.alpha)
                v = v + tension * (g[i] - d) / (g[i] - d).norm()
            for i in range(g.shape[0]):
                if math.acos(float(g[i] @ v / (g[i].norm() * v.norm()))) > math.pi / 2:
                    self.corrected = True
                    unit = g[i] / g[i].norm()
                    w = v - (v @ unit) * unit
                    angle = math.pi - math.acos(float(g[i] @ (v - g[i]) / (g[i].norm() * (v - g[i]).norm())))
                    v = math.tan(angle) * g[i].norm() * w / w.norm()
            d = v
        self.previous = sums
        return d


def test_matches_the_reference_algorithm_including_the_angle_correction():
    generator = torch.Generator().manual_seed(2)
    base = torch.randn(3, 6, generator=generator, dtype=torch.float64)
    reference = _ReferenceCDTT(3, alpha=1.0)
    method = methods.create("cdtt", 3, alpha=1.0)
    state = method.initial_state()
    edm_steps = 0
    for _ in range(14):
        g = base + 0.3 * torch.randn(3, 6, generator=generator, dtype=torch.float64)
        losses = torch.rand(3, generator=generator, dtype=torch.float64) * 3 + 0.1
        result = method.combine(g, losses=losses, state=state)
        state = result.state
        expected = reference.step(g, losses)
        assert torch.allclose(result.direction, expected, rtol=1e-7, atol=1e-9)
        assert torch.allclose(result.weights @ g, result.direction, atol=1e-10)
        edm_steps += int(torch.allclose(result.direction, methods.aggregate("edm", g).direction))
    assert reference.corrected  # the obtuse-angle correction was exercised
    assert edm_steps >= 10  # pure EDM until the window is full and a previous window sum exists
    assert state["iterations"] == 14


def test_proposition_5_equal_norms_and_losses_give_the_mean():
    generator = torch.Generator().manual_seed(0)
    method = methods.create("cdtt", 2, alpha=0.6)
    state = None
    for step in range(15):
        g = torch.randn(2, 8, generator=generator, dtype=torch.float64)
        g = (1.0 + 0.1 * step) * g / g.norm(dim=1, keepdim=True)
        loss = 0.5 + 0.05 * step
        result = method.combine(g, losses=torch.tensor([loss, loss]), state=state)
        state = result.state
        assert torch.allclose(result.weights, torch.full((2,), 0.5, dtype=torch.float64), atol=1e-10)
        assert torch.allclose(result.direction, g.mean(dim=0), atol=1e-10)


def test_tension_moves_the_direction_once_active_and_combine_is_pure():
    generator = torch.Generator().manual_seed(5)
    method = methods.create("cdtt", 2)
    state = method.initial_state()
    for step in range(12):
        g = torch.randn(2, 5, generator=generator) * torch.tensor([[1.0], [4.0]])
        losses = torch.tensor([0.3, 2.0])
        before = {key: (value.clone() if torch.is_tensor(value) else value) for key, value in state.items()}
        result = method.combine(g, losses=losses, state=state)
        assert state["iterations"] == before["iterations"] and torch.equal(state["history"], before["history"])
        moved = not torch.allclose(result.direction, methods.aggregate("edm", g).direction)
        assert moved == (step >= 10)
        state = result.state


def test_needs_losses_declares_grids_and_skips_zero_gradients():
    with pytest.raises(UserInputError, match="losses"):
        methods.aggregate("cdtt", torch.randn(2, 3))
    assert methods.get("cdtt").grid("cityscapes") == {"alpha": [0.2, 0.4, 0.6, 0.8, 1.0]}
    assert set(methods.get("cdtt").grids) == {"multi_mnist", "cityscapes", "qm9"}
    assert not methods.get("cdtt").stateless
    g = torch.randn(2, 3)
    g[0] = 0
    result = methods.aggregate("cdtt", g, losses=torch.ones(2))
    assert torch.equal(result.direction, torch.zeros(3)) and result.state["iterations"] == 0

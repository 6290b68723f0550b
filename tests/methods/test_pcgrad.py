"""PCGrad (Yu et al. 2020): projections of conflicting gradients, random order from the generator."""

from __future__ import annotations

import torch

import mtlbench.methods as methods


def _reference(g: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Algorithm 1 in the gradient space, drawing one task order per task as the reference code."""
    projected = g.clone()
    for i in range(g.shape[0]):
        for j in torch.randperm(g.shape[0], generator=generator).tolist():
            if j != i and float(projected[i] @ g[j]) < 0:
                projected[i] = projected[i] - (projected[i] @ g[j]) / (g[j] @ g[j]) * g[j]
    return projected.sum(dim=0)


def test_two_conflicting_tasks_follow_the_closed_form():
    g = torch.tensor([[1.0, 0.2, 0.0], [-0.8, 1.0, 0.5]], dtype=torch.float64)
    assert float(g[0] @ g[1]) < 0
    result = methods.aggregate("pcgrad", g, generator=torch.Generator().manual_seed(0))
    dot = g[0] @ g[1]
    g1_pc = g[0] - dot / (g[1] @ g[1]) * g[1]
    g2_pc = g[1] - dot / (g[0] @ g[0]) * g[0]
    assert abs(float(g1_pc @ g[1])) < 1e-12 and abs(float(g2_pc @ g[0])) < 1e-12  # no conflict remains
    assert torch.allclose(result.direction, g1_pc + g2_pc, atol=1e-12)
    assert float(result.direction @ g[0]) >= 0 and float(result.direction @ g[1]) >= 0
    assert result.weights is None


def test_without_conflict_it_is_the_sum():
    g = torch.rand(3, 6, dtype=torch.float64) + 0.1  # positive entries: all pairwise products positive
    result = methods.aggregate("pcgrad", g, generator=torch.Generator().manual_seed(4))
    assert torch.allclose(result.direction, g.sum(dim=0))


def test_gram_space_implementation_matches_the_algorithm_and_generator():
    g = torch.randn(4, 9, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    directions = []
    for seed in range(6):
        result = methods.aggregate("pcgrad", g, generator=torch.Generator().manual_seed(seed))
        expected = _reference(g, torch.Generator().manual_seed(seed))
        assert torch.allclose(result.direction, expected, atol=1e-12)
        again = methods.aggregate("pcgrad", g, generator=torch.Generator().manual_seed(seed))
        assert torch.equal(result.direction, again.direction)  # deterministic with a fixed generator
        directions.append(result.direction)
    assert any(not torch.allclose(directions[0], d) for d in directions[1:])  # the order matters for T > 2

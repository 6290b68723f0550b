"""The README's Python snippets run as written."""

from __future__ import annotations

import re
from pathlib import Path

import torch
from torch import nn

README = Path(__file__).resolve().parents[1] / "README.md"


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_the_training_loop_snippet_runs_and_reports_weights():
    snippet = _python_blocks()[0]
    torch.manual_seed(0)
    encoder = nn.Sequential(nn.Linear(4, 8), nn.ReLU())
    head_a, head_b = nn.Linear(8, 3), nn.Linear(8, 1)
    model = nn.ModuleList([encoder, head_a, head_b])
    x = torch.randn(16, 4)
    loader = [(x, torch.randint(0, 3, (16,)), torch.randn(16, 1))] * 3
    printed = []
    namespace = {
        "model": model,
        "encoder": encoder,
        "head_a": head_a,
        "head_b": head_b,
        "loss_a": nn.functional.cross_entropy,
        "loss_b": nn.functional.mse_loss,
        "loader": loader,
        "recompute_losses": lambda x: None,
        "print": printed.append,
    }
    before = [p.detach().clone() for p in model.parameters()]
    exec(compile(snippet, "README.md", "exec"), namespace)
    assert len(printed) == 3 and all(w.shape == (2,) and torch.isfinite(w).all() for w in printed)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_the_aggregate_snippet_runs():
    snippet = _python_blocks()[1]
    gradients = torch.randn(3, 10)
    namespace = {"gradients": gradients, "losses": torch.rand(3) + 0.1}
    exec(compile("from mtlbench import methods\n" + snippet, "README.md", "exec"), namespace)
    agg = namespace["agg"]
    assert agg.direction.shape == (10,) and agg.weights.shape == (3,)

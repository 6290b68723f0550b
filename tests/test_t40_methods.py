"""Every registered method trains at T = 40 (the generated CelebA stand-in, tiny ResNet, two steps each)."""

from __future__ import annotations

import math

import pytest

from mtlbench.methods import METHODS
from mtlbench.problems.synthetic_attributes import NAMES
from mtlbench.training import RunConfig, Trainer

T = 40
TINY = {"train_size": 16, "eval_size": 8, "width": 2}


@pytest.mark.parametrize("method", METHODS.names())
def test_every_method_trains_at_forty_tasks(method: str) -> None:
    params = {"weights": ",".join(str(1 + i % 3) for i in range(T))} if method == "fixed_weights" else {}
    config = RunConfig(
        problem="synthetic_attributes",
        tasks="all",
        method=method,
        method_params=params,
        problem_options=TINY,
        epochs=1,
        batch_size=8,  # two steps
        threads=1,
        device="cpu",
    )
    result = Trainer(config, require_reference=False).run()
    assert result.status == "completed", result.error
    record = result.history[0]
    assert list(record["train_losses"]) == list(NAMES)
    assert all(math.isfinite(v) for v in record["train_losses"].values())
    assert set(result.test_metrics) == set(NAMES)
    assert all(0.0 <= metrics["acc"] <= 1.0 for metrics in result.test_metrics.values())
    if record["weights"] is not None:
        weights = list(record["weights"].values())
        assert len(weights) == T and all(math.isfinite(w) for w in weights)

"""Every registered method trains one epoch on a Multi-MNIST CL_RR subset, end to end through the trainer."""

from __future__ import annotations

import math

import pytest

from mtlbench.methods import METHODS
from mtlbench.training import RunConfig, Trainer

#: the few methods whose defaults need the task count or a setting to run on CL_RR
SETTINGS = {"fixed_weights": {"weights": "0.3,0.7"}}


@pytest.mark.parametrize("method", METHODS.names())
def test_method_trains_one_epoch_on_multi_mnist(fake_mnist, tmp_path, method):
    config = RunConfig(
        problem="multi_mnist",
        tasks="CL_RR",
        method=method,
        method_params=SETTINGS.get(method, {}),
        epochs=1,
        batch_size=64,
        lr=1e-3,
        threads=1,
        device="cpu",
    )
    result = Trainer(config, require_reference=False).run()
    assert result.status == "completed", result.error
    record = result.history[0]
    assert all(math.isfinite(v) for v in record["train_losses"].values())
    assert 0.0 <= result.test_metrics["CL"]["acc"] <= 1.0 and math.isfinite(result.test_metrics["RR"]["mse"])
    if record["weights"] is not None:
        assert len(record["weights"]) == 2 and all(math.isfinite(w) for w in record["weights"].values())


def test_the_demo_shortlist_is_registered():
    from mtlbench.cli.demo import SHORTLIST

    missing = [name for name in SHORTLIST if name not in METHODS]
    assert not missing, f"demo shortlist methods not registered: {missing}"

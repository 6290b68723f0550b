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


@pytest.fixture(scope="module")
def qm9_sample(tmp_path_factory):
    """The shipped 40-molecule QM9 sample, featurised into a temporary cache."""
    from pathlib import Path

    import rdkit  # noqa: F401 (the dev extra installs mtlbench[qm9]; a missing package fails, never skips)
    import torch_geometric  # noqa: F401

    from mtlbench.data import DATASETS

    root = tmp_path_factory.mktemp("qm9-all-methods")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MTLBENCH_DATA", str(root))
        DATASETS["qm9"].fetch(Path(__file__).parent / "data" / "qm9_sample.csv", workers=1, progress=False)
    return root


SCENES = {"n_images": 12, "resolution": "64x32", "width": 8, "instances": 3}


@pytest.mark.parametrize("problem", ["qm9", "synthetic_scenes"])
@pytest.mark.parametrize("method", METHODS.names())
def test_method_trains_on_qm9_and_street_scenes(request, monkeypatch, tmp_path, problem, method):
    if problem == "qm9":
        monkeypatch.setenv("MTLBENCH_DATA", str(request.getfixturevalue("qm9_sample")))
        tasks, options, batch_size = "mu_alpha_homo", {}, 8
    else:
        monkeypatch.setenv("MTLBENCH_DATA", str(tmp_path))
        tasks, options, batch_size = "S_D_I", SCENES, 4
    params = {"weights": "1,2,3"} if method == "fixed_weights" else {}
    config = RunConfig(
        problem=problem,
        tasks=tasks,
        method=method,
        method_params=params,
        problem_options=options,
        epochs=1,
        batch_size=batch_size,
        threads=1,
        device="cpu",
    )
    result = Trainer(config, require_reference=False).run()
    assert result.status == "completed", result.error
    assert set(result.test_metrics) == set(tasks.split("_"))
    assert all(math.isfinite(v) for v in result.history[0]["train_losses"].values())

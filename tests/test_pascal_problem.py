"""The pascal_context problem: batches from a prepared fake PASCAL_MT tree and tiny training on the stand-in."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from mtlbench.data import pascal_context as pc
from mtlbench.data.cache import ENV_VAR
from mtlbench.problems import create_problem
from mtlbench.training import RunConfig, Trainer
from tests.test_pascal_data import IDS, SHAPES, make_pascal_tree


def test_real_batches_from_a_prepared_tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "cache"))
    expected = make_pascal_tree(tmp_path / "PASCAL_MT")
    pc.prepare(tmp_path / "PASCAL_MT")
    problem = create_problem("pascal_context", resolution="16x16", width=8, edge_thresholds=3, saliency="mtinet")
    assert [t.name for t in problem.tasks] == ["S", "P", "Sal", "N", "E"]
    batch = problem.make_batch("train", [0, 1])
    assert batch.inputs.shape == (2, 3, 16, 16)
    for k, image_id in enumerate(IDS["train"][:2]):
        h, w = SHAPES[image_id]
        top, left = (16 - h) // 2, (16 - w) // 2
        window = (slice(top, top + h), slice(left, left + w))
        want = expected[image_id]
        assert torch.equal(batch.targets["S"][k][window], torch.from_numpy(want["semseg"]).long())
        assert torch.equal(batch.targets["P"][k][window], torch.from_numpy(want["parts"]).long())
        assert torch.equal(batch.targets["Sal"][k, 0][window], torch.from_numpy(want["sal"]).float())
        assert torch.equal(batch.targets["E"][k, 0][window], torch.from_numpy(want["edge"]).float())
        normals = torch.from_numpy(want["normals"]).permute(2, 0, 1).float()
        assert torch.allclose(batch.targets["N"][k][:, window[0], window[1]], normals)
    assert (batch.targets["P"][1] == 255).all()  # a person without parts: ignored
    # an all-ignored parts batch costs nothing and its metric skips it
    problem_p = create_problem("pascal_context", "P", resolution="16x16", width=8)
    no_people = problem_p.make_batch("train", [1, 2])
    output = torch.randn(2, 7, 16, 16)
    assert float(problem_p.tasks[0].loss(output, no_people.targets["P"])) == 0.0


def test_trains_end_to_end_on_the_stand_in() -> None:
    config = RunConfig(
        problem="pascal_context",
        tasks="all",
        method="dwa",
        problem_options={
            "source": "synthetic",
            "resolution": "32x32",
            "width": 4,
            "n_images": 8,
            "synthetic_size": 32,
            "edge_thresholds": 2,
        },
        epochs=2,
        batch_size=3,
        threads=1,
        device="cpu",
    )
    result = Trainer(config, require_reference=False).run()
    assert result.status == "completed", result.error
    metrics = result.test_metrics
    assert set(metrics) == {"S", "P", "Sal", "N", "E"}
    assert all(0 <= metrics[t][m] <= 100 for t, m in (("S", "miou"), ("P", "miou"), ("Sal", "maxf"), ("E", "odsf")))
    assert math.isfinite(metrics["N"]["merr"])
    assert np.isfinite(list(result.history[-1]["train_losses"].values())).all()

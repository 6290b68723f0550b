"""Gradient diagnostics: the formulas of 000 (cos to the mean direction) and 001 (S_cos, S_mag, sign
conflicts), the vectorised pair computation, and that recording them leaves training untouched."""

from __future__ import annotations

import math

import pytest
import torch

from mtlbench.store.results import ResultsStore, config_hash
from mtlbench.training import RunConfig, Trainer
from mtlbench.training.diagnostics import (
    GradientDiagnostics,
    cos_to_mean,
    cosine_similarity,
    magnitude_similarity,
    pair_measures,
    sign_conflict,
    summarize,
)

BASE = dict(problem="synthetic", tasks="T0_T1_T2", epochs=2, batch_size=64, lr=1e-2, threads=1, seed=3)


def test_formulas_on_closed_forms():
    g = torch.tensor([1.0, -2.0, 3.0, 0.0])
    assert magnitude_similarity(g, g) == pytest.approx(1.0)
    assert magnitude_similarity(g, 3 * g) == pytest.approx(2 * 3 / (1 + 9))  # 2ab/(a^2+b^2) with b = 3a
    assert cosine_similarity(g, -2 * g) == pytest.approx(-1.0)
    assert cosine_similarity(g, 5 * g) == pytest.approx(1.0)
    assert cosine_similarity(torch.tensor([1.0, 0.0]), torch.tensor([0.0, 2.0])) == pytest.approx(0.0)
    assert math.isnan(cosine_similarity(g, torch.zeros(4)))
    # signs: (+,-,+,0) vs (-,-,-,+): coordinates 0 and 2 conflict, 1 agrees, 3 has a zero
    assert sign_conflict(g, torch.tensor([-1.0, -1.0, -1.0, 1.0])) == pytest.approx(2 / 4)
    assert sign_conflict(g, -g) == pytest.approx(3 / 4)  # the zero coordinate never conflicts


def test_cos_to_mean_matches_its_definition_and_is_one_for_parallel_gradients():
    generator = torch.Generator().manual_seed(0)
    gradients = torch.randn(3, 50, generator=generator)
    mean = gradients.mean(dim=0)
    expected = sum(cosine_similarity(gradients[i], mean) for i in range(3)) / 3
    assert cos_to_mean(gradients) == pytest.approx(expected, rel=1e-6)
    direction = torch.randn(50, generator=generator)
    assert cos_to_mean(torch.stack([direction, 2 * direction, 0.5 * direction])) == pytest.approx(1.0, rel=1e-6)
    # two opposite gradients of different norms: the mean points along the larger one -> (1 + -1)/2 = 0
    assert cos_to_mean(torch.stack([2 * direction, -direction])) == pytest.approx(0.0, abs=1e-6)


def test_vectorised_pair_measures_equal_the_pairwise_formulas():
    generator = torch.Generator().manual_seed(1)
    matrix = torch.randn(4, 40, generator=generator) * torch.tensor([[1.0], [3.0], [0.1], [1.0]])
    matrix[3, :10] = 0.0  # zeros never conflict
    pairs = [(0, 1), (0, 2), (1, 3), (2, 3)]
    measures = pair_measures(matrix, pairs)
    for k, (i, j) in enumerate(pairs):
        assert measures["cos"][k] == pytest.approx(cosine_similarity(matrix[i], matrix[j]), rel=1e-6)
        assert measures["mag"][k] == pytest.approx(magnitude_similarity(matrix[i], matrix[j]), rel=1e-6)
        assert measures["conflict"][k] == pytest.approx(sign_conflict(matrix[i], matrix[j]), abs=1e-12)


def test_summary_statistics():
    summary = summarize([1.0, 2.0, 3.0, 4.0, math.nan])
    assert summary["n"] == 4 and summary["mean"] == pytest.approx(2.5)
    assert summary["p50"] == pytest.approx(2.5) and summary["p2_5"] == pytest.approx(1.075)
    assert summarize([math.nan]) == {"n": 0}


def test_recorder_samples_every_n_steps_per_epoch():
    recorder = GradientDiagnostics(every=3)
    weight = torch.nn.Parameter(torch.tensor([1.0, -1.0]))

    class _Task:
        def __init__(self, name, sign):
            self.name, self.sign = name, sign

        def loss(self, output, target):
            return (self.sign * output * target).mean()

    tasks = [_Task("a", 1.0), _Task("b", -1.0)]

    from mtlbench.problems.base import Batch

    batch = Batch(inputs=None, targets={"a": torch.ones(2), "b": torch.ones(2)}, size=2)

    for _ in range(7):  # steps 0, 3, 6 are recorded
        out = (weight * torch.ones(2, 2)).sum(dim=1)
        outputs = {"a": out, "b": out}
        losses = torch.stack([t.loss(outputs[t.name], batch.targets[t.name]) for t in tasks])
        recorder.observe(losses, outputs, batch, tasks, [weight])
    summary = recorder.summary()
    assert summary["steps"] == 3
    # the two task losses have exactly opposite gradients: cosine -1, equal magnitudes, all signs conflict...
    assert summary["batch"]["cos"]["mean"] == pytest.approx(-1.0)
    assert summary["batch"]["mag"]["mean"] == pytest.approx(1.0)
    assert summary["mtl"]["cos"]["mean"] == pytest.approx(-1.0) and summary["mtl"]["cos"]["n"] == 3 * 2
    # ... while the gradient does not depend on the sample: STL pairs agree perfectly
    assert summary["stl"]["cos"]["mean"] == pytest.approx(1.0) and summary["stl"]["conflict"]["mean"] == 0.0
    recorder.start_epoch()
    assert recorder.summary()["steps"] == 0


def _numbers(result):
    return [(r["train_losses"], r["val_metrics"], r["weights"]) for r in result.history]


@pytest.mark.parametrize("method", ["unit_scal", "cagrad"])
def test_recording_does_not_change_the_training_numbers(tmp_path, method):
    plain = Trainer(RunConfig(**BASE, method=method), require_reference=False).run()
    store = ResultsStore(tmp_path / "results.db")
    recorded = Trainer(
        RunConfig(**BASE, method=method, grad_metrics_every=2), store=store, require_reference=False
    ).run()
    assert _numbers(recorded) == _numbers(plain)
    assert recorded.test_metrics == plain.test_metrics
    grad = recorded.history[0]["extra"]["grad"]
    steps = math.ceil(512 / 64)
    assert grad["steps"] == math.ceil(steps / 2)
    assert set(grad) >= {"batch", "mtl", "stl"}
    assert -1 <= grad["batch"]["cos_to_mean"]["mean"] <= 1
    assert grad["mtl"]["cos"]["n"] == grad["steps"] * 4 * 3  # 4 samples x 3 task pairs per recorded step
    assert grad["stl"]["cos"]["n"] == grad["steps"] * 3 * 6  # 3 tasks x 6 sample pairs
    epochs = store.epochs(recorded.run_id)
    assert "extra.grad.batch.cos_to_mean.mean" in epochs.columns
    assert {"train_seconds", "steps", "memory.peak_mb"} <= set(epochs.columns)


def test_grad_metrics_enter_the_config_hash_only_when_on():
    off = RunConfig(**BASE).resolved().to_dict()
    on = RunConfig(**BASE, grad_metrics_every=10).resolved().to_dict()
    assert "grad_metrics_every" not in off  # runs stored before the option existed keep their hashes
    assert on["grad_metrics_every"] == 10 and config_hash(on) != config_hash(off)
    assert RunConfig.from_dict(on).grad_metrics_every == 10
    with pytest.raises(Exception, match="grad_metrics_every=-1 must be >= 0"):
        RunConfig(**BASE, grad_metrics_every=-1).resolved()

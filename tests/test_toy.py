"""The CAGrad toy problem of 001: its minimum, analytic gradients, the optimizers, runs, plot and CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from scipy.optimize import minimize

from mtlbench.cli.main import main
from mtlbench.errors import UserInputError
from mtlbench.problems.toy import (
    GLOBAL_MINIMUM,
    MINIMUM_POINT,
    mean_loss,
    toy_gradients,
    toy_losses,
)
from mtlbench.studies import toy
from mtlbench.studies.toy import _Adam, _make_cagrad, _make_generic, run_toy


def test_global_minimum_of_the_mean_loss():
    axis = torch.linspace(-10, 10, 801, dtype=torch.float64)
    X, Y = torch.meshgrid(axis, axis, indexing="xy")
    values = mean_loss(torch.stack([X, Y], dim=-1))
    index = int(values.argmin())
    start = np.array([float(X.flatten()[index]), float(Y.flatten()[index])])

    def objective(x: np.ndarray) -> float:
        return float(mean_loss(torch.tensor(x, dtype=torch.float64)))

    refined = minimize(objective, start, method="Nelder-Mead", options={"xatol": 1e-9, "fatol": 1e-12})
    assert refined.fun == pytest.approx(GLOBAL_MINIMUM, abs=1e-4)
    assert float(values.min()) >= GLOBAL_MINIMUM - 1e-4
    np.testing.assert_allclose(refined.x, MINIMUM_POINT, atol=2e-3)


def test_analytic_gradients_match_autograd_and_finite_differences():
    rng = np.random.default_rng(0)
    points = np.vstack([rng.uniform(-10, 10, size=(200, 2)), [[-8.5, 7.5], [-8.5, -5.0], [9.0, 9.0]]])
    losses, grads = toy_gradients(points)
    x = torch.tensor(points, requires_grad=True)
    f = toy_losses(x)
    torch.testing.assert_close(torch.from_numpy(losses), f.detach())
    for task in range(2):
        (auto,) = torch.autograd.grad(f[:, task].sum(), x, retain_graph=True)
        torch.testing.assert_close(torch.from_numpy(grads[:, task]), auto, rtol=1e-9, atol=1e-12)
    h = 1e-6
    for axis in range(2):
        step = np.zeros(2)
        step[axis] = h
        central = (toy_gradients(points + step)[0] - toy_gradients(points - step)[0]) / (2 * h)
        np.testing.assert_allclose(grads[:, :, axis], central, rtol=1e-4, atol=1e-5)


def test_adam_matches_torch():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(3, 2)).astype(np.float32)
    mine = _Adam(x, lr=0.05)
    reference = torch.tensor(x.copy(), requires_grad=True)
    optimizer = torch.optim.Adam([reference], lr=0.05)
    for _ in range(300):
        direction = rng.normal(size=(3, 2)).astype(np.float32) * rng.uniform(1e-3, 10.0)
        mine.step(x, direction)
        optimizer.zero_grad()
        reference.grad = torch.from_numpy(direction.copy())
        optimizer.step()
    np.testing.assert_allclose(x, reference.detach().numpy(), rtol=1e-5, atol=1e-6)


def test_short_sum_adam_run_is_deterministic_and_consistent():
    first = run_toy("sum", "adam", 0.1, 3000)
    second = run_toy("sum", "adam", 0.1, 3000, record_every=None, stop_when_converged=True)
    assert first.iterations == second.iterations
    trajectory = first.trajectories.astype(np.float64)
    gaps = toy_gradients(trajectory.reshape(-1, 2))[0].mean(axis=1).reshape(-1, 3) - GLOBAL_MINIMUM
    for k, iteration in enumerate(first.iterations):
        hits = np.nonzero(gaps[:, k] <= 0.1)[0]
        assert iteration == (int(hits[0]) if len(hits) else None)
    assert first.trajectories.shape == (3001, 3, 2)
    assert first.all_converged_at == (None if None in first.iterations else max(first.iterations))


def test_fast_paths_match_combine():
    rng = np.random.default_rng(1)
    grads = rng.normal(size=(3, 2, 2)).astype(np.float32)
    losses = rng.normal(size=(3, 2)).astype(np.float32)
    for hparams in ({"c": 0.5, "rescale": 1, "space": "parameters"}, {"c": 0.3, "rescale": 2, "space": "parameters"}):
        fast = _make_cagrad(hparams)(grads)
        generic = _make_generic("cagrad", hparams, 3, seed=0)(grads, losses)
        np.testing.assert_allclose(fast, generic, rtol=1e-5, atol=1e-6)
    generic_sum = _make_generic("sum", {}, 3, seed=0)(grads, losses)
    np.testing.assert_allclose(grads.sum(axis=1), generic_sum, rtol=1e-6)


def test_stateful_generic_methods_run():
    result = run_toy("gradvac", "adam", 0.05, 300, record_every=10, seed=3)
    assert len(result.iterations) == 3 and result.trajectories.shape == (31, 3, 2)
    assert np.isfinite(result.final).all()
    again = run_toy("gradvac", "adam", 0.05, 300, record_every=10, seed=3)
    np.testing.assert_array_equal(result.trajectories, again.trajectories)  # generators seeded per start
    nash = run_toy("nash_mtl", "sgd", 0.01, 30, record_every=None)
    assert np.isfinite(nash.final).all()


def test_bad_input():
    with pytest.raises(UserInputError, match="optimizer"):
        run_toy("sum", "rmsprop", 0.1, 10)
    with pytest.raises(UserInputError, match="does not combine gradients"):
        run_toy("uw", "adam", 0.1, 10)
    with pytest.raises(UserInputError, match="lr"):
        run_toy("sum", "adam", -1.0, 10)


def test_plot(tmp_path):
    result = run_toy("cagrad", "sgd", 0.5, 200)
    path = toy.plot_toy(result, tmp_path / "toy.png", grid=60, points=50)
    assert path.exists() and path.stat().st_size > 1000


def test_cli_json_and_text(capsys):
    assert main(["toy", "--method", "sum", "--optimizer", "adam", "--lr", "0.1", "--steps", "800", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert list(payload) == ["iterations"] and len(payload["iterations"]) == 3
    assert all(i is None or (isinstance(i, int) and 0 <= i <= 800) for i in payload["iterations"])
    assert payload["iterations"] == run_toy("sum", "adam", 0.1, 800, record_every=None).iterations
    assert (
        main(["toy", "--method", "cagrad", "--optimizer", "gd", "--lr", "0.1", "--steps", "50", "--set", "c=0.5"]) == 0
    )
    text = capsys.readouterr().out
    assert "never" in text and "start (-8.5, 7.5)" in text
    assert main(["toy", "--method", "cagrad", "--steps", "5", "--set", "c=2"]) == 2
    assert "c=" in capsys.readouterr().err


def test_problems_import_no_method() -> None:
    """The toy problem defines losses only; the runner (which uses methods) lives in mtlbench.studies.toy."""
    import subprocess
    import sys

    code = "import sys, mtlbench.problems.toy; print(any(m.startswith('mtlbench.methods') for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False"

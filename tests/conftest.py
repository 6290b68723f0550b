"""Shared fixtures: a small generated MNIST-like cache (no download), for data and end-to-end tests."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from mtlbench.data import mnist
from mtlbench.data.cache import ENV_VAR


def make_fake_mnist(n_train: int = 300, n_test: int = 60, seed: int = 0) -> mnist.MnistArrays:
    """MNIST-shaped uint8 data whose classes are learnable: one random 7x7 block pattern per class,
    upsampled to 28x28, with a random intensity and pixel noise (so every image is distinct)."""
    rng = np.random.default_rng(seed)
    templates = np.kron(rng.random((10, 7, 7)) > 0.6, np.ones((4, 4))).astype(np.float64)

    def draw(n: int) -> tuple[np.ndarray, np.ndarray]:
        labels = rng.integers(0, 10, size=n)
        intensity = rng.uniform(150, 255, size=(n, 1, 1))
        noise = rng.uniform(0, 40, size=(n, 28, 28))
        images = np.clip(templates[labels] * intensity + noise, 0, 255).round().astype(np.uint8)
        return images, labels.astype(np.uint8)

    x_train, y_train = draw(n_train)
    x_test, y_test = draw(n_test)
    return mnist.MnistArrays(x_train, y_train, x_test, y_test)


@dataclass
class FakeMnist:
    root: Path
    arrays: mnist.MnistArrays


@pytest.fixture
def fake_mnist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeMnist:
    """A generated MNIST cache (300 train = 250 Multi-MNIST train + 50 val, 60 test) in a temporary
    data root that ``MTLBENCH_DATA`` points at for the test."""
    root = tmp_path / "mtlbench-data"
    monkeypatch.setenv(ENV_VAR, str(root))
    arrays = make_fake_mnist()
    mnist.store(arrays, "generated (tests)")
    return FakeMnist(root, arrays)

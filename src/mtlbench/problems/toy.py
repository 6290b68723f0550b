"""The two-task toy problem of CAGrad (Liu et al. 2021, section 5.1), as re-run by Elich et al. (001).

Two losses of ``x = (x1, x2)`` (``Cranial-XIX/CAGrad``, ``toy.py``), with ``c1 = max(tanh(x2/2), 0)``,
``c2 = max(tanh(-x2/2), 0)`` and ``floor = 5e-6``::

    f1 = c1 (log max(|0.5 (-x1 - 7) - tanh(-x2)|, floor) + 6) + c2 (((-x1 + 7)^2 + 0.1 (-x2 - 8)^2) / 10 - 20)
    f2 = c1 (log max(|0.5 (-x1 + 3) + tanh(-x2) + 2|, floor) + 6) + c2 (((-x1 - 7)^2 + 0.1 (-x2 - 8)^2) / 10 - 20)

The mean loss has its global minimum -15.0916 near (0, -8.3552). Elich et al. (001, Tables 1 and
A7) count, per method, optimizer (plain gradient descent or Adam) and learning rate, the iteration at
which each of the starts (-8.5, 7.5), (-8.5, -5), (9, 9) first reaches the global minimum within
100k steps. :func:`run_toy` reproduces that with any registered gradient-combination method.

Conventions of the original toy code, kept here: float32 parameters, torch's Adam (betas 0.9,
0.999, eps 1e-8) or plain gradient descent, and the update of its "EW" is the *mean* gradient; so by
default (``objective="mean"``, the run setting ``RunConfig.objective`` of the trainer) every method's
direction is divided by T = 2 (``objective="sum"`` keeps mtlbench's sum-of-gradients scale, which
doubles the effective GD step; ``scale=`` is the old name of the argument, still accepted). The original CAGrad toy
divides by ``1 + c`` (``--set rescale=2``); mtlbench's default ``rescale=1`` divides by ``1 + c^2``
(with Adam either is nearly irrelevant). 001 counts with CAGrad at ``c = 0.5``.

Gradients are analytic (:func:`toy_gradients`, float64, checked against autograd in the tests) and the
three starts advance together as float32 NumPy arrays. Bitwise equality with the original code's
autograd is not attempted: long runs are chaotic, so single counts can differ from 001's. ``sum``
and ``cagrad`` have fast paths (checked against their ``combine``); any other registered
:class:`~mtlbench.methods.GradientMethod` goes through its ``combine`` with one state (and
generator) per start.

The optimisation experiment (:func:`~mtlbench.studies.toy.run_toy`, the optimizers and the plots) lives in
:mod:`mtlbench.studies.toy`: this module only defines the problem, and imports no method.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

FLOOR = 5e-6
GLOBAL_MINIMUM = -15.0916
MINIMUM_POINT = (0.0, -8.3552)
STARTS: tuple[tuple[float, float], ...] = ((-8.5, 7.5), (-8.5, -5.0), (9.0, 9.0))
OPTIMIZERS = ("adam", "sgd", "gd")
SCALES = ("mean", "sum")


# --- the losses --------------------------------------------------------------------------------
def toy_losses(x: Tensor) -> Tensor:
    """``(f1, f2)`` stacked on the last axis, for ``x`` of shape (..., 2); differentiable torch ops."""
    x1, x2 = x[..., 0], x[..., 1]
    c1 = torch.clamp(torch.tanh(x2 * 0.5), min=0)
    c2 = torch.clamp(torch.tanh(-x2 * 0.5), min=0)
    a1 = torch.clamp((0.5 * (-x1 - 7) - torch.tanh(-x2)).abs(), min=FLOOR).log() + 6
    a2 = torch.clamp((0.5 * (-x1 + 3) + torch.tanh(-x2) + 2).abs(), min=FLOOR).log() + 6
    b1 = ((-x1 + 7) ** 2 + 0.1 * (-x2 - 8) ** 2) / 10 - 20
    b2 = ((-x1 - 7) ** 2 + 0.1 * (-x2 - 8) ** 2) / 10 - 20
    return torch.stack([c1 * a1 + c2 * b1, c1 * a2 + c2 * b2], dim=-1)


def f1(x: Tensor) -> Tensor:
    """The first task's loss."""
    return toy_losses(x)[..., 0]


def f2(x: Tensor) -> Tensor:
    """The second task's loss."""
    return toy_losses(x)[..., 1]


def mean_loss(x: Tensor) -> Tensor:
    """``(f1 + f2) / 2``, whose global minimum is :data:`GLOBAL_MINIMUM`."""
    return toy_losses(x).mean(dim=-1)


def _point(x1: float, x2: float) -> tuple[float, float, float, float, float, float]:
    """``f1, f2, df1/dx1, df1/dx2, df2/dx1, df2/dx2`` at one point (Python floats: fast on scalars)."""
    t = math.tanh(x2)
    h = math.tanh(x2 * 0.5)
    sech2 = 1.0 - t * t
    half_sech2 = 0.5 * (1.0 - h * h)
    c1 = h if h > 0 else 0.0
    c2 = -h if h < 0 else 0.0
    dc1 = half_sech2 if h >= 0 else 0.0  # torch.clamp(min=0) passes the gradient where input >= 0
    dc2 = -half_sech2 if h <= 0 else 0.0
    u1 = 0.5 * (-x1 - 7.0) + t  # 0.5 (-x1 - 7) - tanh(-x2)
    u2 = 0.5 * (-x1 + 3.0) - t + 2.0
    a1 = math.log(max(abs(u1), FLOOR)) + 6.0
    a2 = math.log(max(abs(u2), FLOOR)) + 6.0
    inv1 = 1.0 / u1 if abs(u1) >= FLOOR else 0.0  # d log|u| / du, zero where the floor clamps
    inv2 = 1.0 / u2 if abs(u2) >= FLOOR else 0.0
    q = 0.1 * (x2 + 8.0) ** 2
    b1 = ((x1 - 7.0) ** 2 + q) / 10.0 - 20.0
    b2 = ((x1 + 7.0) ** 2 + q) / 10.0 - 20.0
    db_dx2 = (x2 + 8.0) / 50.0
    return (
        c1 * a1 + c2 * b1,
        c1 * a2 + c2 * b2,
        -0.5 * c1 * inv1 + c2 * (x1 - 7.0) / 5.0,
        dc1 * a1 + c1 * inv1 * sech2 + dc2 * b1 + c2 * db_dx2,
        -0.5 * c1 * inv2 + c2 * (x1 + 7.0) / 5.0,
        dc1 * a2 - c1 * inv2 * sech2 + dc2 * b2 + c2 * db_dx2,
    )


def toy_gradients(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Losses (B, 2) and per-task gradients (B, 2 tasks, 2 coordinates) at points ``x`` (B, 2).

    Analytic derivatives of :func:`toy_losses` (the clamps have zero derivative below their floor,
    as in autograd), computed in float64 and returned in ``x``'s dtype.
    """
    values = np.array([_point(float(a), float(b)) for a, b in x.tolist()], dtype=np.float64).reshape(-1, 6)
    losses = values[:, :2].astype(x.dtype)
    grads = values[:, 2:].reshape(-1, 2, 2).astype(x.dtype)
    return losses, grads

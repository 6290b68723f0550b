"""Gradient diagnostics recorded during training (``RunConfig.grad_metrics_every``, ``--grad-metrics``).

Every ``every`` steps of an epoch (steps 0, every, 2*every, ...), on the step's own batch and graph:

* ``batch.cos_to_mean`` -- Gama & Grassi (000) Fig. 3a / 7: mean over tasks of cos(g_i, mean_j g_j),
  with g_i the gradient of task i's batch loss w.r.t. the shared parameters (as ``dot_avg_dir`` in
  Gama's code).
* ``batch.sum_norm`` -- Kurin et al. (003): ||sum_i g_i|| on the shared parameters.
* ``batch.cos`` / ``batch.mag`` / ``batch.conflict`` -- the measures below for every pair of task
  gradients on the whole batch.
* ``mtl.*`` and ``stl.*`` -- Elich et al. (001) section 4.2 / Fig. 3, on single samples (the first
  :data:`SAMPLES` examples of the shuffled batch): MTL pairs = two tasks on one sample, STL pairs = one
  task on two samples. Measures: S_cos (001 eq. 4), S_mag = 2||g|| ||g'|| / (||g||^2 + ||g'||^2)
  (001 eq. 5) and the fraction of coordinates where g and g' have opposite signs (zeros do not conflict).

No interference with training: the gradients come from ``torch.autograd.grad(..., retain_graph=True)``
on the step's graph *before* the step's own backward. There is no extra forward (no dropout draw, no
BatchNorm statistics update, no random number consumed) and ``.grad`` is not touched, so a run records
the same losses with and without diagnostics. Per-sample losses are the task's loss on a one-example
slice of the batch outputs (outputs that are not batch-first tensors skip the sample measures).

* ``last.norm.<task>``, ``last.cos.<task>``, ``last.dot.<task>``, ``last.wnorm.<task>`` -- Guo et al.
  (002) Figs. 7/8, 10-16, on the encoder's last layer (``last_layer``, the model's ``last_shared_layer``):
  the norm of task i's gradient g_i, its cosine and dot product with the aggregated gradient d (the
  gradient the method left on that layer after its backward, read by :meth:`after_backward`), and the
  norm of the task's weighted contribution |w_i| ||g_i|| where the method reports weights. d is the
  method's own update direction (uniform: sum g_i; fixed weights: sum w_i g_i; CAGrad, Nash-MTL: their
  combination) before clipping and the objective's scale. ``last.pcos.<a>-<b>`` and ``last.pdot.<a>-<b>``: cosine
  and dot product of each pair of task gradients on that layer (002 Figs. 10-13).

Cost per recorded step: T + SAMPLES * T extra backward passes through the batch graph (T tasks), and
SAMPLES * T + T gradient vectors of the shared parameters in memory. Per epoch, each measure is stored
as mean, std, 2.5/25/50/75/97.5 percentiles and count in the epoch record's ``extra["grad"]``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

#: samples of the batch used for the single-sample (001) measures
SAMPLES = 4
#: percentiles stored per epoch (001 Fig. 3 bands: 2.5 and 97.5)
PERCENTILES = {"p2_5": 2.5, "p25": 25.0, "p50": 50.0, "p75": 75.0, "p97_5": 97.5}
MEASURES = ("cos", "mag", "conflict")


# ------------------------------------------------------------------------------------------ formulas
def cosine_similarity(g: Tensor, h: Tensor) -> float:
    """S_cos (001 eq. 4); NaN when a vector is zero."""
    denominator = float(g.norm() * h.norm())
    return float(g @ h) / denominator if denominator > 0 else math.nan


def magnitude_similarity(g: Tensor, h: Tensor) -> float:
    """S_mag = 2 ||g|| ||h|| / (||g||^2 + ||h||^2) (001 eq. 5): 1 for equal norms, -> 0 for very different."""
    a, b = float(g.norm()), float(h.norm())
    return 2 * a * b / (a * a + b * b) if a * a + b * b > 0 else math.nan


def sign_conflict(g: Tensor, h: Tensor) -> float:
    """Fraction of coordinates where g and h have strictly opposite signs."""
    return float((g * h < 0).double().mean())


def cos_to_mean(gradients: Tensor) -> float:
    """000's diagnostic: mean over rows i of cos(g_i, mean_j g_j) for a (T, D) matrix; NaN if undefined."""
    mean = gradients.mean(dim=0)
    norms = gradients.norm(dim=1) * mean.norm()
    if bool((norms <= 0).any()):
        return math.nan
    return float(((gradients @ mean) / norms).mean())


def pair_measures(gradients: Tensor, pairs: Sequence[tuple[int, int]]) -> dict[str, list[float]]:
    """S_cos, S_mag and the sign-conflict fraction for each pair of rows of ``gradients`` (n, D).

    Vectorised: dot products and sign agreements are (n, n) matrix products. Undefined values (a zero
    gradient) are left out.
    """
    out: dict[str, list[float]] = {name: [] for name in MEASURES}
    if not pairs:
        return out
    g = gradients.double() if gradients.device.type == "cpu" else gradients.float()
    dots = g @ g.T
    norms = dots.diagonal().clamp_min(0).sqrt()
    signs = torch.sign(g)
    nonzero = signs.abs()
    # coordinates with opposite signs: (#both nonzero - sum of sign products) / 2
    conflicts = (nonzero @ nonzero.T - signs @ signs.T) / (2 * g.shape[1])
    for i, j in pairs:
        a, b = float(norms[i]), float(norms[j])
        if a > 0 and b > 0:
            out["cos"].append(float(dots[i, j]) / (a * b))
            out["mag"].append(2 * a * b / (a * a + b * b))
        out["conflict"].append(float(conflicts[i, j]))
    return out


def last_layer_measures(gradients: Tensor, aggregated: Tensor, weights: Tensor | None = None) -> dict[str, list[float]]:
    """002's per-task measures for a (T, D) matrix of task gradients and the aggregated gradient d (D):
    ``norm`` ||g_i||, ``cos`` cos(g_i, d) (NaN when a vector is zero), ``dot`` g_i . d and, with ``weights``,
    ``wnorm`` |w_i| ||g_i||."""
    g = gradients.double()
    d = aggregated.double().to(g.device)
    norms = g.norm(dim=1)
    dots = g @ d
    denominator = norms * d.norm()
    out = {
        "norm": [float(v) for v in norms],
        "cos": [float(a / b) if float(b) > 0 else math.nan for a, b in zip(dots, denominator, strict=True)],
        "dot": [float(v) for v in dots],
    }
    if weights is not None and weights.numel() == g.shape[0]:
        out["wnorm"] = [float(v) for v in weights.detach().double().abs().to(g.device) * norms]
    return out


def summarize(values: Sequence[float]) -> dict[str, float]:
    """Mean, std (population), percentiles and count of the finite values."""
    array = np.asarray([v for v in values if math.isfinite(v)], dtype=float)
    if array.size == 0:
        return {"n": 0}
    summary = {"mean": float(array.mean()), "std": float(array.std())}
    for key, q in PERCENTILES.items():
        summary[key] = float(np.percentile(array, q))
    summary["n"] = int(array.size)
    return summary


# ------------------------------------------------------------------------------------------ recorder
class GradientDiagnostics:
    """Collects the diagnostics every ``every`` steps of an epoch; :meth:`summary` aggregates them."""

    def __init__(self, every: int, samples: int = SAMPLES, last_layer: Sequence[Tensor] = ()) -> None:
        if every < 1:
            raise ValueError(f"every={every} must be >= 1")
        self.every, self.samples = every, samples
        self.last_layer = [p for p in last_layer if p.requires_grad]
        #: (task names, (T, D) task gradients on the last layer) of the step recorded before its backward
        self._pending: tuple[list[str], Tensor] | None = None
        self.start_epoch()

    def start_epoch(self) -> None:
        self._step = 0
        self._recorded = 0
        self._seconds = 0.0
        self._values: dict[str, list[float]] = {}

    def _add(self, key: str, values: Sequence[float] | float) -> None:
        bucket = self._values.setdefault(key, [])
        if isinstance(values, float | int):
            bucket.append(float(values))
        else:
            bucket.extend(float(v) for v in values)

    def observe(self, losses: Tensor, outputs: Any, batch: Any, tasks: Sequence[Any], shared: Sequence[Tensor]) -> None:
        """Called by the training step before its backward; records every ``every``-th call of the epoch."""
        due = self._step % self.every == 0
        self._step += 1
        if not due:
            return
        started = time.perf_counter()
        if losses.device.type == "cuda":
            torch.cuda.synchronize(losses.device)
        self.record(losses, outputs, batch, tasks, shared)
        if losses.device.type == "cuda":
            torch.cuda.synchronize(losses.device)
        self._recorded += 1
        self._seconds += time.perf_counter() - started

    def record(self, losses: Tensor, outputs: Any, batch: Any, tasks: Sequence[Any], shared: Sequence[Tensor]) -> None:
        """Compute every measure on this step's graph (kept: ``retain_graph=True``)."""
        shared = [p for p in shared if p.requires_grad]
        n_tasks = losses.shape[0]
        if self.last_layer:
            names = [getattr(task, "name", str(i)) for i, task in enumerate(tasks)]
            self._pending = (names, torch.stack([_gradient(losses[i], self.last_layer) for i in range(n_tasks)]))
        task_grads = torch.stack([_gradient(losses[i], shared) for i in range(n_tasks)])
        if bool(torch.isfinite(task_grads).all()):
            self._add("batch.cos_to_mean", cos_to_mean(task_grads))
            self._add("batch.sum_norm", float(task_grads.sum(dim=0).norm()))
            task_pairs = [(i, j) for i in range(n_tasks) for j in range(i + 1, n_tasks)]
            for name, values in pair_measures(task_grads, task_pairs).items():
                self._add(f"batch.{name}", values)
        del task_grads
        samples = min(self.samples, int(batch.size))
        if samples < 1 or not _batch_first(outputs, batch, tasks):
            return
        rows: list[Tensor] = []
        index: dict[tuple[int, int], int] = {}  # (sample, task) -> row
        for s in range(samples):
            for t, task in enumerate(tasks):
                output = outputs[task.name][s : s + 1]
                target = _slice(batch.targets[task.name], s)
                loss = task.loss(output, target)
                if not bool(torch.isfinite(loss)):
                    continue
                gradient = _gradient(loss, shared)
                if bool(torch.isfinite(gradient).all()):
                    index[(s, t)] = len(rows)
                    rows.append(gradient)
        if not rows:
            return
        matrix = torch.stack(rows)
        mtl = [
            (index[(s, a)], index[(s, b)])
            for s in range(samples)
            for a in range(n_tasks)
            for b in range(a + 1, n_tasks)
            if (s, a) in index and (s, b) in index
        ]
        stl = [
            (index[(a, t)], index[(b, t)])
            for t in range(n_tasks)
            for a in range(samples)
            for b in range(a + 1, samples)
            if (a, t) in index and (b, t) in index
        ]
        for prefix, pairs in (("mtl", mtl), ("stl", stl)):
            for name, values in pair_measures(matrix, pairs).items():
                self._add(f"{prefix}.{name}", values)

    def after_backward(self, weights: Tensor | None = None) -> None:
        """Called by the training step after the method's backward: the last-layer measures of a recorded step
        against the aggregated gradient now in the layer's ``.grad`` (a no-op for steps not recorded)."""
        if self._pending is None:
            return
        started = time.perf_counter()
        names, task_grads = self._pending
        self._pending = None
        aggregated = torch.cat(
            [(p.grad if p.grad is not None else torch.zeros_like(p)).detach().reshape(-1) for p in self.last_layer]
        )
        for name, values in last_layer_measures(task_grads, aggregated, weights).items():
            for task, value in zip(names, values, strict=True):
                self._add(f"last.{name}.{task}", value)
        pairs = [(i, j) for i in range(len(names)) for j in range(i + 1, len(names))]
        g = task_grads.double()
        for i, j in pairs:  # 002 Figs. 10-13: cosine and dot product of each pair of task gradients
            a, b = float(g[i].norm()), float(g[j].norm())
            dot = float(g[i] @ g[j])
            self._add(f"last.pdot.{names[i]}-{names[j]}", dot)
            if a > 0 and b > 0:
                self._add(f"last.pcos.{names[i]}-{names[j]}", dot / (a * b))
        self._seconds += time.perf_counter() - started

    def summary(self) -> dict[str, Any]:
        """``{"steps": recorded steps, "seconds": time spent, "<group>": {"<measure>": stats}}``."""
        out: dict[str, Any] = {"steps": self._recorded, "seconds": self._seconds}
        for key, values in sorted(self._values.items()):
            group, name = key.split(".", 1)
            out.setdefault(group, {})[name] = summarize(values)
        return out


def _gradient(loss: Tensor, shared: Sequence[Tensor]) -> Tensor:
    grads = torch.autograd.grad(loss, list(shared), retain_graph=True, allow_unused=True)
    return torch.cat(
        [(g if g is not None else torch.zeros_like(p)).reshape(-1) for g, p in zip(grads, shared, strict=True)]
    ).detach()


def _batch_first(outputs: Any, batch: Any, tasks: Sequence[Any]) -> bool:
    for task in tasks:
        output = outputs.get(task.name) if isinstance(outputs, dict) else None
        target = batch.targets.get(task.name)
        if not isinstance(output, Tensor) or output.ndim == 0 or output.shape[0] != batch.size:
            return False
        if not isinstance(target, Tensor) or target.ndim == 0 or target.shape[0] != batch.size:
            return False
    return True


def _slice(target: Tensor, index: int) -> Tensor:
    return target[index : index + 1]


__all__ = [
    "MEASURES",
    "PERCENTILES",
    "SAMPLES",
    "GradientDiagnostics",
    "cos_to_mean",
    "cosine_similarity",
    "last_layer_measures",
    "magnitude_similarity",
    "pair_measures",
    "sign_conflict",
    "summarize",
]

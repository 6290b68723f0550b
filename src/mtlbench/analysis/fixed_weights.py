"""Constant task weights extracted from an SMTO's weight trajectory (Gama & Grassi, 000, section 3.5).

Per epoch, the mean weight of each task (the trainer stores it, sum T) normalised to sum 1; an
exponential moving average with beta 0.9 that starts at the first epoch's value,
``m_0 = w_0, m_e = beta m_{e-1} + (1 - beta) w_e``; the last value renormalised to sum 1 (Gama's
``show_nash_weights.py`` / ``plot_weights.py``), then to sum T for mtlbench's ``fixed_weights`` method.
000 takes the trajectory of one run (the first run of the source method's best configuration).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mtlbench.errors import MissingDataError, UserInputError

BETA = 0.9
#: the config fields a fixed-weights run copies from its source run (all the run's hyperparameters)
COPIED_FIELDS = (
    "problem",
    "tasks",
    "problem_options",
    "lr",
    "dropout",
    "weight_decay",
    "epochs",
    "batch_size",
    "optimizer",
    "momentum",
    "scheduler",
    "scheduler_gamma",
    "step_size",
    "plateau_monitor",
    "eval_batch_size",
)


def normalised_trajectory(weights: Sequence[Sequence[float]]) -> np.ndarray:
    """(E, T) per-epoch mean weights -> each epoch normalised to sum 1."""
    array = np.asarray(weights, dtype=float)
    if array.ndim != 2 or array.shape[0] == 0:
        raise UserInputError(f"weights must be an (epochs, tasks) array with at least one epoch; got {array.shape}")
    sums = array.sum(axis=1, keepdims=True)
    if not np.all(np.isfinite(array)) or np.any(sums <= 0):
        raise UserInputError("weights must be finite with a positive sum in every epoch")
    return array / sums


def ema(trajectory: np.ndarray, beta: float = BETA) -> np.ndarray:
    """EMA over epochs starting at the first epoch's value: m_0 = w_0, m_e = beta m_{e-1} + (1-beta) w_e."""
    out = np.empty_like(trajectory, dtype=float)
    out[0] = trajectory[0]
    for e in range(1, len(trajectory)):
        out[e] = beta * out[e - 1] + (1 - beta) * trajectory[e]
    return out


def extract_fixed_weights(weights: Sequence[Sequence[float]], beta: float = BETA) -> np.ndarray:
    """000's constant weights (sum 1) from per-epoch mean weights (E, T)."""
    last = ema(normalised_trajectory(weights), beta)[-1]
    return last / last.sum()


@dataclass
class ExtractedWeights:
    """Weights extracted from one source run."""

    run_id: int
    method: str
    tasks: list[str]
    weights: np.ndarray  # sum 1
    config: dict[str, Any]

    @property
    def weights_sum_t(self) -> np.ndarray:
        return self.weights * len(self.tasks)

    def set_option(self) -> str:
        """The ``--set`` value for ``fixed_weights`` (sum T, as mtlbench's convention)."""
        return "weights=" + ",".join(f"{w:.6g}" for w in self.weights_sum_t)


def run_weight_trajectory(store: Any, run_id: int) -> tuple[list[str], np.ndarray]:
    """Task names and the (E, T) per-epoch mean weights stored for a run (MissingDataError if none)."""
    run = store.run(int(run_id))
    tasks = list(run["config"]["tasks"])
    rows = [epoch.get("weights") for epoch in run["epochs"]]
    if not rows or any(row is None for row in rows):
        method = run["config"]["method"]
        raise MissingDataError(
            f"run {run_id} ({method}) records no task weights (methods such as PCGrad and GradDrop have none); "
            "choose a weighting method, e.g. `mtlbench fixed-weights --from cagrad ...`"
        )
    return tasks, np.array([[row[task] for task in tasks] for row in rows], dtype=float)


def weights_from_run(store: Any, run_id: int, beta: float = BETA) -> ExtractedWeights:
    run = store.run(int(run_id))
    tasks, trajectory = run_weight_trajectory(store, run_id)
    return ExtractedWeights(
        int(run_id), run["config"]["method"], tasks, extract_fixed_weights(trajectory, beta), run["config"]
    )


def setting_key(config: dict[str, Any]) -> str:
    """A configuration without its seed and machine details: runs with the same key are seeds of one setting."""
    ignored = {"seed", "device", "threads", "grad_metrics_every"}
    return json.dumps({k: v for k, v in config.items() if k not in ignored}, sort_keys=True, default=str)


def parse_train_lr(value: str | None) -> str | float | None:
    """``--train-lr``: None (the source run's lr), ``best`` or a positive number; a one-line error otherwise."""
    if value is None or value == "best":
        return value
    try:
        lr = float(value)
    except ValueError:
        lr = -1.0
    if not lr > 0 or lr != lr or lr == float("inf"):
        raise UserInputError(f"--train-lr={value!r}; give best (the source method's selected lr) or a positive number")
    return lr


def fixed_weights_config(
    source: ExtractedWeights, seed: int, device: str = "auto", *, lr: float | None = None, objective: str = "sum"
) -> dict[str, Any]:
    """RunConfig fields of a ``fixed_weights`` run with the source run's hyperparameters (``lr`` overrides its
    learning rate: 000 extracted QM9's weights from Nash-MTL at lr 1e-4 and trained them at Nash-MTL's selected lr)."""
    fields = {name: source.config[name] for name in COPIED_FIELDS if name in source.config}
    if lr is not None:
        fields["lr"] = float(lr)
    if objective != "sum":  # 000 trains fixed weights (sum 1) on its mean objective: objective="mean"
        fields["objective"] = objective
    weights = tuple(float(f"{w:.6g}") for w in source.weights_sum_t)  # exactly the printed --set values
    return {**fields, "method": "fixed_weights", "method_params": {"weights": weights}, "seed": seed, "device": device}


__all__ = [
    "BETA",
    "COPIED_FIELDS",
    "ExtractedWeights",
    "ema",
    "extract_fixed_weights",
    "fixed_weights_config",
    "normalised_trajectory",
    "parse_train_lr",
    "run_weight_trajectory",
    "setting_key",
    "weights_from_run",
]

"""Pareto optimality of runs and the count of Pareto-optimal runs per group (Elich et al., 001, Table 2).

A run dominates another if it is at least as good on every objective and strictly better on one
(001 section 3); a run is Pareto optimal (PO) if no run dominates it. 001 counts, per group (Adam vs
SGD+momentum), the runs on the overall front ("PO (full)") and the runs not dominated by any run of
the other group(s) ("PO w.r.t. the others").
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd


def _oriented(points: np.ndarray, higher_is_better: Sequence[bool]) -> np.ndarray:
    """Objectives flipped so that higher is better everywhere."""
    signs = np.where(np.asarray(higher_is_better, dtype=bool), 1.0, -1.0)
    return np.asarray(points, dtype=float) * signs


def dominated_by(candidates: np.ndarray, others: np.ndarray) -> np.ndarray:
    """For each row of ``candidates`` (higher is better), whether some row of ``others`` dominates it."""
    if len(others) == 0 or len(candidates) == 0:
        return np.zeros(len(candidates), dtype=bool)
    geq = (others[None, :, :] >= candidates[:, None, :]).all(axis=2)
    gt = (others[None, :, :] > candidates[:, None, :]).any(axis=2)
    return (geq & gt).any(axis=1)


def pareto_mask(points: Sequence[Sequence[float]], higher_is_better: Sequence[bool]) -> np.ndarray:
    """Boolean mask of the Pareto-optimal rows of ``points`` (n, k); rows with NaN are never optimal."""
    oriented = _oriented(np.asarray(points, dtype=float).reshape(len(points), -1), higher_is_better)
    valid = np.isfinite(oriented).all(axis=1)
    mask = np.zeros(len(oriented), dtype=bool)
    mask[valid] = ~dominated_by(oriented[valid], oriented[valid])
    return mask


def pareto_counts(
    points: Sequence[Sequence[float]], groups: Sequence[str], higher_is_better: Sequence[bool]
) -> pd.DataFrame:
    """Per group: runs, runs on the overall front (``PO (full)``), runs not dominated by other groups."""
    oriented = _oriented(np.asarray(points, dtype=float).reshape(len(points), -1), higher_is_better)
    labels = np.asarray(groups, dtype=object)
    valid = np.isfinite(oriented).all(axis=1)
    full = pareto_mask(points, higher_is_better)
    rows = []
    for group in dict.fromkeys(labels.tolist()):
        mine = (labels == group) & valid
        theirs = (labels != group) & valid
        not_dominated = ~dominated_by(oriented[mine], oriented[theirs])
        rows.append(
            {
                "group": group,
                "runs": int(mine.sum()),
                "PO (full)": int(full[mine].sum()),
                "PO w.r.t. others": int(not_dominated.sum()),
            }
        )
    return pd.DataFrame(rows)


__all__ = ["dominated_by", "pareto_counts", "pareto_mask"]

"""Model selection: which epoch(s) of a run are evaluated on test, as each paper does it.

A rule is a string (``RunConfig.selection``, ``--selection``); :func:`parse_selection` checks it:

=========================== =====================================================================
``delta_m`` (default)       the epoch with the best validation Delta_m (000 eq. 1: per task, then
                            over tasks). Without a reference: the lowest summed validation loss.
``delta_m_metrics``         the best validation Delta_m averaged over all metrics (001, nash-mtl, FAMO).
``mean_metric:<name>``      the best mean over tasks of the validation metric ``<name>`` (each task
                            must have it; its direction decides "best"): 003 selects on mean
                            validation accuracy (``mean_metric:accuracy``).
``val_loss``                the lowest summed validation loss.
``per_metric``              a model per (task, metric): the epoch with the best validation value of
                            that metric, evaluated on test (000's single-task references, 003 on
                            Cityscapes); the run's test metrics combine the metrics of several epochs.
``last_test_epochs:N``      the mean of the test metrics of the last N epochs (MTAN / FAMO on NYUv2).
                            Test-selected.
``best_test:<rule>``        the epoch whose *test* score by ``<rule>`` (``delta_m``,
                            ``delta_m_metrics``, ``mean_metric:<name>`` or ``val_loss``, read on the
                            test split) is best, as 002 reports. Test-selected.
=========================== =====================================================================

Only the Delta_m rules (:attr:`SelectionRule.needs_delta_m`) need single-task references; a run
selected by another rule trains without them (its Delta_m is None, shown as ``-``) and computes Delta_m
when references exist. A run's validation score (``RunResult.val_score``, what sweeps select on) is
the rule's own score; for ``per_metric`` and ``last_test_epochs`` it is the validation Delta_m, or,
without references, minus the summed validation loss (the lowest over the epochs for ``per_metric``,
the mean over the last N epochs for ``last_test_epochs``).

Test-selected runs are flagged (``RunResult.test_selected``, the store's ``test_selected`` column):
their test numbers saw the test set during selection and are not comparable with validation-selected
ones. Scores are "higher is better" floats; :func:`epoch_score` reads them from a trainer's epoch
record (keys ``val_delta_m``, ``val_delta_m_metrics``, ``val_metrics``, ``val_losses`` and their
``test_*`` counterparts). Ties keep the earlier epoch.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mtlbench.errors import UserInputError

#: rules scored on one epoch's validation (or, inside best_test, test) numbers
EPOCH_RULES = ("delta_m", "delta_m_metrics", "mean_metric", "val_loss")
#: every rule kind
RULES = (*EPOCH_RULES, "per_metric", "last_test_epochs", "best_test")
DEFAULT = "delta_m"
ALLOWED = "delta_m, delta_m_metrics, mean_metric:<metric>, val_loss, per_metric, last_test_epochs:<N>, best_test:<rule>"


@dataclass(frozen=True)
class SelectionRule:
    """A parsed selection rule: ``kind`` (one of :data:`RULES`), its argument, and the split it reads."""

    text: str
    kind: str
    metric: str | None = None
    epochs: int | None = None
    inner: SelectionRule | None = None

    @property
    def test_selected(self) -> bool:
        """True when the test split takes part in the selection (the run is flagged)."""
        return self.kind in ("last_test_epochs", "best_test")

    @property
    def needs_delta_m(self) -> bool:
        """True for the Delta_m rules (``delta_m``, ``delta_m_metrics``, also inside ``best_test``): a
        multi-task run selected by them needs every task's single-task reference; the other rules run
        without one (Delta_m is then not computed)."""
        return (self.inner or self).kind in ("delta_m", "delta_m_metrics")

    @property
    def needs_test_each_epoch(self) -> bool:
        return self.kind == "best_test"

    def evaluates_test_at(self, epoch: int, epochs: int) -> bool:
        """Whether the trainer must evaluate on test at the end of ``epoch`` (of ``epochs``)."""
        if self.kind == "best_test":
            return True
        return self.kind == "last_test_epochs" and epoch >= epochs - int(self.epochs or 0)


def parse_selection(text: str) -> SelectionRule:
    """A :class:`SelectionRule` from its string; a one-line error names the value and the allowed rules."""
    if not isinstance(text, str) or not text.strip():
        raise UserInputError(f"selection={text!r}; choose one of: {ALLOWED}")
    text = text.strip()
    kind, _, argument = text.partition(":")
    if kind in ("delta_m", "delta_m_metrics", "val_loss", "per_metric") and not argument:
        return SelectionRule(text, kind)
    if kind == "mean_metric" and argument:
        return SelectionRule(text, kind, metric=argument)
    if kind == "last_test_epochs" and argument:
        try:
            count = int(argument)
        except ValueError:
            count = 0
        if count < 1:
            raise UserInputError(f"selection={text!r}: last_test_epochs needs a positive number of epochs, e.g. 10")
        return SelectionRule(text, kind, epochs=count)
    if kind == "best_test" and argument:
        inner = parse_selection(argument)
        if inner.kind not in EPOCH_RULES:
            allowed = "delta_m, delta_m_metrics, mean_metric:<metric>, val_loss"
            raise UserInputError(f"selection={text!r}: best_test takes one of: {allowed}")
        return SelectionRule(text, kind, inner=inner)
    raise UserInputError(f"selection={text!r}; choose one of: {ALLOWED}")


def score_label(text: str) -> str:
    """How a run's validation score (``RunResult.val_score``) by rule ``text`` is labelled in tables:
    ``val Δm %`` for ``delta_m`` (the sweep selects on val Delta_m itself), else ``val score (<rule>)``."""
    return "val Δm %" if text.strip() == DEFAULT else f"val score ({text.strip()})"


def check_metric(rule: SelectionRule, directions: Mapping[str, Mapping[str, bool]], problem: str = "") -> None:
    """``mean_metric:<name>`` (also inside ``best_test``) needs the metric in every task, with one direction."""
    rule = rule.inner or rule
    if rule.kind != "mean_metric":
        return
    missing = [task for task, metrics in directions.items() if rule.metric not in metrics]
    if missing:
        names = sorted({name for metrics in directions.values() for name in metrics})
        raise UserInputError(
            f"selection={rule.text!r}: {problem + ' ' if problem else ''}task(s) {', '.join(missing)} have no metric "
            f"{rule.metric!r}; metrics: {', '.join(names)}"
        )
    if len({metrics[rule.metric] for metrics in directions.values()}) > 1:
        raise UserInputError(f"selection={rule.text!r}: metric {rule.metric!r} is not better in one direction")


def _finite(value: Any) -> float | None:
    return float(value) if value is not None and math.isfinite(float(value)) else None


def epoch_score(
    rule: SelectionRule, record: Mapping[str, Any], directions: Mapping[str, Mapping[str, bool]], split: str = "val"
) -> float | None:
    """The score (higher is better) of one epoch record by a single-epoch rule, on ``split``'s numbers.

    ``delta_m`` falls back to minus the summed loss when the record has no Delta_m (no reference), as
    does ``delta_m_metrics``; None means the epoch cannot be scored (a missing or non-finite value).
    """
    if rule.kind == "best_test":
        return epoch_score(rule.inner, record, directions, "test")  # type: ignore[arg-type]
    losses = record.get(f"{split}_losses")
    loss_score = None if not losses else _finite(-sum(losses.values()))
    if rule.kind in ("delta_m", "delta_m_metrics"):
        value = record.get(f"{split}_{rule.kind}")
        return loss_score if value is None else _finite(value)
    if rule.kind == "val_loss":
        return loss_score
    if rule.kind == "mean_metric":
        metrics = record.get(f"{split}_metrics") or {}
        values = [metrics[task][rule.metric] for task in metrics if rule.metric in metrics[task]]
        if not values:
            return None
        higher = next(iter(directions.values()))[rule.metric] if directions else True
        mean = float(np.mean(values))
        return _finite(mean if higher else -mean)
    raise UserInputError(f"selection={rule.text!r} does not score single epochs")


def best_epoch(
    rule: SelectionRule, history: Sequence[Mapping[str, Any]], directions: Mapping[str, Mapping[str, bool]]
) -> int | None:
    """Index in ``history`` of the best epoch by a single-epoch rule (or ``best_test``); None if none scores."""
    best, best_score = None, None
    for index, record in enumerate(history):
        score = epoch_score(rule, record, directions)
        if score is not None and (best_score is None or score > best_score):
            best, best_score = index, score
    return best


def per_metric_epochs(
    history: Sequence[Mapping[str, Any]], directions: Mapping[str, Mapping[str, bool]]
) -> dict[tuple[str, str], int]:
    """(task, metric) -> index of the epoch with the best validation value of that metric (``per_metric``)."""
    chosen: dict[tuple[str, str], int] = {}
    best: dict[tuple[str, str], float] = {}
    for index, record in enumerate(history):
        for task, metrics in (record.get("val_metrics") or {}).items():
            for metric, value in metrics.items():
                if value is None or not math.isfinite(value):
                    continue
                key = (task, metric)
                higher = directions[task][metric]
                if key not in best or (value > best[key] if higher else value < best[key]):
                    best[key], chosen[key] = value, index
    return chosen


def mean_test_metrics(history: Sequence[Mapping[str, Any]], epochs: int) -> dict[str, dict[str, float]]:
    """``last_test_epochs:N``: per task and metric, the mean test value over the last ``epochs`` records."""
    tail = [record["test_metrics"] for record in history[-epochs:] if record.get("test_metrics")]
    if not tail:
        raise UserInputError("last_test_epochs: no epoch was evaluated on test")
    return {
        task: {metric: float(np.mean([metrics[task][metric] for metrics in tail])) for metric in tail[0][task]}
        for task in tail[0]
    }


__all__ = [
    "ALLOWED",
    "DEFAULT",
    "EPOCH_RULES",
    "RULES",
    "SelectionRule",
    "best_epoch",
    "check_metric",
    "epoch_score",
    "mean_test_metrics",
    "parse_selection",
    "per_metric_epochs",
    "score_label",
]

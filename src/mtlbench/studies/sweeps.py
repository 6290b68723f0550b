"""Studies run their training through the sweep machinery: a built-in spec, a scale, a study's overlay.

A study's sweep is ``(spec name, overlay per scale)``: the spec's own ``[scales.X]`` table is applied
first (the ``test`` scale starts from the spec's ``smoke`` scale), then the study's overlay for that
scale (e.g. the two methods of a ``test`` run, or a stand-in problem when the real data is absent).
Runs are stored in the study's results database and skipped when already there (resumable).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mtlbench.studies.base import StudyContext

#: the spec scale each study scale starts from
SPEC_SCALE = {"test": "smoke", "smoke": "smoke", "cpu": "cpu", "paper": "paper"}


def study_spec(spec: str, scale: str, overlay: Mapping[str, Any] | None = None, *, name: str | None = None) -> Any:
    """The :class:`~mtlbench.sweeps.spec.SweepSpec` of built-in ``spec`` at the study ``scale`` plus ``overlay``."""
    from mtlbench.sweeps.spec import PAPER_SCALE, deep_merge, load_raw_spec, parse_spec

    raw, source = load_raw_spec(spec)
    spec_scale = SPEC_SCALE[scale]
    scales = dict(raw.get("scales") or {})
    if spec_scale != PAPER_SCALE and spec_scale in scales:
        raw = deep_merge({k: v for k, v in raw.items() if k != "scales"}, scales[spec_scale])
    else:
        raw = {k: v for k, v in raw.items() if k != "scales"}
    if overlay and overlay.get("problem", raw.get("problem")) != raw.get("problem"):
        # another problem (a stand-in): the spec's problem options are not its options
        raw = {k: v for k, v in raw.items() if k != "problem_options"}
    if overlay:
        raw = deep_merge(raw, overlay)
    if "methods" in (overlay or {}):  # a scale that runs fewer methods drops the others' grids and parameters
        for key in ("method_grids", "method_params"):
            if isinstance(raw.get(key), dict):
                raw[key] = {m: v for m, v in raw[key].items() if m in raw["methods"]}
    if name is not None:
        raw["name"] = name
    return parse_spec(raw, source=f"{source} ({scale} scale of the study)")


def run_sweep(context: StudyContext, spec: Any) -> Any:
    """Train what ``spec`` still misses into the context's store; return its :class:`SweepReport`."""
    from mtlbench.store.results import ResultsStore
    from mtlbench.sweeps import Sweep
    from mtlbench.sweeps.progress import RichSweepReporter

    context.results.parent.mkdir(parents=True, exist_ok=True)
    store = ResultsStore(context.results)
    reporter = None
    if context.progress is not False:
        from mtlbench.cli.common import console

        reporter = RichSweepReporter(console, context.progress)
    sweep = Sweep(
        spec,
        store,
        executor=context.executor,
        workers=context.workers,
        address=context.address,
        threads=context.threads,
        checkpoint_root=context.results.parent / "checkpoints",
        reporter=reporter,
    )
    return sweep.run()


def final_values(report: Any, method: str, value: str = "test_delta_m") -> dict[int, float]:
    """``{seed: value}`` of a method's final runs in a sweep report (completed runs with a finite value)."""
    import math

    out: dict[int, float] = {}
    for result in report.methods:
        if result.method != method:
            continue
        for final in result.final:
            run = final.run
            if run is None or run.status != "completed":
                continue
            number = getattr(run, value, None)
            if number is not None and math.isfinite(number):
                out[final.seed] = float(number)
    return out


def final_metric(report: Any, method: str, task: str, metric: str) -> dict[int, float]:
    """``{seed: test metric}`` of a method's completed final runs."""
    out: dict[int, float] = {}
    for result in report.methods:
        if result.method != method:
            continue
        for final in result.final:
            if final.run is None or final.run.status != "completed":
                continue
            value = final.test_metrics.get(task, {}).get(metric)
            if value is not None:
                out[final.seed] = float(value)
    return out


def final_epochs(context: StudyContext, report: Any, method: str) -> dict[int, list[dict[str, Any]]]:
    """``{seed: epoch records}`` of a method's completed final runs (weights, gradient diagnostics, ...)."""
    from mtlbench.store.results import ResultsStore

    store = ResultsStore(context.results)
    out: dict[int, list[dict[str, Any]]] = {}
    for result in report.methods:
        if result.method != method:
            continue
        for final in result.final:
            if final.run is not None and final.run.status == "completed":
                out[final.seed] = list(store.run(final.run.id)["epochs"])
    return out


def has_dataset(name: str) -> bool:
    """Whether dataset ``name`` is in the local cache (``mtlbench data info``)."""
    from mtlbench.data import DATASETS

    try:
        return bool(DATASETS[name].info())
    except Exception:  # an unreadable cache counts as absent: the study says it used the stand-in
        return False


__all__ = ["SPEC_SCALE", "final_epochs", "final_metric", "final_values", "has_dataset", "run_sweep", "study_spec"]

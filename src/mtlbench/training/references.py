"""Single-task references: train each task alone (Unit. Scal. on one task) over seeds and store the mean.

000 selects, for a single-task run, the epoch per metric (best validation value of that metric) and
reports that epoch's test value; a reference is the mean over the reference seeds, per split and metric.
References are keyed by the problem's ``reference_config()`` (problem + options such as training size),
so Delta_m is only ever computed against a reference trained on the same problem configuration.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from mtlbench.errors import RunFailedError
from mtlbench.problems import create_problem
from mtlbench.training.config import RunConfig
from mtlbench.training.trainer import Trainer


def reference_configs(base: RunConfig, seeds: Sequence[int]) -> list[RunConfig]:
    """One single-task Unit. Scal. config per (task, seed) of ``base``'s task list."""
    return [
        dataclasses.replace(base, tasks=[task], method="unit_scal", method_params={}, kind="reference", seed=seed)
        for task in base.tasks
        for seed in seeds
    ]


def train_references(
    base: RunConfig,
    seeds: Sequence[int],
    *,
    store: Any,
    checkpoint_root: Any = None,
    progress: Callable[[dict[str, Any]], None] | None = None,
    announce: Callable[[RunConfig], None] | None = None,
) -> dict[str, dict[str, dict[str, float]]]:
    """Train (or reuse completed) reference runs and store split -> task -> metric -> mean value."""
    problem = create_problem(base.problem, base.tasks, **base.problem_options)
    key = problem.reference_config()
    tasks = list(problem.task_names)
    stored: dict[str, dict[str, dict[str, float]]] = {"val": {}, "test": {}}
    for task in tasks:
        selections: list[dict[str, dict[str, float]]] = []
        run_ids: list[int] = []
        for config in reference_configs(dataclasses.replace(base, tasks=[task]), seeds):
            resolved = config.resolved()
            done = store.completed_run(resolved.to_dict())
            if done is not None:
                run = store.run(done)
                selections.append(run["summary"]["selected"][task])
                run_ids.append(done)
                continue
            if announce is not None:
                announce(resolved)
            result = Trainer(config, store=store, checkpoint_root=checkpoint_root, progress=progress).run()
            if result.status != "completed":
                raise RunFailedError(f"reference run {task} seed {config.seed} failed: {result.error}")
            selections.append(result.selected[task])
            run_ids.append(result.run_id)
        for metric in selections[0]:
            for split in ("val", "test"):
                value = float(np.mean([selection[metric][split] for selection in selections]))
                store.put_reference(
                    key, split=split, task=task, metric=metric, value=value, n_seeds=len(selections), run_ids=run_ids
                )
                stored[split].setdefault(task, {})[metric] = value
    return stored

"""Step cost of every method relative to Unit. Scal., and of each exact path of the gradient engine.

Every method is stepped with mtlbench's own training step (``Session.step``) on the same
pre-loaded batches, all sessions built first and then stepped in turn, batch by batch (every session
takes a step on a batch before any takes the next, in a new random order each time; ``--rounds``
passes over ``--steps`` batches), so that a slow spell of a shared machine, or the cache evicted by a
large neighbour, hits every method alike.
Time is the thread's CPU time (``time.thread_time``) on one thread by default: on a loaded machine
it is far steadier than wall-clock time, and on one thread it is the work done. ``--wall`` reports
wall-clock time instead. "solver" is the median share of a step spent in ``combine`` (gradient
methods: the Gram matrix and its small solver). ``--paths`` adds, for the parameter-level
methods, one row per engine path (``loop``, ``two_stage``, ``batched``, ``gramian``).

    python bench/engine_paths.py --settings multi_mnist,synthetic --steps 10 --rounds 3
    python bench/engine_paths.py --methods unit_scal,mgda,nash_mtl --paths --settings synthetic
    python bench/engine_paths.py --settings qm9 --steps 2 --rounds 1     # needs the QM9 cache
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections import defaultdict
from typing import Any

import torch

from mtlbench.methods import METHODS, GradientMethod
from mtlbench.methods.gradients import EngineOptions
from mtlbench.problems import create_problem
from mtlbench.training import RunConfig
from mtlbench.training.allocator import tune_allocator
from mtlbench.training.trainer import Session

SETTINGS: dict[str, dict[str, Any]] = {
    "multi_mnist": dict(problem="multi_mnist", tasks="CL_RR", options={"train_size": 2048}, batch_size=256),
    "multi_mnist4": dict(problem="multi_mnist", tasks="CL_CR_RL_RR", options={"train_size": 2048}, batch_size=256),
    "synthetic": dict(
        problem="synthetic",
        tasks="_".join(f"T{i}" for i in range(11)),
        options={"train_size": 2048, "hidden": 256},
        batch_size=256,
    ),
    "qm9": dict(problem="qm9", tasks="all", options={}, batch_size=120),
}
METHOD_SETTINGS = {"fixed_weights": lambda n: {"weights": ",".join(["1"] * n)}}
PATHS = ("loop", "two_stage", "batched", "gramian")


def build(
    setting: dict[str, Any],
    method: str,
    problem: Any,
    engine: EngineOptions | None,
    device: torch.device = torch.device("cpu"),
) -> Session:
    extra = METHOD_SETTINGS.get(method, lambda n: {})(len(problem.tasks))
    config = RunConfig(
        problem=setting["problem"],
        tasks=setting["tasks"],
        method=method,
        method_params=extra,
        problem_options=setting["options"],
        batch_size=setting["batch_size"],
        lr=1e-3,
        dropout=0.0,
        epochs=1,
        device=str(device),
    ).resolved()
    session = Session(config, problem, device, torch.Generator().manual_seed(0))
    if engine is not None and isinstance(session.method, GradientMethod):
        session.method.engine = engine
    return session


def instrument(session: Session, clock: Any) -> list[float]:
    """Wrap ``combine`` to accumulate its time into the returned one-element list."""
    spent = [0.0]
    if isinstance(session.method, GradientMethod):
        combine = session.method.combine

        def timed(*args: Any, **kwargs: Any) -> Any:
            start = clock()
            out = combine(*args, **kwargs)
            spent[0] += clock() - start
            return out

        session.method.combine = timed  # type: ignore[method-assign]
    return spent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default="all", help="'all' or names joined by commas")
    parser.add_argument("--settings", default="multi_mnist,synthetic")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--wall", action="store_true", help="wall-clock instead of thread CPU time")
    parser.add_argument("--paths", action="store_true", help="also time each engine path of parameter-level methods")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    tune_allocator()  # as the trainer does
    clock = time.perf_counter if args.wall else time.thread_time
    names = [m for m in METHODS.names() if m != "sum"] if args.methods == "all" else args.methods.split(",")
    if "unit_scal" not in names:
        names.insert(0, "unit_scal")
    for setting_name in args.settings.split(","):
        setting = SETTINGS[setting_name]
        problem = create_problem(setting["problem"], setting["tasks"], **setting["options"])
        problem.prepare()
        batches = []
        for batch in problem.batches("train", setting["batch_size"], shuffle=True, generator=torch.Generator()):
            batches.append(batch)
            if len(batches) == args.steps:
                break
        runs: dict[str, tuple[Session, list[float]]] = {}
        for name in names:
            runs[name] = (session := build(setting, name, problem, None), instrument(session, clock))
            cls = METHODS[name]
            if args.paths and issubclass(cls, GradientMethod) and cls.default_space == "parameters":
                for path in PATHS:
                    if path == "gramian" and not cls.gramian_only:
                        continue
                    key = f"{name} [{path}]"
                    session = build(setting, name, problem, EngineOptions(path))
                    runs[key] = (session, instrument(session, clock))
        times: dict[str, list[float]] = defaultdict(list)
        shares: dict[str, list[float]] = defaultdict(list)
        for session, _ in runs.values():  # warm-up step of each
            session.step(batches[0])
        order = random.Random(0)
        for _ in range(args.rounds):
            for batch in batches:  # every session steps on this batch before the next: a slow spell hits all
                # in a new random order each time: no session always follows the same (cache-evicting) one
                for key in order.sample(list(runs), len(runs)):
                    session, spent = runs[key]
                    spent[0] = 0.0
                    start = clock()
                    session.step(batch)
                    elapsed = clock() - start
                    times[key].append(elapsed)
                    shares[key].append(spent[0] / elapsed)
        base = statistics.median(times["unit_scal"])
        n_tasks = len(problem.tasks)
        label = setting["tasks"] if n_tasks < 4 else f"T={n_tasks}"
        print(
            f"\n## {setting['problem']} {label} (batch {setting['batch_size']}, cpu, {args.threads} thread(s), "
            f"{'wall' if args.wall else 'thread CPU'} time, {args.rounds} rounds x {args.steps} steps)\n"
        )
        print("| method | kind | ms/step | × Unit. Scal. | solver share |")
        print("|---|---|---:|---:|---:|")
        for key in sorted(runs, key=lambda k: statistics.median(times[k])):
            name = key.split(" ")[0]
            median = statistics.median(times[key])
            kind = METHODS[name].kind.value
            share = f"{100 * statistics.median(shares[key]):.1f}%" if issubclass(METHODS[name], GradientMethod) else "-"
            print(f"| {key} | {kind} | {1000 * median:.2f} | {median / base:.2f} | {share} |")


if __name__ == "__main__":
    main()

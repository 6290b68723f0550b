"""Time per training step of every method relative to Unit. Scal., and the share spent in its solver.

Two settings, measured side by side in one run: Multi-MNIST CL_RR (T=2, LeNet) and the synthetic
regression problem with T=11 tasks. Each method is stepped with mtlbench's own training step
(``Session.step``) on the same pre-loaded batches; methods are interleaved in ``--rounds`` rounds
and the median step time is reported. "solver" is the median share of a step spent in the method's
``combine`` (gradient methods: the Gram matrix and its small solver), measured in the same steps.

    python bench/step_overhead.py --steps 20 --rounds 3
    python bench/step_overhead.py --methods unit_scal,cagrad,nash_mtl --settings synthetic
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import defaultdict

import torch

from engine_paths import SETTINGS as PATHS_SETTINGS
from engine_paths import build, instrument
from mtlbench.methods import METHODS, GradientMethod
from mtlbench.problems import create_problem
from mtlbench.training.allocator import tune_allocator
from mtlbench.training.config import resolve_device

#: larger training sets than engine_paths' so that every timed step has its own batch
SETTINGS = {
    name: {**setting, "options": {**setting["options"], "train_size": 4096}} for name, setting in PATHS_SETTINGS.items()
}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_method(setting: dict, method: str, steps: int, device: torch.device) -> tuple[list[float], list[float]]:
    problem = create_problem(setting["problem"], setting["tasks"], **setting["options"])
    problem.prepare()
    session = build(setting, method, problem, None, device)

    def clock() -> float:
        _sync(device)
        return time.perf_counter()

    solver_seconds = instrument(session, clock)
    generator = torch.Generator().manual_seed(0)
    batches = []
    for batch in problem.batches("train", setting["batch_size"], shuffle=True, generator=generator):
        batches.append(batch.to(device))
        if len(batches) == steps + 2:
            break
    step_times, solver_shares = [], []
    for index, batch in enumerate(batches):
        solver_seconds[0] = 0.0
        start = clock()
        session.step(batch)
        elapsed = clock() - start
        if index >= 2:  # warm-up
            step_times.append(elapsed)
            solver_shares.append(solver_seconds[0] / elapsed)
    return step_times, solver_shares


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default="all", help="'all' or names joined by commas")
    parser.add_argument("--settings", default="multi_mnist,synthetic")
    parser.add_argument("--steps", type=int, default=15)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    device = resolve_device(args.device)
    tune_allocator()  # as the trainer does
    names = [m for m in METHODS.names() if m != "sum"] if args.methods == "all" else args.methods.split(",")
    if "unit_scal" not in names:
        names.insert(0, "unit_scal")
    for setting_name in args.settings.split(","):
        if setting_name not in SETTINGS:
            parser.error(f"unknown setting {setting_name!r}; choose from {', '.join(SETTINGS)}")
        setting = SETTINGS[setting_name]
        times: dict[str, list[float]] = defaultdict(list)
        shares: dict[str, list[float]] = defaultdict(list)
        for _ in range(args.rounds):
            for name in names:
                step_times, solver_shares = time_method(setting, name, args.steps, device)
                times[name] += step_times
                shares[name] += solver_shares
        base = statistics.median(times["unit_scal"])
        n_tasks = len(setting["tasks"].split("_"))
        print(
            f"\n## {setting['problem']} {setting['tasks'] if n_tasks < 4 else f'T={n_tasks}'} "
            f"(batch {setting['batch_size']}, {device}, {torch.get_num_threads()} threads, "
            f"{args.rounds} rounds x {args.steps} steps)\n"
        )
        print("| method | kind | ms/step | × Unit. Scal. | solver share |")
        print("|---|---|---:|---:|---:|")
        for name in sorted(names, key=lambda n: statistics.median(times[n])):
            median = statistics.median(times[name])
            share = statistics.median(shares[name])
            kind = METHODS[name].kind.value
            shown = f"{100 * share:.1f}%" if issubclass(METHODS[name], GradientMethod) else "-"
            print(f"| {name} | {kind} | {1000 * median:.1f} | {median / base:.2f} | {shown} |")


if __name__ == "__main__":
    main()

"""Every method at T = 40 on CelebA's model size: step time relative to Unit. Scal., solver share, peak RSS.

The model is 003's CIFAR-style ResNet-18 at full width (64; 11.2 M shared parameters, 2048-d
feature, 40 heads Linear(2048, 2) + log-softmax) on 64x64 images of the generated stand-in
``synthetic_attributes`` (the same shapes as CelebA; no data needed). Each method is stepped with
the trainer's own ``Session.step``, one method after the other, one thread, thread CPU time (steady
on a loaded machine): 003's seven methods at ``--batch`` (one warm-up step, then ``--steps``), every
other method at ``--reduced-batch`` (one warm-up step, then ``--reduced-steps``); Unit. Scal. is
timed at both batches, and each ratio is to Unit. Scal. at the method's own batch. "solver" is the
share of a step inside ``combine``.

``--rss`` measures the peak resident memory (``ru_maxrss``) of a process that builds the session
and takes two steps, each in a fresh process: Unit. Scal., a parameter-level method on the
``loop`` path (the (T, D) matrix of per-task gradients: 40 x 11.2 M floats = 1.8 GB), and the same
method on the ``gramian`` path with a memory budget of ``--budget-share`` of Unit. Scal.'s peak.

    python bench/t40.py --batch 16 --reduced-batch 4              # step times (minutes on one core)
    python bench/t40.py --rss --rss-batch 8 --rss-method pcgrad    # peak RSS, fresh processes
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

from engine_paths import build, instrument
from mtlbench.methods import METHODS, GradientMethod
from mtlbench.methods.gradients import EngineOptions
from mtlbench.problems import create_problem
from mtlbench.training.allocator import tune_allocator

#: 003's seven methods (Kurin et al. section 4.1.2)
KURIN = ("unit_scal", "mgda_ub", "imtl", "pcgrad", "graddrop", "rlw_dirichlet", "rlw_normal")
#: 003's per-epoch cost factors relative to Unit. Scal. (section 4.1.2, CelebA on a GPU)
KURIN_FACTORS = {"pcgrad": "~35x", "mgda_ub": "1.05-2.4x (on z)", "imtl": "1.05-2.4x (on z)"}
KURIN_FACTORS |= {"graddrop": "1.05-2.4x (on z)", "rlw_dirichlet": "~1.05x", "rlw_normal": "~1.05x"}


def setting(batch: int) -> dict[str, Any]:
    options = {"image_size": 64, "width": 64, "train_size": 4 * batch, "eval_size": 8}
    return dict(problem="synthetic_attributes", tasks="all", options=options, batch_size=batch)


def time_method(name: str, batch: int, steps: int, engine: EngineOptions | None = None) -> tuple[list[float], float]:
    """Thread CPU seconds of ``steps`` steps after one warm-up, and the median solver share."""
    config = setting(batch)
    problem = create_problem(config["problem"], config["tasks"], **config["options"])
    problem.prepare()
    session = build(config, name, problem, engine)
    spent = instrument(session, time.thread_time)
    batches = list(problem.batches("train", batch, shuffle=True, generator=torch.Generator().manual_seed(0)))
    times, shares = [], []
    for index in range(steps + 1):
        spent[0] = 0.0
        start = time.thread_time()
        session.step(batches[index % len(batches)])
        elapsed = time.thread_time() - start
        if index:
            times.append(elapsed)
            shares.append(spent[0] / elapsed)
    return times, statistics.median(shares)


def step_table(args: argparse.Namespace) -> None:
    names = [m for m in METHODS.names() if m != "sum"] if args.methods == "all" else args.methods.split(",")
    plan = [("unit_scal", args.batch, args.steps)]
    if args.reduced_batch != args.batch:
        plan.append(("unit_scal", args.reduced_batch, args.reduced_steps))
    plan += [(n, args.batch, args.steps) for n in KURIN if n != "unit_scal" and n in names]
    plan += [(n, args.reduced_batch, args.reduced_steps) for n in names if n not in KURIN]
    rows = []
    for name, batch, steps in plan:
        start = time.perf_counter()
        times, share = time_method(name, batch, steps)
        wall = time.perf_counter() - start
        rows.append((name, batch, statistics.median(times), share))
        print(
            f"# {name} batch {batch}: {[round(t, 2) for t in times]} s, solver {100 * share:.1f}% (wall {wall:.0f} s)",
            file=sys.stderr,
            flush=True,
        )
    base = {batch: seconds for name, batch, seconds, _ in rows if name == "unit_scal"}
    print("\n### T=40, 003's ResNet-18 (width 64) on 64x64 images, 1 thread, thread CPU time\n")
    print("| method | kind | batch | s/step | × Unit. Scal. | solver share | 003 (per epoch, GPU) |")
    print("|---|---|---:|---:|---:|---:|---|")
    for name, batch, seconds, share in sorted(rows, key=lambda r: (r[1] != args.batch, r[2] / base[r[1]])):
        kind = METHODS[name].kind.value
        shown = f"{100 * share:.1f}%" if issubclass(METHODS[name], GradientMethod) else "-"
        factor = KURIN_FACTORS.get(name, "1" if name == "unit_scal" else "")
        print(f"| {name} | {kind} | {batch} | {seconds:.2f} | {seconds / base[batch]:.2f} | {shown} | {factor} |")


# ------------------------------------------------------------------------------------------ peak RSS


def rss_child(name: str, batch: int, path: str, budget: int | None) -> None:
    """Build the session, take two steps, print the peak RSS (MiB) and the step times as JSON."""
    tune_allocator()  # as the trainer does
    engine = EngineOptions(path, max_gradient_bytes=budget) if path != "none" else None
    times, _ = time_method(name, batch, 1, engine)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(json.dumps({"peak_mib": peak, "seconds": times[0]}))


def fresh(name: str, batch: int, path: str = "none", budget: int | None = None) -> dict[str, float]:
    command = [sys.executable, __file__, "--rss-child", name, "--rss-batch", str(batch), "--path", path]
    if budget is not None:
        command += ["--budget", str(budget)]
    result = subprocess.run(command, capture_output=True, text=True, check=True, cwd=Path(__file__).parent)
    return json.loads(result.stdout.strip().splitlines()[-1])


def rss_table(args: argparse.Namespace) -> None:
    unit = fresh("unit_scal", args.rss_batch)
    budget = int(args.budget_share * unit["peak_mib"] * 2**20)
    loop = fresh(args.rss_method, args.rss_batch, "loop")
    gram = fresh(args.rss_method, args.rss_batch, "gramian", budget)
    print(f"\n### Peak RSS of one process (build + warm-up + one step), T=40, batch {args.rss_batch}, 1 thread\n")
    print("| run | peak RSS (MiB) | × Unit. Scal. | s/step (thread CPU) |")
    print("|---|---:|---:|---:|")
    for label, row in (
        ("unit_scal", unit),
        (f"{args.rss_method} [loop]", loop),
        (f"{args.rss_method} [gramian, budget {budget / 2**20:.0f} MiB]", gram),
    ):
        print(f"| {label} | {row['peak_mib']:.0f} | {row['peak_mib'] / unit['peak_mib']:.2f} | {row['seconds']:.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default="all", help="'all' or names joined by commas")
    parser.add_argument("--batch", type=int, default=16, help="batch of 003's seven methods")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--reduced-batch", type=int, default=4, help="batch of every other method")
    parser.add_argument("--reduced-steps", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rss", action="store_true", help="peak RSS in fresh processes instead of step times")
    parser.add_argument("--rss-method", default="pcgrad")
    parser.add_argument("--rss-batch", type=int, default=8)
    parser.add_argument("--budget-share", type=float, default=0.25, help="Gramian budget / Unit. Scal.'s peak RSS")
    parser.add_argument("--rss-child", help=argparse.SUPPRESS)
    parser.add_argument("--path", default="none", help=argparse.SUPPRESS)
    parser.add_argument("--budget", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.rss_child:
        rss_child(args.rss_child, args.rss_batch, args.path, args.budget)
    elif args.rss:
        rss_table(args)
    else:
        tune_allocator()
        step_table(args)


if __name__ == "__main__":
    main()

"""Runs per hour of a sweep: a plain loop, the local executor with 1 and 2 workers, and Ray, in one run.

Every mode trains the same runs (one torch thread each, so the numbers agree and are checked) into its
own fresh results store; times are wall-clock from the start of ``Sweep.run()`` to its end, start-up of
the worker pool or of the local Ray instance included. The plain loop trains the runs the sweep
launched, in the same order, one after another with ``Trainer`` (the references copied in first): the
sweep machinery's overhead is the difference with the 1-worker sweep.

    python bench/sweep_throughput.py                         # a synthetic smoke sweep (~40 runs)
    python bench/sweep_throughput.py --spec mnist_cl_rr --scale smoke
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from mtlbench.store.results import ResultsStore
from mtlbench.sweeps import Sweep, load_spec, parse_spec
from mtlbench.sweeps.executors import limit_threads
from mtlbench.training import RunConfig, Trainer

SYNTHETIC = {
    "name": "synthetic_smoke",
    "problem": "synthetic",
    "tasks": "T0_T1_T2",
    "methods": ["unit_scal", "cagrad", "famo"],
    "search_seeds": 2,
    "final_seeds": 3,
    "problem_options": {"train_size": 8192, "eval_size": 1024},
    "settings": {"epochs": 4, "batch_size": 64},
    "grid": {"lr": [0.01, 0.001]},
    "method_grids": {"cagrad": {"c": [0.2, 0.5, 0.8]}, "famo": {"gamma": [0.01, 0.001, 0.0001]}},
    "references": {"search_seeds": 1, "final_seeds": 2},
}


def numbers(store: ResultsStore) -> dict:
    runs = store.runs()
    hashes = dict(zip(runs["id"], runs["config_hash"], strict=True))
    return {(hashes[r.run_id], r.task, r.metric): r.value for r in store.test_metrics().itertuples()}


def timed_sweep(spec, folder: Path, name: str, **options) -> tuple[float, int, ResultsStore]:
    store = ResultsStore(folder / f"{name}.db")
    started = time.perf_counter()
    report = Sweep(spec, store, threads=1, checkpoint_root=folder / f"{name}-ckpt", **options).run()
    return time.perf_counter() - started, report.launched, store


def plain_loop(source: ResultsStore, folder: Path) -> tuple[float, int, ResultsStore]:
    """The runs of ``source`` in launch order, trained one after another with the bare Trainer."""
    store = ResultsStore(folder / "loop.db")
    runs = source.runs().sort_values("id")
    for row in source.references().itertuples():
        store.put_reference(
            json.loads(row.key),
            split=row.split,
            task=row.task,
            metric=row.metric,
            value=row.value,
            n_seeds=row.n_seeds,
            run_ids=[],
        )
    configs = [RunConfig.from_dict(source.run(int(run_id))["config"]) for run_id in runs["id"]]
    multi = [c for c in configs if c.kind == "multi_task"]
    single = [c for c in configs if c.kind != "multi_task"]
    started = time.perf_counter()
    for config in [*single, *multi]:
        with limit_threads(config.threads):  # as the executors do (BLAS threads of the solvers)
            Trainer(config, store=store, checkpoint_root=folder / "loop-ckpt").run()
    return time.perf_counter() - started, len(configs), store


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spec", help="a sweep file or built-in spec (default: a synthetic smoke sweep)")
    parser.add_argument("--scale", default="smoke")
    parser.add_argument("--workers", default="2", help="comma-separated worker counts of the pool (and of Ray)")
    parser.add_argument("--no-ray", action="store_true", help="skip the Ray executor")
    args = parser.parse_args()
    spec = load_spec(args.spec, args.scale) if args.spec else parse_spec(SYNTHETIC, source="synthetic throughput")

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        one_s, launched, one = timed_sweep(spec, folder, "local-1", workers=1)
        loop_s, loop_runs, loop = plain_loop(one, folder)
        rows.append(("plain loop (Trainer, one after another)", loop_runs, loop_s, numbers(loop) == numbers(one)))
        rows.append(("sweep, local executor, 1 worker", launched, one_s, True))
        counts = [int(n) for n in args.workers.split(",") if n.strip() and int(n) > 1]
        for n in counts:
            n_s, n_runs, n_store = timed_sweep(spec, folder, f"local-{n}", workers=n)
            rows.append((f"sweep, local executor, {n} workers", n_runs, n_s, numbers(n_store) == numbers(one)))
        if not args.no_ray:
            try:
                import ray  # noqa: F401
            except ImportError:
                print("ray is not installed: skipping the Ray executor")
            else:
                n = max(counts or [1])
                ray_s, ray_runs, ray_store = timed_sweep(spec, folder, "ray", executor="ray", workers=n)
                same = numbers(ray_store) == numbers(one)
                rows.append((f"sweep, Ray (local instance, {n} CPUs)", ray_runs, ray_s, same))

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"sweep {spec.name} (scale {spec.scale}), 1 torch thread per run; {os.cpu_count()} cores, load {load:.1f}")
    print(f"{'mode':<42} {'runs':>5} {'seconds':>9} {'runs/hour':>10} {'vs loop':>8}  same numbers")
    for name, runs, seconds, same in rows:
        print(f"{name:<42} {runs:>5} {seconds:>9.1f} {runs / seconds * 3600:>10.0f} {loop_s / seconds:>7.2f}x  {same}")


if __name__ == "__main__":
    main()

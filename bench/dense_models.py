"""Step cost of 001's dense models: SegNet, SegNet-MTAN, DeepLabV3+ (LibMTL) and the v3+ decoder.

For each model at full width on generated scenes at the papers' resolutions (NYUv2-style S13/D/N at
384x288; Cityscapes-style S7/D at 256x128), with one thread and thread CPU time:

- the parameter-level floor, (F + T task backward passes) / (F + B): F = forward and losses,
  B = ``autograd.grad`` of the summed loss w.r.t. the shared parameters, the T task passes = the
  engine's per-task loop (each task's loss from its own graph edge) w.r.t. the same parameters;
- the fraction of parameters that are shared (SegNet: almost all; DeepLabV3+: a third, 001's point);
- the time of one training step (``Session.step``: forward, method, Adam) of Unit. Scal., a
  parameter-level method (CAGrad) and a representation-level one (IMTL, which SegNet-MTAN refuses:
  it has no shared z), and the peak resident memory of that session (VmHWM; Linux only), and its
  excess over the resident memory before the session was built. Each method runs in its own process.

    python bench/dense_models.py                       # both datasets, every model (tens of minutes on CPU)
    python bench/dense_models.py --datasets city --models segnet --steps 2
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from mtlbench.errors import UserInputError
from mtlbench.methods.gradients import per_task_gradients
from mtlbench.problems import create_problem
from mtlbench.training.config import RunConfig
from mtlbench.training.trainer import Session

#: the papers' settings (001 A3.1; MTAN/LibMTL): resolution, tasks, preset, papers' batch size per model
DATASETS = {
    "nyuv2": {
        "preset": "NYUv2",
        "resolution": "384x288",
        "tasks": "S_D_N",
        "paper_batch": {"segnet": 2, "segnet_mtan": 2, "deeplabv3plus": 8, "deeplabv3plus_decoder": 8},
    },
    "city": {
        "preset": "R18",
        "resolution": "256x128",
        "tasks": "S_D",
        "paper_batch": {"segnet": 64, "segnet_mtan": 64, "deeplabv3plus": 64, "deeplabv3plus_decoder": 64},
    },
}
MODELS = ("segnet", "segnet_mtan", "deeplabv3plus", "deeplabv3plus_decoder")
METHODS = ("unit_scal", "cagrad", "imtl")


def _status(field: str) -> int:
    """A VmRSS/VmHWM line of /proc/self/status, in bytes (0 where unavailable)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _reset_peak() -> None:
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def floor(problem, batch) -> dict[str, float]:
    """Thread CPU seconds of F, B and the T task backward passes (after one untimed warm-up of each)."""
    torch.manual_seed(0)
    model = problem.build_model()
    model.train()
    shared = model.shared_parameters()

    def losses():
        outputs = model(batch.inputs)
        return torch.stack([task.loss(outputs[task.name], batch.targets[task.name]) for task in problem.tasks])

    result: dict[str, float] = {}
    for timed in (False, True):
        tic = time.thread_time()
        stacked = losses()
        forward = time.thread_time() - tic
        tic = time.thread_time()
        torch.autograd.grad(stacked.sum(), shared)
        backward = time.thread_time() - tic
        stacked = losses()
        tic = time.thread_time()
        per_task_gradients(stacked, shared, path="loop")
        tasks = time.thread_time() - tic
        if timed:
            result = {"F": forward, "B": backward, "T_bwd": tasks, "floor": (forward + tasks) / (forward + backward)}
    n_all = sum(p.numel() for p in model.parameters())
    n_shared = sum(p.numel() for p in shared)
    result.update(parameters=n_all, shared=n_shared, shared_fraction=n_shared / n_all)
    return result


def step_cost(
    problem, dataset: str, model: str, method: str, batches, steps: int, width: int
) -> dict[str, float | str]:
    gc.collect()
    before = _status("VmRSS")
    _reset_peak()
    setting = DATASETS[dataset]
    options = {"preset": setting["preset"], "model": model, "resolution": setting["resolution"], "width": width}
    config = RunConfig(
        problem="synthetic_scenes",
        tasks=DATASETS[dataset]["tasks"],
        method=method,
        problem_options=options,
        threads=1,
        device="cpu",
    ).resolved()
    try:
        session = Session(config, problem, torch.device("cpu"), torch.Generator().manual_seed(0))
    except UserInputError as error:
        return {"refused": str(error)}
    times = []
    for index in range(steps + 1):
        tic = time.thread_time()
        session.step(batches[index % len(batches)])
        if index:  # the first step warms up the allocator and the solver
            times.append(time.thread_time() - tic)
    peak = _status("VmHWM")
    del session
    return {"seconds": statistics.median(times), "peak_rss": peak, "peak_over_start": peak - before}


def run_one(dataset: str, model: str, method: str, batch_size: int, steps: int, width: int, with_floor: bool) -> dict:
    """One measurement in this (fresh) process: peak memory is then this run's alone."""
    torch.set_num_threads(1)
    setting = DATASETS[dataset]
    problem = create_problem(
        "synthetic_scenes",
        setting["tasks"],
        preset=setting["preset"],
        model=model,
        resolution=setting["resolution"],
        width=width,
        n_images=max(10, int(2 * batch_size / 0.7) + 2),
    )
    problem.prepare()
    generator = torch.Generator().manual_seed(0)
    batches = list(problem.batches("train", batch_size, shuffle=True, generator=generator))
    row: dict = {"dataset": dataset, "model": model, "method": method, "batch": batch_size}
    row.update(step_cost(problem, dataset, model, method, batches, steps, width))
    if with_floor:  # after the step's peak memory was read
        row.update(floor(problem, batches[0]))
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="city,nyuv2")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--batch-size", type=int, default=2, help="measured batch (the papers': 2-8 NYUv2, 64 city)")
    parser.add_argument("--steps", type=int, default=1, help="timed steps per method, after one warm-up step")
    parser.add_argument("--width", type=int, default=64, help="base channels (64 = the real networks)")
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        dataset, model, method, with_floor = args.child.split(":")
        row = run_one(dataset, model, method, args.batch_size, args.steps, args.width, with_floor == "1")
        print("RESULT " + json.dumps(row), flush=True)
        return
    results = []
    print(
        "| dataset | model | batch (paper's) | shared parameters | floor | method | s/step | peak RSS (GB) | + (GB) |"
    )
    print("|---|---|---|---:|---:|---|---:|---:|---:|")
    for dataset in args.datasets.split(","):
        for model in args.models.split(","):
            cost: dict = {}
            for index, method in enumerate(args.methods.split(",")):
                child = f"{dataset}:{model}:{method}:{int(index == 0)}"
                command = [sys.executable, __file__, "--child", child, "--batch-size", str(args.batch_size)]
                command += ["--steps", str(args.steps), "--width", str(args.width)]
                done = subprocess.run(command, capture_output=True, text=True, check=False)
                lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
                if not lines:
                    print(f"<!-- {child} failed: {done.stderr.strip().splitlines()[-1:]} -->", flush=True)
                    continue
                row = json.loads(lines[0].removeprefix("RESULT "))
                cost = {
                    k: row[k]
                    for k in ("F", "B", "T_bwd", "floor", "parameters", "shared", "shared_fraction")
                    if k in row
                } or cost
                row.update(cost)
                results.append(row)
                if index == 0 and cost:
                    print(
                        f"<!-- floor {dataset} {model}: F {cost['F']:.2f} s, B {cost['B']:.2f} s, "
                        f"T task backward passes {cost['T_bwd']:.2f} s -->",
                        flush=True,
                    )
                if "refused" in row:
                    measured = "refused (no shared z) | - | -"
                else:
                    measured = (
                        f"{row['seconds']:.1f} | {row['peak_rss'] / 1e9:.2f} | {row['peak_over_start'] / 1e9:.2f}"
                    )
                paper = DATASETS[dataset]["paper_batch"][model]
                shared = (
                    f"{cost['shared'] / 1e6:.1f}M of {cost['parameters'] / 1e6:.1f}M ({cost['shared_fraction']:.1%})"
                )
                print(
                    f"| {dataset} | {model} | {args.batch_size} ({paper}) | {shared} | {cost['floor']:.2f} | "
                    f"{method} | {measured} |",
                    flush=True,
                )
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()

"""Step cost of 002's encoders on NYUD (S40, D, N, E) at 002's resolution and batch (Table IX).

For each encoder (``nyud``'s ``encoder`` option, full size: width 64, full depth) on the generated NYUD stand-in
at 576x448 (DINOv2: 574x448), batch 6 for ResNet/HRNet and 4 for the ViTs (002's total batches), one thread:
the thread CPU time of ``Session.step`` (forward, method, optimiser step) of Unit. Scal. and of a
parameter-level method (CAGrad: four per-task backward passes and its solver), and the peak resident memory
of that process (VmHWM; Linux only). Each (encoder, method) runs in a fresh process; ``--steps`` timed steps
follow one untimed warm-up step. The optimiser is the setup's (Adam; AdamW for the ViTs).

    python bench/encoders.py                                  # every encoder (about half an hour on one core)
    python bench/encoders.py --encoders vit_t16,hrnet_w18 --steps 1
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from mtlbench.models.encoders import ENCODERS, HRNETS, RESNETS
from mtlbench.problems import create_problem
from mtlbench.training.config import RunConfig
from mtlbench.training.trainer import Session

METHODS = ("unit_scal", "cagrad")


def _status(field: str) -> int:
    """A VmRSS/VmHWM line of /proc/self/status, in bytes (0 where unavailable)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


def setup(encoder: str) -> dict:
    """002's Table IX setting of ``encoder``'s family."""
    vit = encoder not in RESNETS and encoder not in HRNETS
    return {
        "resolution": "574x448" if encoder == "vit_b14_reg4" else "576x448",
        "batch": 4 if vit else 6,
        "optimizer": "adamw" if vit else "adam",
        "lr": 2e-5 if vit else 1e-4,
        "weight_decay": 1e-6 if vit else 1e-4,
        "grad_clip": 10.0 if vit else 0.0,
    }


def run_one(encoder: str, method: str, steps: int) -> dict:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    setting = setup(encoder)
    options = {
        "source": "synthetic",
        "encoder": encoder,
        "resolution": setting["resolution"],
        "synthetic_size": 576,
        "n_images": 2 * setting["batch"] + 4,
        "edge_thresholds": 2,
    }
    problem = create_problem("nyud", "all", **options)
    problem.prepare()
    generator = torch.Generator().manual_seed(0)
    batch = next(problem.batches("train", setting["batch"], shuffle=True, generator=generator))
    config = RunConfig(
        problem="nyud",
        tasks="all",
        method=method,
        problem_options=options,
        batch_size=setting["batch"],
        optimizer=setting["optimizer"],
        lr=setting["lr"],
        weight_decay=setting["weight_decay"],
        grad_clip=setting["grad_clip"],
        scheduler="poly",
        threads=1,
        device="cpu",
    ).resolved()
    session = Session(config, problem, torch.device("cpu"), torch.Generator().manual_seed(0))
    parameters = sum(p.numel() for p in session.model.parameters())
    shared = sum(p.numel() for p in session.model.shared_parameters())
    times = []
    for index in range(steps + 1):
        tic = time.thread_time()
        session.step(batch)
        if index:
            times.append(time.thread_time() - tic)
    return {
        "encoder": encoder,
        "method": method,
        "resolution": setting["resolution"],
        "batch": setting["batch"],
        "seconds": statistics.median(times),
        "peak_rss": _status("VmHWM"),
        "parameters": parameters,
        "shared": shared,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoders", default=",".join(ENCODERS))
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--steps", type=int, default=1, help="timed steps, after one untimed warm-up step")
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        encoder, method = args.child.split(":")
        print("RESULT " + json.dumps(run_one(encoder, method, args.steps)), flush=True)
        return
    results = []
    print("| encoder | input, batch | parameters (shared) | method | s/step | peak RSS (GB) |")
    print("|---|---|---:|---|---:|---:|")
    for encoder in args.encoders.split(","):
        for method in args.methods.split(","):
            command = [sys.executable, __file__, "--child", f"{encoder}:{method}", "--steps", str(args.steps)]
            done = subprocess.run(command, capture_output=True, text=True, check=False)
            lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
            if not lines:
                print(f"<!-- {encoder}:{method} failed: {done.stderr.strip().splitlines()[-1:]} -->", flush=True)
                continue
            row = json.loads(lines[0].removeprefix("RESULT "))
            results.append(row)
            print(
                f"| {encoder} | {row['resolution']}, {row['batch']} | {row['parameters'] / 1e6:.1f}M "
                f"({row['shared'] / 1e6:.1f}M) | {method} | {row['seconds']:.1f} | {row['peak_rss'] / 2**30:.2f} |",
                flush=True,
            )
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()

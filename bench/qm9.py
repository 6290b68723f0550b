"""QM9 throughput: featurisation (molecules/s) and Unit. Scal. training (molecules/s, epoch time).

Usage: ``python bench/qm9.py [--device auto|cpu|cuda] [--subset 1200] [--steps 10] [--featurize 2000]``

- featurisation: RDKit ``DetermineBonds`` (Hueckel) on the first ``--featurize`` cached molecules, in
  one process and with the default worker pool (the cost of ``mtlbench data fetch qm9``);
- training: the MPNN on the eleven tasks, Unit. Scal. (the sum of the MSE losses, Adam lr 1e-3,
  batch 120), complete and bonded graphs, on the first ``--subset`` training molecules; reports
  molecules/s of the whole step (batching + forward + backward + update) and of batching alone, and
  the implied time of one full epoch (110,831 molecules). ``--full-epoch`` times a real epoch.
  Both MPNN variants are timed: the edge network evaluated once per forward (default) and at each
  of the three steps (PyG's NNConv, the reference code).

Needs the QM9 cache (``mtlbench data fetch qm9``); prints one JSON object per measurement.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from mtlbench.data import qm9 as qm9_data
from mtlbench.data.qm9_featurize import default_workers, featurize_all
from mtlbench.models.mpnn import build_mpnn
from mtlbench.problems.qm9 import QM9Problem


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_featurize(count: int) -> list[dict[str, object]]:
    data = qm9_data.load_qm9(build=False)
    molecules = data.molecules
    ptr = molecules.atom_ptr[: count + 1]
    z, pos = molecules.z[: ptr[-1]], molecules.pos[: ptr[-1]]
    results = []
    for workers in sorted({1, default_workers()}):
        with tempfile.TemporaryDirectory() as temp:
            start = time.perf_counter()
            featurize_all(z, pos, ptr, Path(temp) / "chunks", chunk_size=250, workers=workers, progress=False)
            seconds = time.perf_counter() - start
        results.append(
            {
                "bench": "featurize",
                "workers": workers,
                "molecules": count,
                "seconds": round(seconds, 2),
                "molecules_per_s": round(count / seconds, 1),
            }
        )
    return results


def bench_training(
    graph: str,
    device: torch.device,
    subset: int,
    steps: int,
    full_epoch: bool,
    batch_size: int = 120,
    edge_network_once: bool = True,
) -> dict[str, object]:
    problem = QM9Problem("all", graph=graph, subset=None if full_epoch else subset)
    problem.prepare()
    torch.manual_seed(0)
    model = build_mpnn(problem.task_names, edge_network_once=edge_network_once).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(0)

    def step(batch) -> None:
        batch = batch.to(device, non_blocking=True)
        outputs = model(batch.inputs)
        loss = sum(task.loss(outputs[task.name], batch.targets[task.name]) for task in problem.tasks)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    batches = problem.batches("train", batch_size, shuffle=True, generator=generator)
    step(next(batches))  # warm-up (allocations, kernels)
    _sync(device)
    start = time.perf_counter()
    done, count = 0, 0
    for batch in batches:
        step(batch)
        done += batch.size
        count += 1
        if not full_epoch and count >= steps:
            break
    _sync(device)
    seconds = time.perf_counter() - start
    start = time.perf_counter()
    batched = 0
    for batch in problem.batches("train", batch_size, shuffle=True, generator=generator):
        batched += batch.size
        if not full_epoch and batched >= done:
            break
    batching_seconds = time.perf_counter() - start
    rate = done / seconds
    full_train = qm9_data.split_sizes(qm9_data.FULL_SIZE)[0]
    return {
        "bench": "train_unit_scal",
        "graph": graph,
        "edge_network": "once per forward" if edge_network_once else "per step (PyG NNConv)",
        "device": str(device),
        "threads": torch.get_num_threads(),
        "steps": count,
        "molecules": done,
        "seconds": round(seconds, 3),
        "s_per_step": round(seconds / count, 4),
        "molecules_per_s": round(rate, 1),
        "batching_molecules_per_s": round(batched / batching_seconds, 1),
        "epoch_s" if full_epoch else "implied_full_epoch_s": round(full_train / rate if not full_epoch else seconds, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--subset", type=int, default=1200, help="training molecules for the step timing")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per graph kind (after one warm-up)")
    parser.add_argument("--featurize", type=int, default=2000, help="molecules to featurise (0 = skip)")
    parser.add_argument("--graphs", default="complete,bonded")
    parser.add_argument("--full-epoch", action="store_true", help="time a whole epoch on the full training split")
    parser.add_argument(
        "--edge-network", default="both", choices=("both", "once", "literal"), help="MPNN edge-network variant(s)"
    )
    args = parser.parse_args()
    if args.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(args.device)
    if args.featurize > 0:
        for result in bench_featurize(args.featurize):
            print(json.dumps(result), flush=True)
    variants = {"both": (True, False), "once": (True,), "literal": (False,)}[args.edge_network]
    for graph in args.graphs.split(","):
        for once in variants:
            result = bench_training(graph, device, args.subset, args.steps, args.full_epoch, edge_network_once=once)
            print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()

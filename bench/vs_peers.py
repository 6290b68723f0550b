"""mtlbench against LibMTL 1.1.5 and TorchJD: time per step, peak memory, and agreement of directions.

For every method a peer also implements, on the same model, batches and data (Multi-MNIST CL_RR,
a QM9 subset with the paper's MPNN, and the synthetic regression problem with T=11 tasks), each implementation
takes full training steps (forward, its backward, Adam step): mtlbench through its trainer's
``Session.step``; LibMTL through its weighting's ``backward`` (mixed into a minimal stand-in of its
architecture class, with its own representation-gradient design where ``rep_grad``); TorchJD
through ``mtl_backward`` + ``jac_to_grad`` with its aggregator. Each configuration runs in a fresh
worker process (peak RSS never falls), configurations alternate within each round in a new random
order each round (so that no configuration always follows the same neighbour), and the table
gives medians over rounds of the per-process median step time (wall clock and thread CPU time, one
thread) and the peak RSS growth during the steps.

Every worker, mtlbench's and the peers', runs with the allocator settings that mtlbench's trainer
applies (``src/mtlbench/training/allocator.py``: glibc's mmap threshold fixed at 32 MiB): with glibc's
moving threshold a fresh process's steps are 0-35 % slower by chance, whatever the implementation.

``--paired`` adds, per row, mtlbench and the peer stepped alternately in one process (the fairest
time comparison on a shared machine, where a process's CPU time also depends on its neighbours).

Agreement: on identical per-task gradients (one batch; mtlbench's engine gives them), the cosine
between each peer's update direction and mtlbench's, with mtlbench's hyperparameters set to the
peer's (e.g. MGDA without normalisation); random methods are compared only where their randomness
cannot matter (two tasks).

The peers live in their own environment (``make bench-peers`` builds ``.venv-peers``); mtlbench is
imported from ``src/`` and LibMTL needs the import shim in ``bench/peers/shims`` (torchvision)::

    .venv-peers/bin/python bench/vs_peers.py --steps 8 --rounds 3 --output bench-peers.md
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SHIMS = ROOT / "bench" / "peers" / "shims"

QM9_BATCH = int(os.environ.get("MTLBENCH_BENCH_QM9_BATCH", "16"))
SETTINGS: dict[str, dict[str, Any]] = {
    "multi_mnist": dict(problem="multi_mnist", tasks="CL_RR", options={"train_size": 2048}, batch_size=256),
    "synthetic": dict(
        problem="synthetic",
        tasks="_".join(f"T{i}" for i in range(11)),
        options={"train_size": 2048, "hidden": 256},
        batch_size=256,
    ),
    # the paper's MPNN on complete graphs, eleven tasks; a small batch bounds time and memory
    "qm9": dict(problem="qm9", tasks="all", options={"subset": 2000}, batch_size=QM9_BATCH),
}

#: mtlbench method -> {implementation: (peer class, peer arguments, mtlbench arguments for the cosine)}
LIBMTL_DEFAULTS = {"T": 2.0, "dist": "Normal", "mgda_gn": "none", "beta": 0.5, "alpha": 1.5, "leak": 0.0}
ROWS: dict[str, dict[str, tuple[str, dict[str, Any], dict[str, Any]]]] = {
    "unit_scal": {"libmtl": ("EW", {}, {}), "torchjd": ("Sum", {}, {})},
    "mgda": {
        "libmtl": ("MGDA", {}, {"normalize": "none"}),
        "torchjd": ("MGDA", {}, {"normalize": "none"}),
    },
    "mgda_ub": {"libmtl": ("MGDA:rep", {}, {"normalize": "none"})},
    "pcgrad": {"libmtl": ("PCGrad", {}, {}), "torchjd": ("PCGrad", {}, {})},
    "cagrad": {"libmtl": ("CAGrad", {"calpha": 0.5, "rescale": 1}, {"c": 0.5}), "torchjd": ("CAGrad", {"c": 0.5}, {})},
    "imtl_g": {"torchjd": ("IMTLG", {}, {"space": "parameters"})},
    "imtl": {"libmtl": ("IMTL:rep", {}, {})},
    "nash_mtl": {"torchjd": ("NashMTL", {"n_tasks": None}, {})},
    "graddrop": {"libmtl": ("GradDrop:rep", {}, {}), "torchjd": ("GradDrop", {}, {})},
    "uw": {"libmtl": ("UW", {}, {})},
    "dwa": {"libmtl": ("DWA", {}, {})},
    "rlw_normal": {"libmtl": ("RLW", {}, {}), "torchjd": ("Random", {}, {})},
    "gradnorm": {"libmtl": ("GradNorm", {}, {})},
    "gradvac": {"libmtl": ("GradVac", {}, {}), "torchjd": ("GradVac", {}, {})},
    "aligned_mtl": {"torchjd": ("AlignedMTL", {}, {})},
    "upgrad": {"torchjd": ("UPGrad", {}, {})},
    "fairgrad": {"torchjd": ("FairGrad", {"alpha": 1.0}, {})},
}
#: directions that depend on random draws the implementations make differently (compared at T=2 only)
RANDOM = {"pcgrad", "gradvac"}
#: no cosine: loss-weighting methods (no aggregation of gradients) and random masks or weights
NO_COSINE = {"unit_scal", "uw", "dwa", "rlw_normal", "gradnorm", "graddrop"}


# --- worker side -------------------------------------------------------------------------------
def _setup(setting: dict[str, Any], steps: int) -> tuple[Any, list[Any]]:
    import torch

    from mtlbench.problems import create_problem

    torch.set_num_threads(1)
    problem = create_problem(setting["problem"], setting["tasks"], **setting["options"])
    problem.prepare()
    batches = []
    for batch in problem.batches("train", setting["batch_size"], shuffle=True, generator=torch.Generator()):
        batches.append(batch)
        if len(batches) == steps:
            break
    return problem, batches


def _losses(problem: Any, outputs: dict[str, Any], batch: Any) -> Any:
    import torch

    return torch.stack([task.loss(outputs[task.name], batch.targets[task.name]) for task in problem.tasks])


def _libmtl(name: str, spec: str, args: dict[str, Any], model: Any, problem: Any) -> tuple[Any, Any]:
    """A LibMTL weighting mixed into a stand-in of LibMTL's architecture class around ``model``."""
    import numpy as np
    import torch

    sys.path.insert(0, str(SHIMS))
    import LibMTL.weighting as weightings

    peer, _, mode = spec.partition(":")
    rep_grad = mode == "rep"
    names = [task.name for task in problem.tasks]
    base = getattr(weightings, peer)

    class Peer(base):  # type: ignore[misc, valid-type]
        def __init__(self) -> None:
            super().__init__()
            self.task_num, self.task_name, self.device, self.rep_grad = len(names), names, torch.device("cpu"), rep_grad
            self.epoch, self.train_loss_buffer = 2, np.ones((len(names), 3))  # DWA/GradNorm past their warm-up

        def get_share_params(self) -> Any:
            return model.encoder.parameters()

        def zero_grad_share_params(self) -> None:
            model.encoder.zero_grad(set_to_none=False)

    weighting = Peer()
    weighting.init_param()
    kwargs = {**LIBMTL_DEFAULTS, **args}

    def forward(batch: Any) -> Any:
        z = model.encode(batch.inputs)
        if rep_grad:  # LibMTL's HPS architecture: heads on detached copies, then rep.backward(...)
            weighting.rep = z
            weighting.rep_tasks = {n: z.detach().clone().requires_grad_(True) for n in names}
            outputs = {n: model.heads[n](weighting.rep_tasks[n]) for n in names}
        else:
            outputs = model.decode(z)
        return _losses(problem, outputs, batch)

    def backward(losses: Any) -> None:
        weighting.backward(losses, **kwargs)

    return weighting, (forward, backward)


def _torchjd_aggregator(peer: str, args: dict[str, Any], n_tasks: int) -> Any:
    from torchjd import aggregation

    args = {k: (n_tasks if v is None else v) for k, v in args.items()}
    return getattr(aggregation, peer)(**args)


def _adam(parameters: list[Any]) -> Any:
    """The peers step with the same (fused) Adam kernel as mtlbench's trainer: only the methods differ."""
    import torch

    from mtlbench.optim import fused_supported

    return torch.optim.Adam(parameters, lr=1e-3, fused=fused_supported(parameters))


def _make_step(setting: dict[str, Any], problem: Any, method: str, implementation: str) -> Any:
    """The training step of one implementation, on a model built by mtlbench's ``Session`` (same init)."""
    import torch

    from mtlbench.training import RunConfig
    from mtlbench.training.trainer import Session

    config = RunConfig(
        problem=setting["problem"],
        tasks=setting["tasks"],
        method=method if implementation == "mtlbench" else "unit_scal",
        problem_options=setting["options"],
        batch_size=setting["batch_size"],
        lr=1e-3,
        dropout=0.0,
        epochs=1,
        device="cpu",
    ).resolved()
    session = Session(config, problem, torch.device("cpu"), torch.Generator().manual_seed(0))
    if implementation == "mtlbench":
        return session.step
    model = session.model
    peer, peer_args, _ = ROWS[method][implementation]
    if implementation == "libmtl":
        weighting, (forward, backward) = _libmtl(method, peer, peer_args, model, problem)
        optimizer = _adam([*model.parameters(), *weighting.parameters()])

        def libmtl_step(batch: Any) -> None:
            optimizer.zero_grad(set_to_none=False)
            backward(forward(batch))
            optimizer.step()

        return libmtl_step
    from torchjd.autojac import jac_to_grad, mtl_backward

    aggregator = _torchjd_aggregator(peer, peer_args, len(problem.tasks))
    shared, heads = model.shared_parameters(), model.task_parameters()
    optimizer = _adam(list(model.parameters()))

    def torchjd_step(batch: Any) -> None:
        optimizer.zero_grad(set_to_none=True)
        z = model.encode(batch.inputs)
        outputs = model.decode(z)
        losses = [task.loss(outputs[task.name], batch.targets[task.name]) for task in problem.tasks]
        mtl_backward(losses, features=z, tasks_params=heads, shared_params=shared)
        jac_to_grad(shared, aggregator)
        optimizer.step()

    return torchjd_step


def worker_time(setting_name: str, method: str, implementation: str, steps: int) -> dict[str, float]:
    setting = SETTINGS[setting_name]
    problem, batches = _setup(setting, steps + 2)
    step = _make_step(setting, problem, method, implementation)
    for batch in batches[:2]:
        step(batch)
    baseline = _rss_mb()
    walls, cpus = [], []
    for batch in batches[2:]:
        wall, cpu = time.perf_counter(), time.thread_time()
        step(batch)
        cpus.append(time.thread_time() - cpu)
        walls.append(time.perf_counter() - wall)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "wall_ms": 1000 * statistics.median(walls),
        "cpu_ms": 1000 * statistics.median(cpus),
        "peak_mb": peak,
        "growth_mb": max(peak - baseline, 0.0),
    }


def worker_paired(setting_name: str, method: str, implementation: str, steps: int, rounds: int) -> dict[str, float]:
    """mtlbench and one peer stepped alternately in one process: the ratio of their median thread CPU times."""
    setting = SETTINGS[setting_name]
    problem, batches = _setup(setting, steps)
    steps_of = {name: _make_step(setting, problem, method, name) for name in ("mtlbench", implementation)}
    times: dict[str, list[float]] = {name: [] for name in steps_of}
    for round_index in range(rounds + 1):
        for batch in batches:
            for name, step in steps_of.items():
                start = time.thread_time()
                step(batch)
                if round_index:  # the first round warms up
                    times[name].append(time.thread_time() - start)
    ours, theirs = statistics.median(times["mtlbench"]), statistics.median(times[implementation])
    return {"ours_ms": 1000 * ours, "peer_ms": 1000 * theirs, "ratio": ours / theirs}


def _rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def worker_cosine(setting_name: str) -> dict[str, dict[str, float | str]]:
    """Cosines between each peer's direction and mtlbench's on identical per-task gradients."""
    import torch

    from mtlbench import methods
    from mtlbench.methods.gradients import per_task_gradients

    setting = SETTINGS[setting_name]
    problem, batches = _setup(setting, 1)
    torch.manual_seed(0)
    model = problem.build_model(dropout=0.0)
    batch = batches[0]
    z = model.encode(batch.inputs)
    losses = _losses(problem, model.decode(z), batch)
    shared = model.shared_parameters()
    G, _ = per_task_gradients(losses, shared, retain_graph=True)
    V, _ = per_task_gradients(losses, [z], retain_graph=True)
    n_tasks = len(problem.tasks)
    K = (G.double() @ G.double().T).numpy()
    out: dict[str, dict[str, float | str]] = {}
    for method, peers in ROWS.items():
        for implementation, (peer, peer_args, ours_args) in peers.items():
            key = f"{method}|{implementation}"
            if method in NO_COSINE or (method in RANDOM and n_tasks > 2):
                continue
            rep = peer.endswith(":rep") or methods.METHODS[method].default_space == "representation"
            rep = rep and ours_args.get("space") != "parameters"
            matrix = V if rep else G
            # LibMTL builds float32 tensors inside its methods: give it float32; TorchJD float64
            matrix = matrix.float() if implementation == "libmtl" else matrix.double()
            generator = torch.Generator().manual_seed(0)
            ours_method = methods.create(method, n_tasks=n_tasks, generator=generator, **ours_args)
            ours = ours_method.combine(
                matrix, losses=losses.detach().to(matrix), features=z.detach().to(matrix), state=ours_method.state
            ).direction
            try:
                theirs = _peer_direction(implementation, peer, peer_args, matrix, losses, problem, z)
            except Exception as error:  # a peer that cannot run this configuration
                out[key] = {"cosine": f"error: {type(error).__name__}: {str(error).splitlines()[0][:80]}"}
                continue
            cosine = torch.nn.functional.cosine_similarity(ours.flatten(), theirs.flatten().to(ours), dim=0)
            out[key] = {"cosine": float(cosine), "note": _exactness_note(method, K, matrix, ours, theirs)}
    return out


def _exactness_note(method: str, K: Any, matrix: Any, ours: Any, theirs: Any) -> str:
    """Where directions differ, which one solves the method's problem: MGDA's min-norm, Nash's K a = 1/a."""
    import torch

    from mtlbench.methods.solvers_qp import power_balance

    theirs = theirs.flatten().to(ours)
    if method == "mgda":
        return f"norm ours/peer {float(ours.norm() / theirs.norm()):.3f} (min-norm point: smaller is better)"
    if method == "nash_mtl":
        alpha = power_balance(K)
        if alpha is None:
            return ""
        exact = torch.from_numpy(alpha).to(matrix) @ matrix
        cos = torch.nn.functional.cosine_similarity
        return (
            f"cosine to the exact Nash point: ours {float(cos(ours.flatten(), exact, dim=0)):.6f}, "
            f"peer {float(cos(theirs, exact, dim=0)):.6f}"
        )
    return ""


def _peer_direction(
    implementation: str, peer: str, args: dict[str, Any], matrix: Any, losses: Any, problem: Any, z: Any
) -> Any:
    import torch

    if implementation == "torchjd":
        return _torchjd_aggregator(peer, args, matrix.shape[0])(matrix)
    captured: list[Any] = []
    weighting, _ = _libmtl("", peer, args, None, problem)
    rep = weighting.rep_grad
    n_tasks = matrix.shape[0]
    per_grads = matrix.view(n_tasks, *z.shape) if rep else None

    def compute_grad(losses: Any, mode: str, rep_grad: bool = False) -> Any:
        return per_grads if rep_grad else matrix

    weighting._compute_grad = compute_grad
    weighting._compute_grad_dim = lambda: None
    weighting.rep = z.detach()
    weighting._reset_grad = lambda new_grads: captured.append(new_grads)
    weighting._backward_new_grads = lambda w, per_grads=None, grads=None: captured.append(
        torch.einsum("i, i... -> ...", w.to(matrix), per_grads if per_grads is not None else grads)
    )
    weighting.backward(losses.detach().double(), **{**LIBMTL_DEFAULTS, **args})
    return captured[-1]


# --- driver side -------------------------------------------------------------------------------
def _run(python: str, *arguments: str) -> Any:
    from mtlbench.training.allocator import MMAP_THRESHOLD, TRIM_THRESHOLD

    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
        # every implementation runs with the allocator settings of mtlbench's trainer (training/allocator.py)
        "MALLOC_MMAP_THRESHOLD_": str(MMAP_THRESHOLD),
        "MALLOC_TRIM_THRESHOLD_": str(TRIM_THRESHOLD),
    }
    done = subprocess.run([python, __file__, *arguments], capture_output=True, text=True, env=env, cwd=ROOT)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["failed"])[-1]
        return {"error": last[:120]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def _paired_table(args: Any, setting_name: str, chosen: list[str], errors: dict[Any, str], emit: Any) -> None:
    emit(f"\nPaired, one process per row (alternate steps, {args.rounds} rounds x {args.steps} steps):\n")
    emit("| method | peer | mtlbench ms | peer ms | mtlbench / peer |")
    emit("|---|---|---:|---:|---:|")
    for method in chosen:
        for impl in ROWS[method]:
            if (method, impl) in errors:
                continue
            paired = _run(
                args.python, "--worker", "paired", setting_name, method, impl, str(args.steps), str(args.rounds)
            )
            if "error" in paired:
                emit(f"| {method} | {impl} | error: {paired['error']} | | |")
            else:
                emit(
                    f"| {method} | {impl} | {paired['ours_ms']:.1f} | {paired['peer_ms']:.1f} | {paired['ratio']:.2f} |"
                )


def _title(setting: dict[str, Any]) -> str:
    if setting["problem"] == "qm9":
        return f"qm9 T=11 (first {setting['options']['subset']} molecules, batch {setting['batch_size']})"
    n_tasks = len(setting["tasks"].split("_"))
    return f"{setting['problem']} {'T=' + str(n_tasks) if n_tasks > 3 else setting['tasks']}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settings", default="multi_mnist,synthetic")
    parser.add_argument("--methods", default="all")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--python", default=sys.executable, help="interpreter of the peers' environment")
    parser.add_argument("--output", default=None, help="also write the Markdown tables to this file")
    parser.add_argument(
        "--paired", action="store_true", help="also time mtlbench and each peer alternately within one process"
    )
    parser.add_argument("--paired-only", action="store_true", help="only the paired timings (no per-process table)")
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        if args.worker[0] == "time":
            print(json.dumps(worker_time(args.worker[1], args.worker[2], args.worker[3], int(args.worker[4]))))
        elif args.worker[0] == "paired":
            print(json.dumps(worker_paired(*args.worker[1:4], int(args.worker[4]), int(args.worker[5]))))
        else:
            print(json.dumps(worker_cosine(args.worker[1])))
        return
    chosen = list(ROWS) if args.methods == "all" else args.methods.split(",")
    lines: list[str] = []

    def emit(text: str = "") -> None:
        print(text, flush=True)
        lines.append(text)

    emit(f"Peers' interpreter: {args.python}; one thread; {args.rounds} rounds x {args.steps} steps per process.")
    for setting_name in args.settings.split(","):
        setting = SETTINGS[setting_name]
        configs = [(m, impl) for m in chosen for impl in ("mtlbench", *ROWS[m])]
        results: dict[tuple[str, str], list[dict[str, float]]] = defaultdict(list)
        errors: dict[tuple[str, str], str] = {}
        order = random.Random(0)  # a fresh order every round: no configuration always runs first
        for _ in range(0 if args.paired_only else args.rounds):
            for method, implementation in order.sample(configs, len(configs)):
                if (method, implementation) in errors:
                    continue
                result = _run(args.python, "--worker", "time", setting_name, method, implementation, str(args.steps))
                if "error" in result:
                    errors[(method, implementation)] = result["error"]
                else:
                    results[(method, implementation)].append(result)
        emit(f"\n## {_title(setting)}\n")
        if args.paired_only:
            _paired_table(args, setting_name, chosen, errors, emit)
            continue
        cosines = _run(args.python, "--worker", "cosine", setting_name)
        emit(
            "| method | implementation | ms/step (wall) | ms/step (CPU) | vs fastest | peak RSS MB | growth MB "
            "| cosine | note |"
        )
        emit("|---|---|---:|---:|---:|---:|---:|---:|---|")
        for method in chosen:
            rows = [impl for impl in ("mtlbench", *ROWS[method])]
            medians = {
                impl: {k: statistics.median(r[k] for r in results[(method, impl)]) for k in results[(method, impl)][0]}
                for impl in rows
                if results.get((method, impl))
            }
            fastest = min((m["cpu_ms"] for m in medians.values()), default=float("nan"))
            for impl in rows:
                key = f"{method}|{impl}"
                entry = cosines.get(key, {}) if isinstance(cosines, dict) else {}
                cosine = entry.get("cosine", "")
                cosine_text = f"{cosine:.6f}" if isinstance(cosine, float) else str(cosine)
                cosine_text += f" | {entry.get('note', '')}"
                if impl in medians:
                    m = medians[impl]
                    emit(
                        f"| {method} | {impl} | {m['wall_ms']:.1f} | {m['cpu_ms']:.1f} | "
                        f"{m['cpu_ms'] / fastest:.2f} | {m['peak_mb']:.0f} | {m['growth_mb']:.0f} | {cosine_text} |"
                    )
                else:
                    emit(f"| {method} | {impl} | error: {errors.get((method, impl), '?')} | | | | | {cosine_text} |")
        if args.paired:
            _paired_table(args, setting_name, chosen, errors, emit)
    if args.output:
        Path(args.output).write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()

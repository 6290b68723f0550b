"""Samples/s of a Unit. Scal. training epoch: mtlbench's trainer next to a bare PyTorch loop.

Both train the same model on the same batches with the same optimizer, alternating in one process
(``--repeats`` rounds, median reported). The trainer's time is its training phase (first step to last
step of the epoch, from its progress events), so validation is excluded on both sides.
The target: the trainer adds no more than 10%.

    python bench/epoch_time.py --problem multi_mnist --tasks CL_RR --train-size 10000 --repeats 3
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from mtlbench.problems import create_problem
from mtlbench.training import RunConfig, Trainer
from mtlbench.training.config import resolve_device


def bare_epoch(problem, config: RunConfig, device: torch.device) -> float:
    """One epoch of the plainest loop: forward, sum of losses, backward, Adam step."""
    torch.manual_seed(config.seed)
    model = problem.build_model(dropout=config.dropout).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    generator = torch.Generator().manual_seed(config.seed)
    examples = 0
    start = time.perf_counter()
    for batch in problem.batches("train", config.batch_size, shuffle=True, generator=generator):
        batch = batch.to(device, non_blocking=True)
        optimizer.zero_grad(set_to_none=True)
        outputs = model(batch.inputs)
        loss = sum(task.loss(outputs[task.name], batch.targets[task.name]) for task in problem.tasks)
        loss.backward()
        optimizer.step()
        examples += batch.size
    if device.type == "cuda":
        torch.cuda.synchronize()
    return examples / (time.perf_counter() - start)


def trainer_epoch(config: RunConfig, examples: int) -> float:
    marks: dict[str, float] = {}

    def progress(event):
        if event["event"] == "epoch_start":
            marks["start"] = time.perf_counter()
        elif event["event"] == "step":
            marks["last"] = time.perf_counter()

    Trainer(config, require_reference=False, progress=progress).run()
    return examples / (marks["last"] - marks["start"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problem", default="multi_mnist")
    parser.add_argument("--tasks", default="CL_RR")
    parser.add_argument("--train-size", type=int, default=10000)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    options = {"train_size": args.train_size}
    problem = create_problem(args.problem, args.tasks, **options)
    problem.prepare()
    config = RunConfig(
        problem=args.problem,
        tasks=args.tasks,
        problem_options=options,
        epochs=1,
        batch_size=args.batch_size,
        lr=1e-3,
        dropout=0.0,
        weight_decay=0.0,
        scheduler="none",
        device=str(device),
        threads=torch.get_num_threads(),
    )
    n = problem.num_examples("train")
    bare_epoch(problem, config, device)  # warm-up
    bare, trainer = [], []
    for _ in range(args.repeats):
        bare.append(bare_epoch(problem, config, device))
        trainer.append(trainer_epoch(config, n))
    b, t = statistics.median(bare), statistics.median(trainer)
    threads = torch.get_num_threads()
    print(f"{args.problem} {args.tasks}: {n} examples, batch {args.batch_size}, {device}, {threads} threads")
    print(f"bare PyTorch loop : {b:10.0f} samples/s (median of {args.repeats})")
    print(f"mtlbench trainer  : {t:10.0f} samples/s (median of {args.repeats})")
    print(f"trainer overhead  : {100 * (b / t - 1):+.1f}%  (target: at most +10%)")


if __name__ == "__main__":
    main()

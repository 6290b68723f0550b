"""Images/s of a Unit. Scal. training step on the dense problem (dilated ResNet + one DeepLab head per task).

One step = forward, sum of the task losses, backward, Adam step, on generated street scenes at the
given resolution (augmentation and batch assembly timed separately). Defaults: CPU, ResNet-18 at
256x128, tasks S_D_I, batch 8; ResNet-50 is added on CUDA when available.

    python bench/dense.py --resolution 256x128 --batch-size 8 --steps 3
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from mtlbench.problems import create_problem


def step_rate(problem, device: torch.device, batch_size: int, steps: int, warmup: int) -> tuple[float, float]:
    """(images/s of training steps, images/s of batch assembly with augmentation)."""
    torch.manual_seed(0)
    model = problem.build_model().to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-4)
    generator = torch.Generator().manual_seed(0)
    batches = []
    start = time.perf_counter()
    iterator = problem.batches("train", batch_size, shuffle=True, generator=generator)
    for _ in range(warmup + steps):
        batches.append(next(iterator).to(device))
    assembly = len(batches) * batch_size / (time.perf_counter() - start)
    times = []
    for index, batch in enumerate(batches):
        if device.type == "cuda":
            torch.cuda.synchronize()
        tic = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        outputs = model(batch.inputs)
        loss = sum(task.loss(outputs[task.name], batch.targets[task.name]) for task in problem.tasks)
        loss.backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if index >= warmup:
            times.append(time.perf_counter() - tic)
    return batch_size / statistics.median(times), assembly


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolution", default="256x128")
    parser.add_argument("--tasks", default="S_D_I")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--encoders", default=None, help="comma-separated; default resnet18 (+ resnet50 on CUDA)")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    if args.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(args.device)
    encoders = (
        args.encoders.split(",") if args.encoders else ["resnet18"] + (["resnet50"] if device.type == "cuda" else [])
    )
    n_images = max(20, int((args.warmup + args.steps) * args.batch_size / 0.7) + 4)
    print(f"device {device}, threads {torch.get_num_threads()}, {args.resolution}, tasks {args.tasks}")
    for encoder in encoders:
        problem = create_problem(
            "synthetic_scenes",
            args.tasks,
            resolution=args.resolution,
            encoder=encoder,
            width=args.width,
            n_images=n_images,
        )
        generate = time.perf_counter()
        problem.prepare()
        generated = time.perf_counter() - generate
        rate, assembly = step_rate(problem, device, args.batch_size, args.steps, args.warmup)
        print(
            f"{encoder} width {args.width} batch {args.batch_size}: {rate:.2f} images/s per training step "
            f"(batch assembly + augmentation {assembly:.0f} images/s; {n_images} scenes ready in {generated:.1f} s)"
        )


if __name__ == "__main__":
    main()

"""Time of the T x T solvers of CAGrad, Nash-MTL, Aligned-MTL, UPGrad, GradVac and FairGrad.

Usage: ``python bench/gradient_group2_solvers.py [--dim 100000] [--repeat 50]``. Prints, per method and
number of tasks T, the mean time of ``combine`` on a (T, D) gradient matrix and of the part that
does not touch D (the solver on the Gram matrix), on one CPU thread.
"""

from __future__ import annotations

import argparse
import time

import torch

from mtlbench.methods import create
from mtlbench.methods.solvers import gram

METHODS = ["cagrad", "nash_mtl", "aligned_mtl", "upgrad", "gradvac", "fairgrad"]


def _gradients(n: int, dim: int, seed: int) -> torch.Tensor:
    rng = torch.Generator().manual_seed(seed)
    g = torch.randn(n, dim, generator=rng) * torch.linspace(0.5, 2.0, n)[:, None]
    return g + 0.5 * torch.randn(1, dim, generator=rng)  # partly aligned, some conflicts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dim", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=50)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"D={args.dim}, one thread; milliseconds per call")
    print(f"{'method':<12} {'T':>3} {'combine':>9} {'gram':>8} {'solver':>8}")
    for n in (2, 3, 11):
        steps = [_gradients(n, args.dim, seed) for seed in range(args.repeat)]
        start = time.perf_counter()
        for g in steps:
            gram(g)
        gram_ms = (time.perf_counter() - start) / args.repeat * 1e3
        for name in METHODS:
            method = create(name, n, generator=torch.Generator().manual_seed(0))
            state = method.initial_state()
            method.combine(steps[0], state=state, generator=method.generator)  # warm-up (imports)
            start = time.perf_counter()
            for g in steps:
                state = method.combine(g, state=state, generator=method.generator).state
            combine_ms = (time.perf_counter() - start) / args.repeat * 1e3
            # a (T, T) matrix with the same Gram matrix: the solver's cost without the D-sized work
            small = [torch.linalg.cholesky(gram(g)).to(g.dtype) for g in steps]
            state = method.initial_state()
            start = time.perf_counter()
            for g in small:
                state = method.combine(g, state=state, generator=method.generator).state
            solver_ms = (time.perf_counter() - start) / args.repeat * 1e3
            print(f"{name:<12} {n:>3} {combine_ms:>9.3f} {gram_ms:>8.3f} {solver_ms:>8.3f}")


if __name__ == "__main__":
    main()

"""Per-task gradients and writing a combined direction back into ``.grad``.

This is the plain, exact engine: one ``torch.autograd.grad`` call per task. Each call also returns
that task's head gradient (a task's loss reaches only its own head), so heads cost nothing extra.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import Tensor


def flatten(tensors: Sequence[Tensor | None], like: Sequence[Tensor]) -> Tensor:
    """Concatenate gradients into one vector, with zeros where a gradient is ``None``."""
    return torch.cat(
        [(g if g is not None else torch.zeros_like(p)).reshape(-1) for g, p in zip(tensors, like, strict=True)]
    )


def unflatten(vector: Tensor, like: Sequence[Tensor]) -> list[Tensor]:
    """Split a flat vector into tensors shaped like ``like``."""
    pieces, offset = [], 0
    for p in like:
        n = p.numel()
        pieces.append(vector[offset : offset + n].view_as(p))
        offset += n
    return pieces


def accumulate_grad(parameters: Iterable[Tensor], gradients: Iterable[Tensor | None]) -> None:
    """Add gradients into ``.grad`` (as ``Tensor.backward`` would)."""
    for p, g in zip(parameters, gradients, strict=True):
        if g is None:
            continue
        if p.grad is None:
            p.grad = g.detach().clone()
        else:
            p.grad.add_(g.detach())


def per_task_gradients(
    losses: Tensor,
    inputs: Sequence[Tensor],
    task_parameters: Sequence[Sequence[Tensor]] | None = None,
    *,
    retain_graph: bool = False,
) -> tuple[Tensor, list[list[Tensor | None]] | None]:
    """The (T, D) matrix of per-task gradients of ``losses`` w.r.t. ``inputs`` (flattened).

    With ``task_parameters`` (one list per task), also returns each task's gradient w.r.t. its own
    head parameters, computed in the same backward pass. ``retain_graph`` keeps the graph after the
    last task (needed to backpropagate a representation-level direction into the encoder).
    """
    n_tasks = losses.shape[0]
    inputs = list(inputs)
    rows: list[Tensor] = []
    heads: list[list[Tensor | None]] | None = [] if task_parameters is not None else None
    for i in range(n_tasks):
        own = list(task_parameters[i]) if task_parameters is not None else []
        keep = retain_graph or i < n_tasks - 1
        grads = torch.autograd.grad(losses[i], inputs + own, retain_graph=keep, allow_unused=True)
        rows.append(flatten(grads[: len(inputs)], inputs))
        if heads is not None:
            heads.append(list(grads[len(inputs) :]))
    return torch.stack(rows), heads

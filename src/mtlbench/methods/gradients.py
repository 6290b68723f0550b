"""The per-task gradient engine: per-task gradients, their Gramian, and writing a direction into ``.grad``.

Every path is exact (the same numbers as one ``torch.autograd.grad`` call per task, up to float
rounding); they differ in cost and memory (``docs/performance.md`` has the measurements):

- **Per-task roots.** The trainer stacks the task losses, ``losses = torch.stack([L_1, ..., L_T])``.
  Differentiating ``losses[i]`` would go back through the stack and run the backward of *every*
  head with a zero gradient (T^2 head backward passes per step). When ``losses`` is such a stack,
  the engine starts task i's backward at the graph edge of L_i itself
  (:class:`torch.autograd.graph.GradientEdge`), so it runs through head i and the trunk only.
- ``loop`` (default): one ``torch.autograd.grad`` per task w.r.t. the inputs and that task's own
  head, i.e. one forward + T backward passes through the trunk, the floor for parameter-level
  methods; the head gradients come for free. Rows are written straight into one (T, D) matrix.
- ``two_stage`` / ``batched``: first the T gradients w.r.t. the shared representation z (heads only,
  as representation-level methods need), then the T vector-Jacobian products through the encoder,
  one at a time (``two_stage``) or ``chunk_size`` at a time as one vmapped backward
  (``is_grads_batched``; ``batched``). Exact only if no loss reaches the inputs except through z,
  which is checked on the graph (otherwise the loop is used).
- :func:`gramian`: the T x T Gramian G G^T, accumulated over blocks of parameters of at most
  ``max_bytes`` of gradients, so that the (T, D) matrix is never materialised; each block costs
  one more pass of T backward passes, so it trades time for memory and is used only when asked.

Representation-level methods call :func:`per_task_gradients` with ``inputs=[z]``: the backward
stops at z (never enters the encoder), and the combined direction is then backpropagated through
the encoder once.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.autograd.graph import GradientEdge

from mtlbench.errors import UserInputError

PATHS = ("auto", "loop", "two_stage", "batched", "gramian")


@dataclass
class EngineOptions:
    """How a gradient method obtains its per-task gradients (never changes the mathematics).

    - ``path``: ``auto`` (``loop``, or ``gramian`` for a Gramian-only method when the (T, D) matrix
      would exceed ``max_gradient_bytes``), ``loop``, ``two_stage``, ``batched``, ``gramian``.
    - ``chunk_size``: tasks per vmapped backward of the ``batched`` path (None: all T at once).
    - ``max_gradient_bytes``: memory budget of per-task gradients (the ``gramian`` path's blocks,
      and the threshold of ``auto``); None: no budget.
    """

    path: str = "auto"
    chunk_size: int | None = None
    max_gradient_bytes: int | None = None

    def __post_init__(self) -> None:
        if self.path not in PATHS:
            raise UserInputError(f"engine path {self.path!r} is invalid; choose one of: {', '.join(PATHS)}")
        if self.chunk_size is not None and self.chunk_size < 1:
            raise UserInputError(f"engine chunk_size={self.chunk_size!r} is invalid; it must be at least 1")
        if self.max_gradient_bytes is not None and self.max_gradient_bytes < 1:
            raise UserInputError(f"engine max_gradient_bytes={self.max_gradient_bytes!r} must be positive")


# --- small helpers ---------------------------------------------------------------------------
def flatten(tensors: Sequence[Tensor | None], like: Sequence[Tensor]) -> Tensor:
    """Concatenate gradients into one vector, with zeros where a gradient is ``None``."""
    return torch.cat(
        [(g if g is not None else torch.zeros_like(p)).reshape(-1) for g, p in zip(tensors, like, strict=True)]
    )


def unflatten(vector: Tensor, like: Sequence[Tensor]) -> list[Tensor]:
    """Split a flat vector into tensors shaped like ``like`` (views of ``vector``)."""
    pieces, offset = [], 0
    for p in like:
        n = p.numel()
        pieces.append(vector[offset : offset + n].view_as(p))
        offset += n
    return pieces


def accumulate_grad(parameters: Iterable[Tensor], gradients: Iterable[Tensor | None], *, owned: bool = False) -> None:
    """Add gradients into ``.grad`` (as ``Tensor.backward`` would).

    ``owned``: the gradients are fresh tensors nobody else holds, so an empty ``.grad`` takes them
    without a copy.
    """
    for p, g in zip(parameters, gradients, strict=True):
        if g is None:
            continue
        g = g.detach()
        if g.dtype != p.dtype:
            g, owned_here = g.to(p.dtype), True
        else:
            owned_here = owned
        if p.grad is None:
            p.grad = g if owned_here else g.clone()
        else:
            p.grad.add_(g)


def accumulate_direction(parameters: Sequence[Tensor], direction: Tensor) -> None:
    """Add a flat direction (D,) into the ``.grad`` of ``parameters``; empty ``.grad`` take views of it."""
    accumulate_grad(parameters, unflatten(direction.detach().contiguous(), parameters), owned=True)


def _dtype(inputs: Sequence[Tensor]) -> torch.dtype:
    dtype = inputs[0].dtype
    for x in inputs[1:]:
        dtype = torch.promote_types(dtype, x.dtype)
    return dtype


# --- per-task roots ----------------------------------------------------------------------------
def task_roots(losses: Tensor) -> list[GradientEdge | None] | None:
    """The graph edge of each task's own loss when ``losses`` is ``torch.stack`` of T scalars, else None.

    Starting a backward at L_i's edge skips the stack (whose backward would hand every other head a
    zero gradient). An entry is None for a loss that does not require grad.
    """
    fn = losses.grad_fn
    if fn is None or losses.ndim != 1 or type(fn).__name__ != "StackBackward0":
        return None
    edges = fn.next_functions
    if len(edges) != losses.shape[0]:
        return None
    return [None if node is None else GradientEdge(node, nr) for node, nr in edges]


class _Roots:
    """Differentiate task i alone: from its edge (fast) or through ``losses[i]`` (any other graph)."""

    def __init__(self, losses: Tensor) -> None:
        self.losses = losses
        self.edges = task_roots(losses)
        self.one = torch.ones((), dtype=losses.dtype, device=losses.device)

    def grad(self, i: int, inputs: Sequence[Tensor], retain_graph: bool) -> tuple[Tensor | None, ...]:
        if self.edges is not None:
            edge = self.edges[i]
            if edge is None:
                return (None,) * len(inputs)
            return torch.autograd.grad(
                [edge], list(inputs), grad_outputs=[self.one], retain_graph=retain_graph, allow_unused=True
            )
        if not self.losses.requires_grad:
            return (None,) * len(inputs)
        return torch.autograd.grad(self.losses[i], list(inputs), retain_graph=retain_graph, allow_unused=True)


def _write_row(out: Tensor, row: int | slice, grads: Sequence[Tensor | None], like: Sequence[Tensor]) -> None:
    """Copy gradients (each shaped like its input, optionally with a leading task dimension) into ``out[row]``."""
    offset = 0
    target = out[row]
    for g, p in zip(grads, like, strict=True):
        n = p.numel()
        piece = target[..., offset : offset + n]
        if g is None:
            piece.zero_()
        else:
            piece.copy_(g.reshape(piece.shape))
        offset += n


# --- exactness of the two-stage paths ----------------------------------------------------------
def reaches_only_through(losses: Tensor, features: Tensor, inputs: Sequence[Tensor]) -> bool:
    """True if every path from ``losses`` to the ``inputs`` goes through ``features`` (checked on the graph)."""
    stop = features.grad_fn
    if stop is None:
        return False
    targets = {id(x) for x in inputs}
    nodes = {id(x.grad_fn) for x in inputs if x.grad_fn is not None}
    seen: set[int] = set()
    stack = [losses.grad_fn] if losses.grad_fn is not None else []
    while stack:
        node = stack.pop()
        if node is None or id(node) in seen or node is stop:
            continue
        seen.add(id(node))
        variable = getattr(node, "variable", None)
        if (variable is not None and id(variable) in targets) or id(node) in nodes:
            return False
        stack.extend(next_node for next_node, _ in node.next_functions)
    return True


# --- per-task gradients ------------------------------------------------------------------------
def per_task_gradients(
    losses: Tensor,
    inputs: Sequence[Tensor],
    task_parameters: Sequence[Sequence[Tensor]] | None = None,
    *,
    retain_graph: bool = False,
    features: Tensor | None = None,
    path: str = "loop",
    chunk_size: int | None = None,
) -> tuple[Tensor, list[list[Tensor | None]] | None]:
    """The (T, D) matrix of per-task gradients of ``losses`` w.r.t. ``inputs`` (flattened).

    With ``task_parameters`` (one list per task), also returns each task's gradient w.r.t. its own
    head parameters, computed in the same backward passes. ``retain_graph`` keeps the graph after
    the last task (needed to backpropagate a representation-level direction into the encoder).
    ``path`` (``loop``, ``two_stage``, ``batched``; ``auto`` = ``loop``) and ``features`` (the
    representation z the two-stage paths go through) choose how; see the module docstring.
    """
    if path not in ("auto", "loop", "two_stage", "batched"):
        raise UserInputError(f"per_task_gradients: path {path!r} is invalid; use loop, two_stage or batched")
    inputs = list(inputs)
    n_tasks = losses.shape[0]
    roots = _Roots(losses)
    width = sum(x.numel() for x in inputs)
    out = torch.empty(n_tasks, width, dtype=_dtype(inputs), device=inputs[0].device)
    heads: list[list[Tensor | None]] | None = [] if task_parameters is not None else None
    two_stage = (
        path in ("two_stage", "batched")
        and features is not None
        and not any(x is features for x in inputs)
        and reaches_only_through(losses, features, inputs)
    )
    if not two_stage:
        for i in range(n_tasks):
            own = list(task_parameters[i]) if task_parameters is not None else []
            grads = roots.grad(i, inputs + own, retain_graph or i < n_tasks - 1)
            _write_row(out, i, grads[: len(inputs)], inputs)
            if heads is not None:
                heads.append(list(grads[len(inputs) :]))
        return out, heads
    # stage 1: gradients w.r.t. the representation (heads only) and the heads' own gradients
    assert features is not None
    rows = torch.zeros(n_tasks, *features.shape, dtype=features.dtype, device=features.device)
    for i in range(n_tasks):
        own = list(task_parameters[i]) if task_parameters is not None else []
        grads = roots.grad(i, [features, *own], True)
        if grads[0] is not None:
            rows[i] = grads[0]
        if heads is not None:
            heads.append(list(grads[1:]))
    # stage 2: the T vector-Jacobian products through the encoder
    step = 1 if path == "two_stage" else (chunk_size or n_tasks)
    for start in range(0, n_tasks, step):
        stop = min(start + step, n_tasks)
        keep = retain_graph or stop < n_tasks
        if stop - start == 1:
            grads = torch.autograd.grad(features, inputs, rows[start], retain_graph=keep, allow_unused=True)
            _write_row(out, start, grads, inputs)
        else:
            grads = torch.autograd.grad(
                features, inputs, rows[start:stop], retain_graph=keep, allow_unused=True, is_grads_batched=True
            )
            _write_row(out, slice(start, stop), grads, inputs)
    return out, heads


# --- the Gramian without the (T, D) matrix -----------------------------------------------------
def parameter_blocks(inputs: Sequence[Tensor], n_tasks: int, max_bytes: int | None) -> list[list[Tensor]]:
    """Consecutive groups of ``inputs`` whose T per-task gradients fit in ``max_bytes`` (at least one tensor each)."""
    if max_bytes is None:
        return [list(inputs)]
    blocks: list[list[Tensor]] = [[]]
    size = 0
    for x in inputs:
        need = n_tasks * x.numel() * x.element_size()
        if blocks[-1] and size + need > max_bytes:
            blocks.append([])
            size = 0
        blocks[-1].append(x)
        size += need
    return blocks


def gramian(
    losses: Tensor,
    inputs: Sequence[Tensor],
    task_parameters: Sequence[Sequence[Tensor]] | None = None,
    *,
    max_bytes: int | None = None,
    retain_graph: bool = False,
) -> tuple[Tensor, list[list[Tensor | None]] | None]:
    """The T x T Gramian ``G G^T`` (float64) of the per-task gradients w.r.t. ``inputs``, and the heads' gradients.

    ``G`` is never held whole: the inputs are split into blocks whose T gradients take at most
    ``max_bytes``, and ``G_b G_b^T`` is accumulated block by block (one loop of T backward passes per
    block). The products run in the gradients' precision (float32 stays float32, as :func:`gram`).
    """
    inputs = list(inputs)
    n_tasks = losses.shape[0]
    blocks = parameter_blocks(inputs, n_tasks, max_bytes)
    K = torch.zeros(n_tasks, n_tasks, dtype=torch.float64)
    heads: list[list[Tensor | None]] | None = None
    for index, block in enumerate(blocks):
        last = index == len(blocks) - 1
        with_heads = task_parameters if index == 0 else None
        rows, block_heads = per_task_gradients(losses, block, with_heads, retain_graph=retain_graph or not last)
        if index == 0:
            heads = block_heads
        g = rows if rows.dtype in (torch.float32, torch.float64) else rows.float()
        K += (g @ g.T).to("cpu", torch.float64)
        del rows, g
    return K, heads


def gram_factor(K: Tensor) -> tuple[Tensor, Tensor]:
    """A (T, T) ``R`` with ``R R^T = K`` and its pseudo-inverse, from the eigendecomposition of ``K`` (float64).

    If ``G`` has Gramian ``K`` then ``G = R Q^T`` with orthonormal ``Q``: a method that only uses the
    Gramian and returns a linear combination of the rows gives ``d_R = c^T R`` on ``R``, and
    ``c = R^+ ^T d_R`` are its coefficients on ``G`` (exact for any rank).
    """
    K = 0.5 * (K + K.T)
    values, vectors = torch.linalg.eigh(K)
    roots = values.clamp_min(0.0).sqrt()
    tolerance = float(roots.max()) * K.shape[0] * torch.finfo(K.dtype).eps if values.numel() else 0.0
    keep = roots > tolerance  # directions with a (numerically) zero gradient component carry nothing
    inverse_roots = torch.where(keep, 1.0 / torch.where(keep, roots, torch.ones_like(roots)), torch.zeros_like(roots))
    R = vectors * roots  # columns scaled: R R^T = V diag(lambda) V^T
    R_pinv = (vectors * inverse_roots).T  # R^+ = diag(1/sqrt(lambda)) V^T on the range
    return R, R_pinv


def gradient_bytes(n_tasks: int, inputs: Sequence[Tensor]) -> int:
    """Bytes of the (T, D) per-task gradient matrix of ``inputs``."""
    return n_tasks * sum(x.numel() * x.element_size() for x in inputs)

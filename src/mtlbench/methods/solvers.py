"""Small solvers shared by the gradient-combination methods, working on the T x T Gram matrix.

- :func:`min_norm_weights`: the minimum-norm point of the convex hull of the task gradients,
  ``argmin_{w in simplex} w^T G w`` with ``G = g g^T`` (Sener & Koltun 2018, eq. 3-4; MGDA, CAGrad's
  inner problem, ...). Exact closed form for T = 2 (Sener & Koltun, Algorithm 1), Wolfe's finite
  min-norm-point algorithm (Wolfe 1976) for T > 2 instead of their Frank-Wolfe iterations: it ends
  at the exact optimum (up to rounding) in a handful of T x T solves.
- :func:`project_simplex`: Euclidean projection onto the probability simplex (Duchi et al. 2008).
- :func:`gram`: ``G = g g^T`` (returned in float64), the only D-sized work the solvers need.
- :func:`combine_rows`: the direction ``sum_i c_i g_i`` from coefficients found on the Gram matrix.
- :func:`randperm`, :func:`uniform`: draws from a ``torch.Generator`` on its own device.

The solvers run in float64 on the CPU (T x T is tiny) and return tensors on the caller's device
and dtype.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

#: relative tolerance of Wolfe's stopping rule and of the positivity tests
_TOLERANCE = 1e-12


def gram(gradients: Tensor) -> Tensor:
    """The T x T Gram matrix ``g g^T`` of the (T, D) gradients, returned in float64.

    The product runs in the gradients' own precision (float32 stays float32, as in the reference
    implementations; half precisions are upcast to float32): casting a (T, D) matrix to float64
    first would cost about three times as much, and only the small T x T solves need float64.
    The solvers are then exact for the Gram matrix they get, i.e. to float32 rounding (~1e-7
    relative) for float32 gradients; pass float64 gradients for more.
    """
    g = gradients.detach()
    if g.dtype not in (torch.float32, torch.float64):
        g = g.float()
    return (g @ g.T).to(torch.float64)


def combine_rows(coefficients: Tensor, gradients: Tensor) -> Tensor:
    """``sum_i c_i g_i`` for coefficients (T,) in any dtype/device, in the gradients' dtype and device."""
    return coefficients.to(device=gradients.device, dtype=gradients.dtype) @ gradients


def randperm(n: int, generator: torch.Generator | None = None) -> list[int]:
    """A random permutation of ``range(n)`` drawn from ``generator`` (the global RNG when None)."""
    device = generator.device if generator is not None else "cpu"
    return torch.randperm(n, generator=generator, device=device).tolist()


def uniform(shape: torch.Size | tuple[int, ...], generator: torch.Generator | None, like: Tensor) -> Tensor:
    """U[0, 1) samples of ``shape`` from ``generator`` (on its device), returned on ``like``'s device."""
    device = generator.device if generator is not None else like.device
    dtype = like.dtype if like.dtype.is_floating_point else torch.float32
    return torch.rand(shape, generator=generator, device=device, dtype=dtype).to(like.device)


def min_norm_2(g11: float, g12: float, g22: float) -> float:
    """Closed form of ``argmin_{gamma in [0,1]} ||gamma g1 + (1-gamma) g2||^2`` (Sener & Koltun, Alg. 1).

    Returns gamma, the weight of the first vector.
    """
    if g12 >= g11:  # g1 lies "behind" g2's projection: the hull's closest point is g1
        return 1.0
    if g12 >= g22:
        return 0.0
    return (g22 - g12) / (g11 + g22 - 2.0 * g12)


def min_norm_weights(gram_matrix: Tensor) -> Tensor:
    """Weights ``w`` (T,) on the simplex minimising ``w^T G w`` for a Gram matrix ``G`` (T, T).

    T = 2 uses the closed form; T > 2 Wolfe's min-norm-point algorithm on ``G`` (affine minimisers
    over a growing/shrinking "corral" of vertices), which is exact up to rounding. Degenerate input
    (identical or zero gradients, rank-deficient ``G``) returns a valid simplex point.
    """
    if gram_matrix.ndim != 2 or gram_matrix.shape[0] != gram_matrix.shape[1]:
        raise ValueError(f"gram must be a square (T, T) matrix, got shape {tuple(gram_matrix.shape)}")
    n = gram_matrix.shape[0]
    device, dtype = gram_matrix.device, gram_matrix.dtype
    if not dtype.is_floating_point:
        dtype = torch.float32
    G = gram_matrix.detach().to("cpu", torch.float64)
    G = 0.5 * (G + G.T)
    if n == 1:
        return torch.ones(1, dtype=dtype, device=device)
    if n == 2:
        gamma = min_norm_2(float(G[0, 0]), float(G[0, 1]), float(G[1, 1]))
        return torch.tensor([gamma, 1.0 - gamma], dtype=dtype, device=device)
    return _wolfe(G).to(device=device, dtype=dtype)


def _affine_minimizer(G: np.ndarray, support: list[int]) -> np.ndarray:
    """``argmin ||sum_S mu_i p_i||^2`` s.t. ``sum mu = 1`` over the affine hull of the support (KKT system)."""
    k = len(support)
    system = np.zeros((k + 1, k + 1))
    system[:k, :k] = G[np.ix_(support, support)]
    system[:k, k] = 1.0
    system[k, :k] = 1.0
    rhs = np.zeros(k + 1)
    rhs[k] = 1.0
    try:
        solution = np.linalg.solve(system, rhs)
        if np.all(np.isfinite(solution)) and np.linalg.norm(system @ solution - rhs) <= 1e-9:
            return solution[:k]
    except np.linalg.LinAlgError:
        pass
    # a (numerically) singular corral: the minimum-norm least-squares solution, as LAPACK's gelsd
    return np.linalg.lstsq(system, rhs, rcond=None)[0][:k]


def _wolfe(G_tensor: Tensor, max_iterations: int = 1000) -> Tensor:
    """Wolfe's (1976) min-norm point in the convex hull of points given by their Gram matrix.

    Runs on T x T float64 NumPy arrays (microseconds per iteration for T of a few tens).
    """
    G = G_tensor.numpy()
    n = G.shape[0]
    diagonal = np.diagonal(G)
    scale = max(float(diagonal.max()), 1e-300)
    start = int(diagonal.argmin())
    weights = np.zeros(n)
    weights[start] = 1.0
    support = [start]
    for _ in range(max_iterations):
        products = G @ weights  # p_j . x for every vertex j
        norm2 = float(weights @ products)
        j = int(products.argmin())
        # stop: no vertex improves on x (Wolfe's criterion, relative to the largest squared norm)
        if norm2 - float(products[j]) <= _TOLERANCE * scale or j in support:
            break
        support.append(j)
        while True:  # minor cycle
            mu = _affine_minimizer(G, support)
            if bool((mu > _TOLERANCE).all()):
                weights[:] = 0.0
                weights[support] = mu
                break
            current = weights[support]
            negative = mu <= _TOLERANCE
            ratios = current[negative] / (current[negative] - mu[negative])
            theta = float(np.clip(ratios, 0.0, 1.0).min())
            current = current + theta * (mu - current)
            weights[:] = 0.0
            weights[support] = current
            support = [i for i in support if weights[i] > _TOLERANCE]
            if not support:  # numerical breakdown: restart from the best vertex
                support = [j]
                weights[:] = 0.0
                weights[j] = 1.0
                break
            outside = np.ones(n, dtype=bool)
            outside[support] = False
            weights[outside] = 0.0
    weights = np.clip(weights, 0.0, None)
    return torch.from_numpy(weights / weights.sum())


def project_simplex(v: Tensor, total: float = 1.0) -> Tensor:
    """Euclidean projection of ``v`` (T,) onto ``{w >= 0, sum w = total}`` (Duchi et al. 2008)."""
    if v.ndim != 1:
        raise ValueError(f"project_simplex expects a vector, got shape {tuple(v.shape)}")
    u, _ = torch.sort(v, descending=True)
    cumulative = torch.cumsum(u, dim=0) - total
    index = torch.arange(1, v.shape[0] + 1, device=v.device, dtype=v.dtype)
    condition = u - cumulative / index > 0
    rho = int(torch.nonzero(condition).max())
    theta = cumulative[rho] / (rho + 1)
    return (v - theta).clamp_min(0.0)

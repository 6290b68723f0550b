"""Small solvers shared by the gradient-combination methods, working on the T x T Gram matrix.

- :func:`min_norm_weights`: the minimum-norm point of the convex hull of the task gradients,
  ``argmin_{w in simplex} w^T G w`` with ``G = g g^T`` (Sener & Koltun 2018, eq. 3-4; MGDA, CAGrad's
  inner problem, ...). Exact closed form for T = 2 (Sener & Koltun, Algorithm 1); for T > 2 an exact
  finite active-set method instead of their Frank-Wolfe iterations (:func:`min_norm_point`:
  Lawson-Hanson non-negative least squares, Wolfe's 1976 min-norm-point algorithm as the fallback),
  scale-free and checked against the KKT conditions.
- :func:`project_simplex`: Euclidean projection onto the probability simplex (Duchi et al. 2008).
- :func:`gram`: ``G = g g^T`` (returned in float64), the only D-sized work the solvers need.
- :func:`combine_rows`: the direction ``sum_i c_i g_i`` from coefficients found on the Gram matrix.
- :func:`randperm`, :func:`uniform`: draws from a ``torch.Generator`` on its own device.

The solvers run in float64 on the CPU (T x T is tiny) and return tensors on the caller's device
and dtype.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy.optimize import nnls
from torch import Tensor

#: relative tolerance of Wolfe's stopping rule and of the positivity tests
_TOLERANCE = 1e-12
#: rounding level of the scaled Gram matrix (largest diagonal entry ~1) in Wolfe's stopping rule
_ROUNDING = 4 * float(np.finfo(np.float64).eps)
#: largest accepted backward error of the corral's KKT solve, relative to the system
_RESIDUAL = 1e-12
#: relative tolerance of the KKT certificate of a min-norm point (:func:`min_norm_certified`)
_CERTIFICATE = 1e-9


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

    T = 2 uses the closed form; T > 2 :func:`min_norm_point`, exact up to rounding whatever the
    scale of ``G``. Degenerate input (identical or zero gradients, rank-deficient ``G``) returns a
    valid simplex point.
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
    return torch.from_numpy(min_norm_point(G.numpy())).to(device=device, dtype=dtype)


def _scaled(G: np.ndarray) -> np.ndarray | None:
    """``G`` times the power of two that brings its largest diagonal entry into [0.5, 1) (exact in
    floating point, so nothing downstream depends on the scale); None if that entry is not positive."""
    top = float(np.diagonal(G).max())
    if not math.isfinite(top) or top <= 0.0:
        return None
    return np.ldexp(G, -math.frexp(top)[1])


def min_norm_certified(G: np.ndarray, w: np.ndarray) -> bool:
    """KKT certificate of ``w`` as the min-norm point for a (scaled) Gram matrix ``G``.

    ``w`` minimises ``w^T G w`` over the simplex iff ``(G w)_j >= w^T G w`` for every ``j``, with
    equality on the support; both are tested relative to ``w^T G w`` (1e-9), plus the rounding level of
    ``G`` (largest diagonal entry ~1).
    """
    products = G @ w
    value = float(w @ products)
    tolerance = _CERTIFICATE * max(value, 0.0) + _ROUNDING * G.shape[0]
    return bool(value - float(products.min()) <= tolerance) and bool(np.abs(products[w > 0] - value).max() <= tolerance)


def min_norm_point(G: np.ndarray) -> np.ndarray:
    """``argmin_{w in simplex} w^T G w`` for a float64 Gram matrix ``G`` (T, T), exact and scale-free.

    ``G`` is scaled by a power of two (:func:`_scaled`). With ``G = A^T A`` (Cholesky, or the
    eigendecomposition where ``G`` is only semi-definite), the problem is the non-negative least
    squares ``min_{u >= 0} ||A u||^2 + (1^T u - 1)^2`` (with ``u = s w``, its value
    ``||A w||^2 / (1 + ||A w||^2)`` is increasing in the norm), solved by Lawson & Hanson's finite
    active-set method (SciPy's ``nnls``; it is Wolfe's algorithm in other coordinates), and
    ``w = u / 1^T u``. If its KKT certificate (:func:`min_norm_certified`) fails, Wolfe's algorithm
    (:func:`_wolfe`) runs too and the better point is returned.
    """
    G = 0.5 * (np.asarray(G, dtype=np.float64) + np.asarray(G, dtype=np.float64).T)
    n = G.shape[0]
    Gs = _scaled(G)
    if Gs is None:  # all points zero (or not finite): any vertex
        w = np.zeros(n)
        w[0] = 1.0
        return w
    system = np.empty((n + 1, n))
    try:
        system[:n] = np.linalg.cholesky(Gs).T
    except np.linalg.LinAlgError:  # only semi-definite: any factor with A^T A = G will do
        values, vectors = np.linalg.eigh(Gs)
        system[:n] = np.sqrt(np.clip(values, 0.0, None))[:, None] * vectors.T
    system[n] = 1.0
    target = np.zeros(n + 1)
    target[n] = 1.0
    try:
        u = nnls(system, target, maxiter=20 * n)[0]
        total = float(u.sum())
        w = u / total if total > 0.0 and math.isfinite(total) else None
    except (RuntimeError, ValueError):  # iteration cap: leave it to Wolfe
        w = None
    if w is not None and min_norm_certified(Gs, w):
        return w
    v = _wolfe(Gs)
    if w is None or float(v @ Gs @ v) <= float(w @ Gs @ w):
        return v
    return w


def _affine_minimizer(G: np.ndarray, support: list[int]) -> np.ndarray:
    """``argmin ||sum_S mu_i p_i||^2`` s.t. ``sum mu = 1`` over the affine hull of the support (KKT system).

    ``G`` is scaled to a largest diagonal entry of about 1 (:func:`_wolfe`), so the bordered system is
    well scaled; the exact solve is kept when its residual is small *relative* to the system
    (backward-stable), else the minimum-norm least-squares solution is used (a singular corral).
    """
    k = len(support)
    system = np.empty((k + 1, k + 1))
    system[:k, :k] = G[np.ix_(support, support)]
    system[:k, k] = 1.0
    system[k, :k] = 1.0
    system[k, k] = 0.0
    rhs = np.zeros(k + 1)
    rhs[k] = 1.0
    try:
        solution = np.linalg.solve(system, rhs)
        if np.all(np.isfinite(solution)):
            residual = float(np.abs(system @ solution - rhs).max())
            size = float(np.abs(system).max()) * float(np.abs(solution).max()) + 1.0
            if residual <= _RESIDUAL * size:
                return solution[:k]
    except np.linalg.LinAlgError:
        pass
    # a (numerically) singular corral: the minimum-norm least-squares solution, as LAPACK's gelsd
    return np.linalg.lstsq(system, rhs, rcond=None)[0][:k]


def _wolfe(G: np.ndarray, max_iterations: int = 1000) -> np.ndarray:
    """Wolfe's (1976) min-norm point in the convex hull of points given by their Gram matrix ``G``.

    Expects ``G`` scaled to a largest diagonal entry of about 1 (:func:`_scaled`); every test is
    relative (the corral's KKT solve, the stopping rule). Runs on T x T float64 NumPy arrays
    (microseconds per iteration).
    """
    n = G.shape[0]
    start = int(np.diagonal(G).argmin())
    weights = np.zeros(n)
    weights[start] = 1.0
    support = [start]
    for _ in range(max_iterations):
        products = G @ weights  # p_j . x for every vertex j
        norm2 = float(weights @ products)
        j = int(products.argmin())
        # stop: no vertex improves on x (Wolfe's criterion, relative to ||x||^2 and to the rounding of G)
        if norm2 - float(products[j]) <= _TOLERANCE * norm2 + _ROUNDING * n or j in support:
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
    return weights / weights.sum()


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

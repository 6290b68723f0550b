"""Small exact solvers on the T x T Gram matrix ``K = g g^T`` for CAGrad, Nash-MTL, FairGrad and UPGrad.

Everything here works in float64 NumPy on T x T matrices (T is the number of tasks, at most a few
tens), so the cost per training step is microseconds to a millisecond, independent of the model size.

- :func:`power_balance`: the unique ``w > 0`` with ``K w = w^(-p)`` (Nash-MTL's ``G^T G alpha = 1/alpha``
  for ``p = 1``, FairGrad's ``G^T G w = w^(-1/alpha)`` for ``p = 1/alpha``). It is the minimiser of the
  strictly convex ``F(w) = 1/2 w^T K w - sum_i h(w_i)`` with ``h' = w^(-p)``; damped Newton on ``F``.
- :func:`nash_ccp`: Nash-MTL's sequence of convex approximations (Navon et al. 2022, section 3.3 and
  the reference ``NashMTL.solve_optimization``), each convex sub-problem solved exactly (see there).
- :func:`cagrad_weights`: CAGrad's dual ``min_{w in simplex} w^T K b + c ||g_0|| sqrt(w^T K w)``
  (Liu et al. 2021, eq. 4): closed form for T = 2, an exact active-set method otherwise (the exact
  min-norm point of shifted gradients + a closed form on the support, KKT-certified; SLSQP, as the
  reference, only where it cannot certify).
- :func:`dual_cone_weights`: UPGrad's projections onto the dual cone, ``min_v v^T G v s.t. v >= u``
  (Quinton & Rey 2024, Prop. 1), as non-negative least squares (Lawson-Hanson, exact active set).
"""

from __future__ import annotations

import math

import numpy as np
from scipy.optimize import linprog, minimize, nnls

from mtlbench.methods.solvers import min_norm_point  # exact min-norm point, shared with MGDA

__all__ = [
    "cagrad_weights",
    "ccp_subproblem",
    "ccp_subproblem_status",
    "ccp_unbounded",
    "dual_cone_weights",
    "nash_ccp",
    "power_balance",
]


# --- K w = w^(-p) ------------------------------------------------------------------------------
def _potential(K: np.ndarray, w: np.ndarray, power: float) -> float:
    h = np.log(w).sum() if power == 1.0 else (w ** (1.0 - power)).sum() / (1.0 - power)
    return 0.5 * float(w @ K @ w) - float(h)


def power_balance(
    K: np.ndarray, power: float = 1.0, start: np.ndarray | None = None, *, tol: float = 1e-12, max_iter: int = 200
) -> np.ndarray | None:
    """The ``w > 0`` solving ``K w = w^(-power)`` (``power > 0``), or None if it does not exist.

    ``K`` is scaled to unit mean diagonal first (``w`` scales back as ``s^(-1/(1+p))``), then damped
    Newton with a fraction-to-boundary rule and Armijo backtracking minimises ``F``; ``F`` is strictly
    convex, so the minimiser is unique. It does not exist when the gradients' convex cone contains a
    direction with zero Gram "energy" that ``h`` rewards without bound (0 in the convex hull of the
    gradients, e.g. two opposite gradients); then the iterates diverge and None is returned.
    """
    K = 0.5 * (np.asarray(K, dtype=np.float64) + np.asarray(K, dtype=np.float64).T)
    n = K.shape[0]
    scale = float(np.trace(K)) / n
    if not math.isfinite(scale) or scale <= 0.0:
        return None
    if n == 2 and power == 1.0:
        # closed form: a_1^2 K11 = a_2^2 K22 (subtract the two equations), so a_2 = a_1 sqrt(K11 / K22)
        a, b, p = float(K[0, 0]), float(K[1, 1]), float(K[0, 1])
        if a <= 0.0 or b <= 0.0 or math.sqrt(a * b) + p <= 0.0:
            return None  # opposite (or zero) gradients: no solution
        first = 1.0 / math.sqrt(a + p * math.sqrt(a / b))
        return np.array([first, first * math.sqrt(a / b)])
    Ks = K / scale
    factor = scale ** (-1.0 / (1.0 + power))
    if start is not None and np.all(np.isfinite(start)) and np.all(np.asarray(start) > 0):
        w = np.asarray(start, dtype=np.float64) / factor
    else:
        mean_row = float(Ks.sum()) / n
        w = np.full(n, mean_row ** (-1.0 / (1.0 + power)) if mean_row > 0 else 1.0)
    value = _potential(Ks, w, power)
    for _ in range(max_iter):
        wp = w ** (-power)
        grad = Ks @ w - wp
        if float(np.abs(grad).max()) <= tol * max(1.0, float(wp.max())):
            return w * factor
        hess = Ks + np.diag(power * wp / w)
        try:
            step = -np.linalg.solve(hess, grad)
        except np.linalg.LinAlgError:
            return None
        shrinking = step < 0
        t = 1.0
        if shrinking.any():
            t = min(1.0, 0.95 * float(np.min(-w[shrinking] / step[shrinking])))
        slope = float(grad @ step)
        while True:
            candidate = w + t * step
            new_value = _potential(Ks, candidate, power)
            if new_value <= value + 1e-4 * t * slope + 1e-13 * abs(value) or t < 1e-14:
                break
            t *= 0.5
        if t < 1e-14 or not np.all(np.isfinite(candidate)) or float(candidate.max()) > 1e12:
            return None
        w, value = candidate, new_value
    return None


# --- Nash-MTL's convex-concave procedure ---------------------------------------------------------
#: what became of a Nash-MTL sub-problem: solved (certified optimal or converged), or why not
SUBPROBLEM_STATUSES = ("optimal", "infeasible", "unbounded", "unconverged")


def ccp_subproblem(
    K: np.ndarray, alpha_prev: np.ndarray, alpha_star: np.ndarray | None, *, tol: float = 1e-10
) -> np.ndarray | None:
    """One convex approximation of Nash-MTL, solved exactly; None where it has no solution.

    The point of :func:`ccp_subproblem_status` (which also says why there is none).
    """
    return ccp_subproblem_status(K, alpha_prev, alpha_star, tol=tol)[0]


def ccp_subproblem_status(
    K: np.ndarray, alpha_prev: np.ndarray, alpha_star: np.ndarray | None, *, tol: float = 1e-10
) -> tuple[np.ndarray | None, str]:
    """One convex approximation of Nash-MTL: ``(solution, "optimal")``, or ``(None, why)``.

    The reference (``NashMTL._init_optim_problem``) minimises ``sum_i beta_i + phi_lin(alpha)`` with
    ``beta = K alpha`` and ``phi`` = sum_i log alpha_i + log beta_i linearised at ``alpha_prev``,
    subject to ``log alpha_i + log beta_i >= 0``: a linear objective ``c^T alpha`` with
    ``c = K 1 + 1/alpha_prev + K (1 / (K alpha_prev))`` over a convex set (its normalisation by
    ``||K||_F`` only rescales the objective). In order:

    1. the Nash point ``alpha_star`` (all constraints active) with non-negative KKT multipliers is
       the exact optimum (certified);
    2. a recession direction ``d >= 0, K d >= 0`` with ``c^T d < 0`` (a linear program,
       :func:`ccp_unbounded`) certifies an unbounded sub-problem: ``"unbounded"``, as ECOS reports it
       (the reference then keeps its current iterate);
    3. otherwise SLSQP in scaled variables, and where it does not report success a log-barrier Newton
       method (:func:`_barrier_subproblem`); a point from neither a converged run nor with a KKT
       certificate is ``"unconverged"`` (never a run-away iterate).

    ``"infeasible"``: no Nash point (0 in the gradients' convex hull, so no ``alpha >= 0`` has
    ``K alpha > 0``) or a linearisation that divides by zero (the reference's solver call fails).
    """
    if alpha_star is None:
        return None, "infeasible"
    beta_prev = K @ alpha_prev
    if np.any(alpha_prev == 0) or np.any(beta_prev == 0):
        return None, "infeasible"  # the reference's linearisation divides by zero: its solver call fails
    c = K.sum(axis=1) + 1.0 / alpha_prev + K @ (1.0 / beta_prev)
    beta_star = K @ alpha_star
    jacobian = np.diag(1.0 / alpha_star) + K / beta_star[:, None]  # rows: grad of log a_i + log b_i
    try:
        multipliers = np.linalg.solve(jacobian.T, c)
    except np.linalg.LinAlgError:
        multipliers = None
    if multipliers is not None and float(multipliers.min()) >= -tol * float(np.abs(multipliers).max()):
        return alpha_star.copy(), "optimal"
    if ccp_unbounded(K, c):
        return None, "unbounded"
    solution = _slsqp_subproblem(K, c, alpha_star)
    if solution is None:
        solution = _barrier_subproblem(K, c, alpha_star)
    return (solution, "optimal") if solution is not None else (None, "unconverged")


def ccp_unbounded(K: np.ndarray, c: np.ndarray) -> bool:
    """Whether ``min c^T a s.t. a >= 0, a_i (K a)_i >= 1`` is certifiably unbounded below.

    The feasible set's recession cone is ``{d >= 0, K d >= 0}`` (along such a ``d`` every product
    ``a_i (K a)_i`` only grows), so a feasible ``d`` of the linear program ``d >= 0, K d >= 0,
    c^T d <= -1`` (SciPy's HiGHS) proves the objective unbounded; it is checked again in float64. With
    ``c > 0`` no such ``d`` exists and no program is solved.
    """
    if bool((c > 0).all()):
        return False
    n = K.shape[0]
    Ks = K / float(np.abs(K).max())
    cs = c / float(np.abs(c).max())
    result = linprog(
        np.zeros(n),
        A_ub=np.vstack([-Ks, cs[None, :]]),
        b_ub=np.concatenate([np.zeros(n), [-1.0]]),
        bounds=[(0.0, None)] * n,
        method="highs",
    )
    if result.status != 0 or result.x is None:
        return False  # infeasible (no such direction) or undecided: not certified
    d = np.clip(result.x, 0.0, None)
    size = float(np.abs(d).max())
    return size > 0.0 and float(cs @ d) < -0.5 and float((Ks @ d).min()) >= -1e-9 * size


def _slsqp_subproblem(K: np.ndarray, c: np.ndarray, alpha_star: np.ndarray) -> np.ndarray | None:
    """The sub-problem by SLSQP in the scaled variables of :func:`_barrier_subproblem`; None unless it
    reports success at a feasible point (then the slower barrier method is used)."""
    n = K.shape[0]
    Kt = alpha_star[:, None] * K * alpha_star[None, :]
    ct = alpha_star * c
    ct = ct / float(np.abs(ct).max())
    result = minimize(
        lambda z: float(ct @ z),
        np.full(n, 1.5),
        jac=lambda z: ct,
        method="SLSQP",
        bounds=[(1e-12, 1e6)] * n,
        constraints=(
            {"type": "ineq", "fun": lambda z: z * (Kt @ z) - 1.0, "jac": lambda z: np.diag(Kt @ z) + z[:, None] * Kt},
        ),
        options={"ftol": 1e-14, "maxiter": 200},
    )
    z = result.x
    if not result.success or not np.all(np.isfinite(z)) or float((z * (Kt @ z)).min()) < 1.0 - 1e-9:
        return None
    if float(z.max()) >= 1e6 * (1 - 1e-9):  # stopped by the artificial bound: numerically unbounded
        return None
    return alpha_star * z


def _barrier_subproblem(
    K: np.ndarray, c: np.ndarray, alpha_star: np.ndarray, *, max_newton: int = 400, max_scale: float = 1e6
) -> np.ndarray | None:
    """``min c^T a s.t. log a_i + log (K a)_i >= 0`` by the log-barrier method (Boyd & Vandenberghe 11.3).

    Solved in the variables ``z = a / alpha_star``, where the constraints read
    ``log z_i + log (K' z)_i >= 0`` with ``K' = diag(alpha_star) K diag(alpha_star)`` (``K' 1 = 1``), from
    the strictly feasible ``z = 1.5``; the barrier weight grows 20-fold per centring until the
    duality gap ``T / t`` of a finished centring is below 1e-9 of the objective. A point whose last
    centring stalled (line search) or ran out of Newton steps is returned only with a KKT certificate
    (:func:`_ccp_certified`). None where the iterates leave every bounded region (``z > max_scale``:
    an unbounded or numerically unbounded sub-problem), Newton fails, or nothing is certified.
    """
    n = K.shape[0]
    Kt = alpha_star[:, None] * K * alpha_star[None, :]
    ct = alpha_star * c
    ct = ct / float(np.abs(ct).max())
    z = np.full(n, 1.5)
    t = 1.0
    newton = 0
    while newton < max_newton:
        centred = False
        for _ in range(100):
            newton += 1
            b = Kt @ z
            h = np.log(z) + np.log(b)
            J = np.diag(1.0 / z) + Kt / b[:, None]  # rows: gradients of h_i
            grad = t * ct - J.T @ (1.0 / h)
            hess = (J.T * (1.0 / h**2)) @ J + np.diag(1.0 / (h * z * z)) + (Kt.T * (1.0 / (h * b * b))) @ Kt
            try:
                step = -np.linalg.solve(hess, grad)
            except np.linalg.LinAlgError:
                return None
            decrement = float(-grad @ step)
            if decrement <= 1e-10:
                centred = True
                break
            value = t * float(ct @ z) - float(np.log(h).sum())
            s = 1.0
            while s > 1e-12:
                candidate = z + s * step
                if candidate.min() > 0:
                    cb = Kt @ candidate
                    if cb.min() > 0:
                        ch = np.log(candidate) + np.log(cb)
                        if (
                            ch.min() > 0
                            and t * float(ct @ candidate) - float(np.log(ch).sum()) <= value - 0.25 * s * decrement
                        ):
                            break
                s *= 0.5
            if s <= 1e-12:
                break
            z = candidate
            if float(z.max()) > max_scale:
                return None
        if n / t <= 1e-9 * max(1.0, abs(float(ct @ z))):
            return alpha_star * z if centred or _ccp_certified(Kt, ct, z) else None
        t *= 20.0
    return alpha_star * z if _ccp_certified(Kt, ct, z) else None


def _ccp_certified(K: np.ndarray, c: np.ndarray, a: np.ndarray, rtol: float = 1e-8) -> bool:
    """KKT certificate of ``a`` for ``min c^T a s.t. h_i(a) = log a_i + log (K a)_i >= 0`` (a convex problem).

    ``a`` is optimal if it is feasible and ``c`` is a non-negative combination of the gradients of
    the active constraints (``h_i <= 1e-6``; multipliers by non-negative least squares, residual
    below ``rtol`` of ``||c||``).
    """
    b = K @ a
    if float(a.min()) <= 0.0 or float(b.min()) <= 0.0:
        return False
    h = np.log(a) + np.log(b)
    active = h <= 1e-6
    if float(h.min()) < -1e-12 or not active.any():
        return False
    J = np.diag(1.0 / a) + K / b[:, None]  # rows: gradients of h_i
    try:
        _, residual = nnls(J[active].T, c, maxiter=50 * len(a))
    except (RuntimeError, ValueError):
        return False
    return residual <= rtol * float(np.linalg.norm(c))


def nash_ccp(K: np.ndarray, alpha_prev: np.ndarray, n_iter: int = 20) -> tuple[np.ndarray, int, str | None]:
    """Nash-MTL's weights by the reference's sequence of convex approximations.

    Mirrors ``NashMTL.solve_optimization``: from ``alpha_prev`` (the previous step's weights: a warm
    start) solve up to ``n_iter`` sub-problems; stop when the residual ``||K_n a - 1/a||`` at the
    current iterate is below 1e-3 (``K_n = K / ||K||_F``, as the reference tests it), when the new
    solution moves by less than 1e-6, or when a sub-problem has no solution (the reference's solver
    failure or ECOS's ``unbounded``: the current iterate is kept). Returns ``(alpha, iterations,
    failure)``, ``failure`` None or why the last sub-problem had no solution (``"infeasible"``,
    ``"unbounded"``, ``"unconverged"``: :func:`ccp_subproblem_status`).
    """
    K = 0.5 * (K + K.T)
    norm = float(np.linalg.norm(K))
    alpha_t = np.asarray(alpha_prev, dtype=np.float64).copy()
    if not math.isfinite(norm) or norm <= 0.0:
        return alpha_t, 0, "infeasible"
    Kn = K / norm
    alpha_star = power_balance(K, 1.0)
    iterations = 0
    for _ in range(n_iter):
        iterations += 1
        solution, status = ccp_subproblem_status(K, alpha_t, alpha_star)
        if solution is None:
            return alpha_t, iterations, status
        residual = float(np.linalg.norm(Kn @ alpha_t - 1.0 / (alpha_t + 1e-10)))
        if residual < 1e-3 or float(np.linalg.norm(solution - alpha_t)) < 1e-6:
            break
        alpha_t = solution
    return alpha_t, iterations, None


# --- CAGrad -------------------------------------------------------------------------------------
def _cagrad_two(K: np.ndarray, c: float) -> float:
    """Exact minimiser ``x`` (weight of task 1) of CAGrad's dual for T = 2 (a 1-D convex problem).

    With ``g_w = x g1 + (1-x) g2``: ``f(x) = g_w.g0 + C ||g_w||``, ``C = c ||g0||``. Writing
    ``y = A x + B`` (``A = ||g1 - g2||^2``, ``B = g1.g2 - ||g2||^2``) and ``D = det K``,
    ``||g_w|| = sqrt((y^2 + D) / A)`` and ``f'(x) = 0`` gives ``y^2 = r^2 D / (A - r^2)`` with
    ``r = (||g2||^2 - ||g1||^2) / (2C)`` and ``sign(y) = sign(r)``; clip to [0, 1].
    """
    a, p, b = float(K[0, 0]), float(K[0, 1]), float(K[1, 1])
    A = a + b - 2.0 * p
    C = c * math.sqrt(max(0.25 * (a + b + 2.0 * p), 0.0))
    if 1e-15 * max(a, b, 1e-300) >= A:  # identical gradients: every x gives the same direction
        return 0.5
    if C <= 0.0:  # linear objective 0.5 (a - b) x + const
        return 0.5 if a == b else (0.0 if a > b else 1.0)
    B = p - b
    D = max(a * b - p * p, 0.0)
    r = (b - a) / (2.0 * C)
    root = math.sqrt(A)
    if r >= root:
        return 1.0
    if r <= -root:
        return 0.0
    y = math.copysign(math.sqrt(r * r * D / (A - r * r)), r) if D > 0 else 0.0
    return min(1.0, max(0.0, (y - B) / A))


def cagrad_weights(K: np.ndarray, c: float) -> np.ndarray:
    """``argmin_{w in simplex} w^T K 1/T + c ||g_0|| sqrt(w^T K w)`` (CAGrad's dual, Liu et al. eq. 4).

    Scale-free (both terms scale with K), so K is normalised by its trace first. T = 2 in closed
    form (:func:`_cagrad_two`); T > 2 by an exact active-set method (:func:`_cagrad_active_set`,
    closed form on each support, KKT conditions checked), and where that cannot certify its answer
    (singular Gram matrix on the support, cycling) by SLSQP with analytic gradients from the uniform
    point, as the reference code does (``scipy.optimize.minimize``), with tight tolerances.
    """
    K = 0.5 * (np.asarray(K, dtype=np.float64) + np.asarray(K, dtype=np.float64).T)
    n = K.shape[0]
    trace = float(np.trace(K))
    if n == 1:
        return np.ones(1)
    if not math.isfinite(trace) or trace <= 0.0:
        return np.full(n, 1.0 / n)
    K = K / trace
    if n == 2:
        x = _cagrad_two(K, c)
        return np.array([x, 1.0 - x])
    b = np.full(n, 1.0 / n)
    Kb = K @ b
    C = c * math.sqrt(max(float(b @ Kb), 0.0))
    exact = _cagrad_active_set(K, Kb, C)
    if exact is not None:
        return exact
    eps = 1e-14

    def objective(w: np.ndarray) -> tuple[float, np.ndarray]:
        Kw = K @ w
        norm = math.sqrt(max(float(w @ Kw), 0.0) + eps)
        return float(w @ Kb) + C * norm, Kb + C * Kw / norm

    result = minimize(
        objective,
        b.copy(),
        jac=True,
        method="SLSQP",
        bounds=[(0.0, 1.0)] * n,
        constraints=({"type": "eq", "fun": lambda w: 1.0 - w.sum(), "jac": lambda w: -np.ones_like(w)},),
        options={"ftol": 1e-15, "maxiter": 500},
    )
    w = np.clip(result.x, 0.0, None)
    return w / w.sum()


def _cagrad_support(K: np.ndarray, a: np.ndarray, C: float, support: list[int]) -> np.ndarray | None:
    """Stationary point of ``w^T a + C sqrt(w^T K w)`` on the affine hull ``{sum w = 1, w_i = 0 off support}``.

    With ``x = C w / ||g_w||`` stationarity reads ``K_SS x = nu 1 - a_S`` and ``x^T K_SS x = C^2``: so
    ``x = nu p - q`` (``p = K_SS^-1 1``, ``q = K_SS^-1 a_S``), ``nu`` the larger root of
    ``(1^T p) nu^2 - 2 (1^T q) nu + a_S^T q - C^2 = 0`` (the one with ``1^T x > 0``), and
    ``w_S = x / 1^T x``. None where ``K_SS`` is singular or no root exists.
    """
    sub = K[np.ix_(support, support)]
    try:
        factor = np.linalg.cholesky(sub)
    except np.linalg.LinAlgError:
        return None
    if float(np.diagonal(factor).min()) <= 1e-7 * float(np.diagonal(factor).max()):
        return None  # ill-conditioned: leave it to SLSQP
    rhs = np.stack([np.ones(len(support)), a[support]], axis=1)
    solved = np.linalg.solve(factor.T, np.linalg.solve(factor, rhs))
    p, q = solved[:, 0], solved[:, 1]
    A, B, D = float(p.sum()), float(q.sum()), float(a[support] @ q)
    discriminant = B * B - A * (D - C * C)
    if A <= 0.0 or discriminant < 0.0:
        return None
    nu = (B + math.sqrt(discriminant)) / A
    x = nu * p - q
    total = float(x.sum())
    if total <= 0.0 or not math.isfinite(total):
        return None
    w = np.zeros(K.shape[0])
    w[support] = x / total
    return w


def _cagrad_kkt(K: np.ndarray, a: np.ndarray, C: float, w: np.ndarray) -> bool:
    """KKT conditions of CAGrad's dual at ``w``: ``a + C K w / ||g_w||`` equal (= nu) on the support, >= nu off it."""
    if float(w.min()) < 0.0 or abs(float(w.sum()) - 1.0) > 1e-12:
        return False
    norm = math.sqrt(max(float(w @ K @ w), 0.0))
    if norm <= 0.0:
        return False
    gradient = a + C * (K @ w) / norm
    support = w > 0.0
    nu = float(gradient[support].mean())
    scale = max(float(np.abs(gradient).max()), 1e-300)
    return bool(np.abs(gradient[support] - nu).max() <= 1e-9 * scale) and bool(
        (gradient[~support] >= nu - 1e-9 * scale).all()
    )


def _cagrad_active_set(K: np.ndarray, a: np.ndarray, C: float, max_iterations: int = 20) -> np.ndarray | None:
    """Exact minimiser of ``w^T a + C sqrt(w^T K w)`` over the simplex (T > 2), or None if not certified.

    At the optimum, with ``lambda = C / ||g_w||``, ``w`` also minimises the quadratic
    ``w^T a + lambda/2 w^T K w`` over the simplex (same KKT conditions), i.e. it is the min-norm point
    of the hull of the shifted gradients ``g_i + g_0 / lambda`` (Gram matrix
    ``K + (a 1^T + 1 a^T) / lambda + b^T K b / lambda^2``), found exactly (:func:`min_norm_point`). Its
    support gives the closed form (:func:`_cagrad_support`); ``lambda`` is updated from the new
    point until that closed form satisfies the KKT conditions (to 1e-9 relative). Otherwise None,
    and the caller falls back to SLSQP.
    """
    n = K.shape[0]
    if C <= 0.0:
        return None
    b = np.full(n, 1.0 / n)
    g0_norm2 = float(b @ a)
    w = b
    tried: set[tuple[int, ...]] = set()
    for _ in range(max_iterations):
        norm = math.sqrt(max(float(w @ K @ w), 0.0))
        if norm <= 0.0:
            return None
        lam = C / norm
        shifted = K + (a[:, None] + a[None, :]) / lam + g0_norm2 / lam**2
        v = min_norm_point(shifted)
        support = [i for i in range(n) if v[i] > 1e-12]
        key = tuple(support)
        if key not in tried:
            tried.add(key)
            exact = _cagrad_support(K, a, C, support)
            if exact is not None and _cagrad_kkt(K, a, C, exact):
                return exact
        if np.allclose(v, w, rtol=0.0, atol=1e-15):
            return None
        w = v
    return None


# --- UPGrad -------------------------------------------------------------------------------------
def dual_cone_weights(G: np.ndarray, U: np.ndarray) -> np.ndarray:
    """For each row ``u`` of ``U``: ``v = argmin v^T G v s.t. v >= u`` (``G`` positive definite).

    With ``v = u + x``, ``x >= 0`` and ``G = L L^T`` this is ``min_{x >= 0} ||L^T x + L^T u||``, a
    non-negative least-squares problem solved exactly by Lawson & Hanson's active-set method.
    """
    G = 0.5 * (G + G.T)
    try:
        A = np.linalg.cholesky(G).T
    except np.linalg.LinAlgError:  # only positive semi-definite: any factor with A^T A = G will do
        eigenvalues, vectors = np.linalg.eigh(G)
        A = np.sqrt(np.clip(eigenvalues, 0.0, None))[:, None] * vectors.T
    rows = []
    for u in np.atleast_2d(U):
        x, _ = nnls(A, -(A @ u), maxiter=50 * A.shape[0])
        rows.append(u + x)
    return np.stack(rows)

"""Nash-MTL's convex sub-problems: certified-unbounded ones have no solution (ECOS: ``unbounded``), the
others are solved to optimality, and the whole sequence follows the reference (cvxpy + ECOS).

Regression for issue 12, item 3: the barrier fallback returned finite points of unbounded
sub-problems (a run-away iterate), taking a run off the reference trajectory, where the reference's
ECOS call reports ``unbounded`` and keeps its current iterate.

Sub-problem (reference ``NashMTL._init_optim_problem``, with ``K`` the Gram matrix and ``a`` the
previous iterate): ``min c^T x s.t. x >= 0, x_i (K x)_i >= 1`` with
``c = K 1 + 1/a + K (1 / (K a))``. Its recession cone is ``{d >= 0, K d >= 0}``, so a ``d`` in it with
``c^T d < 0`` certifies unboundedness (a linear program, solved here independently of mtlbench).
"""

from __future__ import annotations

import functools
import warnings

import cvxpy as cp
import numpy as np
import pytest
import torch
from scipy.optimize import linprog, nnls

from mtlbench.methods import create
from mtlbench.methods.solvers_qp import ccp_subproblem, nash_ccp, power_balance

SEEDS = range(100)  # per number of tasks; the generator below classifies them


def generate(n_tasks: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Gradients (T, T + 2) of spread norms around a shared component of random sign and size (some
    conflict), scaled to a Gram matrix of unit Frobenius norm (as the reference normalises it), and a
    previous iterate ``a`` of log-normal spread; returns (gradients, a)."""
    rng = np.random.default_rng(seed)
    dim = n_tasks + 2
    g = rng.normal(size=(n_tasks, dim)) * rng.uniform(0.3, 3.0, size=(n_tasks, 1))
    g = g + rng.uniform(-0.5, 1.0) * rng.normal(size=dim)
    a = np.exp(rng.normal(size=n_tasks)) * rng.uniform(0.1, 3.0)
    return g / np.sqrt(np.linalg.norm(g @ g.T)), a


def linear_cost(K: np.ndarray, a: np.ndarray) -> np.ndarray:
    return K.sum(axis=1) + 1.0 / a + K @ (1.0 / (K @ a))


def recession_direction(K: np.ndarray, c: np.ndarray) -> np.ndarray | None:
    """A ``d >= 0`` with ``K d >= 0`` and ``c^T d <= -1`` (HiGHS), checked in float64; None if there is none."""
    n = K.shape[0]
    result = linprog(
        np.zeros(n),
        A_ub=np.vstack([-K, c[None, :]]),
        b_ub=np.r_[np.zeros(n), -1.0],
        bounds=[(0, None)] * n,
        method="highs",
    )
    if result.status != 0:
        return None
    d = np.clip(result.x, 0.0, None)
    assert float(c @ d) <= -1 + 1e-7 and float((K @ d).min()) >= -1e-9 * float(np.abs(K).max() * d.max())
    return d


@functools.cache
def cases(n_tasks: int) -> dict[str, list[int]]:
    """The seeds whose sub-problem (at the generated ``a``) is certified unbounded, and the bounded
    ones whose optimum is not the Nash point (they need the SLSQP / barrier solvers)."""
    kinds: dict[str, list[int]] = {"unbounded": [], "bounded": []}
    for seed in SEEDS:
        g, a = generate(n_tasks, seed)
        K = g @ g.T
        c = linear_cost(K, a)
        if recession_direction(K, c) is not None:
            kinds["unbounded"].append(seed)
            continue
        star = power_balance(K)
        jacobian = np.diag(1.0 / star) + K / (K @ star)[:, None]
        if float(np.linalg.solve(jacobian.T, c).min()) < 0:  # the Nash point is not the optimum
            kinds["bounded"].append(seed)
    return kinds


def kkt_certified(K: np.ndarray, c: np.ndarray, x: np.ndarray) -> bool:
    """Feasible, and ``c`` a non-negative combination (NNLS) of the active constraints' gradients: optimal."""
    b = K @ x
    h = np.log(x) + np.log(b)
    if float(h.min()) < -1e-9:
        return False
    active = h <= 1e-6
    J = np.diag(1.0 / x) + K / b[:, None]  # rows: gradients of h_i
    _, residual = nnls(J[active].T, c)
    return residual <= 1e-6 * float(np.linalg.norm(c))


@pytest.mark.parametrize("n_tasks", [3, 5, 11])
def test_certified_unbounded_sub_problems_have_no_solution(n_tasks):
    seeds = cases(n_tasks)["unbounded"]
    assert len(seeds) >= 8
    accepted = []
    for seed in seeds:
        g, a = generate(n_tasks, seed)
        K = g @ g.T
        c = linear_cost(K, a)
        star = power_balance(K)
        d = recession_direction(K, c)
        far = star + 1e6 * d / d.max()  # the Nash point is feasible; along d it stays so, c^T x -> -inf
        assert float((far * (K @ far)).min()) >= 1.0 - 1e-9 and float(c @ far) < float(c @ star) - 1e5
        if ccp_subproblem(K, a, star) is not None:
            accepted.append(seed)
    assert accepted == [], f"{len(accepted)}/{len(seeds)} certified-unbounded sub-problems accepted: {accepted}"


@pytest.mark.parametrize("n_tasks", [3, 5, 11])
def test_bounded_sub_problems_are_solved_to_optimality(n_tasks):
    seeds = cases(n_tasks)["bounded"][:15]
    assert len(seeds) >= 10
    for seed in seeds:
        g, a = generate(n_tasks, seed)
        K = g @ g.T
        solution = ccp_subproblem(K, a, power_balance(K))
        assert solution is not None, seed
        assert kkt_certified(K, linear_cost(K, a), solution), seed


class ReferenceSubproblem:
    """The reference's cvxpy problem (``NashMTL._init_optim_problem``) with its parameters, solved by ECOS."""

    def __init__(self, n_tasks: int):
        self.alpha = cp.Variable(shape=(n_tasks,), nonneg=True)
        self.previous = cp.Parameter(shape=(n_tasks,), value=np.ones(n_tasks))
        self.G = cp.Parameter(shape=(n_tasks, n_tasks), value=np.eye(n_tasks))
        self.factor = cp.Parameter(shape=(1,), value=np.array([1.0]))
        G_previous = self.G @ self.previous
        phi = (1 / self.previous + (1 / G_previous) @ self.G) @ (self.alpha - self.previous)
        G_alpha = self.G @ self.alpha
        constraints = [-cp.log(self.alpha[i] * self.factor) - cp.log(G_alpha[i]) <= 0 for i in range(n_tasks)]
        self.problem = cp.Problem(cp.Minimize(cp.sum(G_alpha) + phi / self.factor), constraints)

    def solve(self, K: np.ndarray, previous: np.ndarray) -> np.ndarray | None:
        """As ``get_weighted_loss`` + one pass of ``solve_optimization``: the new alpha, or None."""
        norm = np.linalg.norm(K)
        self.G.value, self.factor.value = K / norm, np.array([norm])
        self.alpha.value = previous
        self.previous.value = previous
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.problem.solve(solver=cp.ECOS, warm_start=True, max_iters=100)
        return self.alpha.value

    def optimization(self, K: np.ndarray, previous: np.ndarray, n_iter: int = 20) -> np.ndarray:
        """The reference's ``solve_optimization`` loop (stop criteria included) from ``previous``."""
        alpha_t = previous
        Kn = K / np.linalg.norm(K)
        for _ in range(n_iter):
            value = self.solve(K, alpha_t)
            if (
                value is None
                or np.linalg.norm(Kn @ alpha_t - 1 / (alpha_t + 1e-10)) < 1e-3
                or np.linalg.norm(value - alpha_t) < 1e-6
            ):
                break
            alpha_t = value
        return alpha_t


@pytest.mark.parametrize("n_tasks", [3, 5, 11])
def test_sub_problems_match_cvxpy_ecos(n_tasks):
    reference = ReferenceSubproblem(n_tasks)
    kinds = cases(n_tasks)
    for seed in kinds["unbounded"][:6] + kinds["bounded"][:6]:
        g, a = generate(n_tasks, seed)
        K = g @ g.T
        expected = reference.solve(K, a)
        assert reference.problem.status in ("unbounded", "optimal"), reference.problem.status
        got = ccp_subproblem(K, a, power_balance(K))
        if expected is None:
            assert got is None, seed
        else:
            assert got is not None, seed
            np.testing.assert_allclose(
                got, expected, rtol=0, atol=1e-4 * float(np.abs(expected).max())
            )  # ECOS's accuracy
            c = linear_cost(K, a)
            assert float(c @ got) <= float(c @ expected) + 1e-7 * abs(float(c @ expected))


@pytest.mark.parametrize("n_tasks", [3, 5])
def test_convex_approximations_follow_the_reference_trajectory(n_tasks):
    reference = ReferenceSubproblem(n_tasks)
    kinds = cases(n_tasks)
    for seed in kinds["unbounded"][:3] + kinds["bounded"][:3]:
        g, a = generate(n_tasks, seed)
        K = g @ g.T
        expected = reference.optimization(K, a)
        got, _, failure = nash_ccp(K, a)
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=0)
        if seed in kinds["unbounded"]:
            assert failure == "unbounded"
            np.testing.assert_array_equal(got, a)  # the first sub-problem has no solution: alpha is kept


def test_a_step_with_an_unbounded_sub_problem_keeps_alpha_and_counts_it():
    seed = cases(5)["unbounded"][0]
    g, a = generate(5, seed)
    method = create("nash_mtl", 5)
    result = method.combine(torch.from_numpy(g), state={"alpha": torch.from_numpy(a), "step": 0})
    torch.testing.assert_close(result.weights, torch.from_numpy(a))
    assert result.info["count_subproblem_unbounded"] == 1 and result.info["count_solver_fallback"] == 1
    assert result.info["solver_iterations"] == 1


def test_kkt_certificate_of_the_barrier_fallback():
    """The certificate a stalled barrier run needs: true at the optimum, false at a feasible non-optimal point."""
    from mtlbench.methods.solvers_qp import _ccp_certified

    for seed in cases(5)["bounded"][:5]:
        g, a = generate(5, seed)
        K = g @ g.T
        c = linear_cost(K, a)
        star = power_balance(K)
        solution = ccp_subproblem(K, a, star)
        assert _ccp_certified(K, c, solution)
        assert not _ccp_certified(K, c, star)  # feasible (every constraint active), multipliers not all >= 0
        assert not _ccp_certified(K, c, 0.5 * star)  # infeasible

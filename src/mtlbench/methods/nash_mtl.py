"""Nash-MTL: multi-task learning as a bargaining game.

Navon, Shamsian, Achituve, Maron, Kawaguchi, Chechik & Fetaya (2022), *Multi-Task Learning as a
Bargaining Game*, ICML. The update ``d = sum_i alpha_i g_i`` is the Nash bargaining solution, whose
weights solve (Theorem 3.2)

    G^T G alpha = 1 / alpha,   alpha > 0   (element-wise; G has the task gradients as columns).

As the reference code (``AvivNavon/nash-mtl``, ``methods/weight_methods.py`` ``NashMTL``, which Gama &
Grassi copy) the weights come from a sequence of convex approximations (section 3.3): up to
``optim_niter`` = 20 convex sub-problems, warm-started from the previous step's alpha (stateful),
stopping when the iterate stops moving. Each sub-problem is solved exactly on the T x T Gram matrix
(:func:`mtlbench.methods.solvers_qp.nash_ccp`) instead of with cvxpy/ECOS. Where the reference's
solver has no solution the current iterate is kept, as the reference does, and the step's info has
``count_solver_fallback = 1`` and ``count_subproblem_<why> = 1``: ``unbounded`` (certified by a
linear program on the recession cone, where ECOS reports ``unbounded``), ``infeasible`` (no Nash
point, e.g. opposite gradients) or ``unconverged`` (a point neither certified optimal by its KKT
conditions nor from a converged solver run; never a run-away barrier iterate).

Reference defaults: weights recomputed every step (``update_weights_every=1``; on other steps the
previous alpha weights the losses), and after the backward pass the gradient of the *shared*
parameters is clipped to norm ``max_norm = 1.0`` (``clip_grad_norm_(shared_parameters, max_norm)``
in the reference's ``backward``; heads are not clipped). Nash-MTL backpropagates
``sum_i alpha_i L_i``, so heads get the weighted gradient. The weights are alpha itself (not
renormalised: their scale is ``~ 1 / ||g||``), which are the effective coefficients of ``d``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from mtlbench.methods import register_method
from mtlbench.methods.base import Aggregation, GradientMethod, HeadGradient, StepResult
from mtlbench.methods.hyperparameters import Hyperparameter
from mtlbench.methods.solvers import gram
from mtlbench.methods.solvers_qp import nash_ccp

_GRID = {"optim_niter": (20,)}


@register_method
class NashMTL(GradientMethod):
    """Nash bargaining weights ``G^T G alpha = 1/alpha`` by convex approximations (Navon et al. 2022)."""

    name = "nash_mtl"
    title = "Nash-MTL"
    citation = (
        "Navon, Shamsian, Achituve, Maron, Kawaguchi, Chechik & Fetaya, Multi-Task Learning as a "
        "Bargaining Game, ICML 2022"
    )
    default_space = "parameters"
    head_gradient = HeadGradient.WEIGHTED
    gramian_only = True  # combine uses only G G^T and returns a combination of the rows
    hyperparameters = (
        Hyperparameter("optim_niter", 20, "convex approximations per weight update (000 keeps 20)", kind="int", low=1),
        Hyperparameter("update_weights_every", 1, "recompute the weights every this many steps", kind="int", low=1),
        Hyperparameter(
            "max_norm",
            1.0,
            "clip the shared parameters' gradient to this norm after backward (0: no clipping)",
            low=0.0,
        ),
    )
    grids: ClassVar[dict[str, dict[str, tuple[Any, ...]]]] = {"multi_mnist": _GRID, "cityscapes": _GRID, "qm9": _GRID}
    stateless = False
    min_tasks = 1

    def initial_state(self) -> dict[str, Any]:
        """The reference starts from alpha = 1 at step 0."""
        return {"alpha": torch.ones(self.n_tasks, dtype=torch.float64), "step": 0}

    def combine(
        self,
        gradients: Tensor,
        *,
        losses: Tensor | None = None,
        features: Tensor | None = None,
        state: Any = None,
        generator: torch.Generator | None = None,
    ) -> Aggregation:
        state = self.initial_state() if state is None else state
        previous = state["alpha"].detach().to("cpu", torch.float64)
        step = int(state["step"])
        info: dict[str, float] = {}
        if step % int(self.hparams["update_weights_every"]) == 0:
            K = gram(gradients).cpu().numpy()
            alpha_np, iterations, failure = nash_ccp(K, previous.numpy(), int(self.hparams["optim_niter"]))
            alpha = torch.from_numpy(np.asarray(alpha_np, dtype=np.float64))
            info["solver_iterations"] = float(iterations)
            if failure is not None:
                info["count_solver_fallback"] = 1.0
                info[f"count_subproblem_{failure}"] = 1.0
        else:
            alpha = previous
        weights = alpha.to(device=gradients.device, dtype=gradients.dtype)
        return Aggregation(weights @ gradients, weights, {"alpha": alpha, "step": step + 1}, info)

    def backward(
        self,
        losses: Tensor,
        shared_parameters: Iterable[Tensor],
        *,
        features: Tensor | None = None,
        task_parameters: Sequence[Iterable[Tensor]] | None = None,
    ) -> StepResult:
        shared = [p for p in shared_parameters if p.requires_grad]
        step = int(self.state["step"])
        if step % int(self.hparams["update_weights_every"]) != 0:
            # the reference reuses the previous alpha as loss weights: one backward pass
            alpha = self.state["alpha"]
            (alpha.to(losses) * losses).sum().backward()
            self.state = {"alpha": alpha, "step": step + 1}
            result = StepResult(alpha.to(losses).detach(), {})
        else:
            result = super().backward(losses, shared, features=features, task_parameters=task_parameters)
        max_norm = float(self.hparams["max_norm"])
        if max_norm > 0 and shared:
            norm = torch.nn.utils.clip_grad_norm_(shared, max_norm)
            result.info["shared_grad_norm"] = float(norm)
        return result

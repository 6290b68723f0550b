"""UW-O: uncertainty weighting with the analytically optimal uncertainties.

Elich et al. (001), *Challenging Common Assumptions in Multi-task Learning*, section 4.1.3 and
Appendix A1.1. Minimising the Laplace UW term L_t / sigma_t + log sigma_t over sigma_t gives
sigma_t = L_t (eq. 1, eqs. 8-10); plugging it back with a stop-gradient sg gives (eq. 2 = eq. 12)

    L = sum_t L_t / sg[L_t]  (+ a constant),

so the effective coefficients are c_t = 1 / L_t, computed from the current losses each step. A
task-specific loss scale alpha_t cancels (eq. 13): the update is invariant to loss scalings.

The Gaussian and Boltzmann forms of UW give the optimum coefficient 1 / (2 L_t) instead, a global
factor 1/2 when every task has the same form; mtlbench implements eq. 2 as printed. The gradient
equals that of SI (sum_t log L_t; Navon et al. 2022), which reports normalised weights instead.
The reported weights are the effective coefficients 1 / L_t (not renormalised, as for UW). Losses
are floored at 1e-12 before dividing.
"""

from __future__ import annotations

from torch import Tensor

from mtlbench.methods import register_method
from mtlbench.methods.base import HeadGradient, LossWeightingMethod, MethodKind

FLOOR = 1e-12


@register_method
class OptimalUncertaintyWeighting(LossWeightingMethod):
    """sum_t L_t / sg[L_t] (Elich et al., eq. 2): weights 1 / L_t from the current losses."""

    name = "uw_optimal"
    title = "UW-O"
    citation = "Elich et al., Challenging Common Assumptions in Multi-task Learning, 2023, eq. 2"
    kind = MethodKind.LOSS
    head_gradient = HeadGradient.WEIGHTED

    def loss_weights(self, losses: Tensor) -> Tensor:
        return 1.0 / losses.detach().clamp_min(FLOOR)

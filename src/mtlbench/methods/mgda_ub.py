"""MGDA-UB: MGDA on the gradients w.r.t. the shared representation (an upper bound).

Sener & Koltun (2018), *Multi-Task Learning as Multi-Objective Optimization*, NeurIPS, section 3.3
(eq. 5-6 and Theorem 1): with shared representation z = f(x; theta_sh), the min-norm problem is
solved on the per-task gradients dL_i/dz (flattened over the batch, as their code and Gama &
Grassi's do) instead of the shared-parameter gradients, which costs one backward per task only
down to z. The weights alpha* of the normalised z-gradients are then used on the losses:
theta_sh receives the gradient of sum_i alpha_i L_i, i.e. the raw z-gradients combined with alpha
(``direction=raw``, as both reference implementations; c_i = alpha_i, summing to 1).

Same options as :mod:`mtlbench.methods.mgda` (normalisation ``loss+`` by default); heads get their
plain own-task gradient (Gama & Grassi's ``standard_head_backward``).
"""

from __future__ import annotations

from mtlbench.methods import register_method
from mtlbench.methods.base import HeadGradient
from mtlbench.methods.mgda import MGDA, mgda_hyperparameters


@register_method
class MGDAUB(MGDA):
    """MGDA's min-norm weights from the representation gradients (Sener & Koltun 2018, section 3.3)."""

    name = "mgda_ub"
    title = "MGDA-UB"
    citation = MGDA.citation
    default_space = "representation"
    head_gradient = HeadGradient.OWN
    hyperparameters = mgda_hyperparameters("raw")

"""PASCAL-Context multi-task with 002's five tasks: ``S`` (21 classes), ``P`` human parts (7 classes; images
without people are all 255 and ignored), ``Sal`` saliency, ``N`` distilled normals (only on context classes
that map to NYU classes) and ``E`` edges (SEISM maxDist 0.0075). 512x512 (REFERENCE-DATA section 2).

Data: ``mtlbench data prepare pascal_context --raw PATH`` (:mod:`mtlbench.data.pascal_context`), or
``source=synthetic`` (stand-in preset ``PASCAL`` of :mod:`mtlbench.data.scenes_002`). Losses, transforms,
model and the ``val`` = test convention as :mod:`mtlbench.problems.nyud`; saliency is a balanced BCE on
one logit (InvPT's 2-class balanced cross-entropy, the same function of the logit difference) and its
``maxf`` follows the ``saliency`` option: ``invpt`` (002's codebase) or ``mtinet``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from mtlbench.data import pascal_context as pascal_data
from mtlbench.problems import register_problem
from mtlbench.problems.base import ProblemOption, TrainingDefaults
from mtlbench.problems.dense_metrics_002 import SALIENCY_VARIANTS
from mtlbench.problems.nyud import DEFAULTS, Dense002Problem, common_options

PASCAL_DEFAULTS = TrainingDefaults(
    lr=DEFAULTS.lr,
    batch_size=DEFAULTS.batch_size,
    epochs=60,
    optimizer=DEFAULTS.optimizer,
    scheduler=DEFAULTS.scheduler,
    scheduler_gamma=DEFAULTS.scheduler_gamma,
    weight_decay=DEFAULTS.weight_decay,
    grids=DEFAULTS.grids,
)


@register_problem
class PascalContextProblem(Dense002Problem):
    """PASCAL-Context with 002's five tasks (S 21, P 7, Sal, N, E)."""

    name = "pascal_context"
    description = "PASCAL-Context (MTI-Net/InvPT): segmentation 21, human parts 7, saliency, normals, edges (002)"
    options = (
        *common_options("512x512", 64),
        ProblemOption("saliency", "invpt", "saliency maxF variant: invpt or mtinet", choices=SALIENCY_VARIANTS),
    )
    defaults = PASCAL_DEFAULTS
    dataset = "pascal_context"
    dinov2_resolution = "518x518"
    classes = 21
    arrays: ClassVar[dict[str, str]] = {"S": "semseg", "P": "parts", "Sal": "sal", "N": "normals", "E": "edge"}

    def _load_real(self, split: str) -> tuple[Any, dict[str, str]]:
        return pascal_data.load(split)

    def _normals(self, data: Any, index: int) -> np.ndarray:
        values = data.get("normals", index)
        if values.dtype != np.uint8:  # the stand-in stores float vectors
            return values.astype(np.float32)
        valid = data.get("normals_valid", index).astype(bool)
        return np.where(valid[..., None], 2.0 * values.astype(np.float32) / 255.0 - 1.0, 0.0).astype(np.float32)

"""``003-mnist``: Kurin et al. (003), Fig. 1 -- no method beats Unit. Scal. on Multi-MNIST; time per epoch.

The sweep is the built-in ``mnist_003`` (003 section 4.1.1 and its ``scripts/mnist.sh``: CL_CR, the
MGDA-UB LeNet with dropout 0.5, no weight decay, Adam lr 0.01 with ExponentialLR(0.95), 100 epochs, 10
runs, the model of the epoch with the best mean validation accuracy). Cells: each of 003's seven methods'
mean test accuracy (Fig. 1(a)) and time per epoch relative to Unit. Scal. (Fig. 1(b)); 003 prints no
number for either. Claims: "No algorithm outperforms unitary scalarization" (non-superiority within 0.5
accuracy points) and "unitary scalarization also has among the lowest training times".
"""

from __future__ import annotations

from typing import ClassVar

from mtlbench.studies import register_study
from mtlbench.studies.base import ScaleInfo
from mtlbench.studies.p003_common import SEVEN, Accuracy003
from mtlbench.studies.sweep_study import StudySweep, test_scale_overlay

LABEL = "MNIST"


@register_study
class Mnist003(Accuracy003):
    name = "003-mnist"
    paper = "003"
    title = "No method beats Unit. Scal. on Multi-MNIST (CL_CR); time per epoch"
    targets = "Fig. 1"
    problems = ("multi_mnist",)
    description = "mnist_003: 003's seven methods, one configuration each, mean test accuracy and time per epoch."
    scales: ClassVar[dict[str, ScaleInfo]] = {
        "test": ScaleInfo("Unit. Scal. and IMTL, 1 seed, 1 epoch on 200 images", 4, 0.001),
        "smoke": ScaleInfo("7 methods, 512 images, 1 epoch, 2 seeds", 16, 0.05),
        "cpu": ScaleInfo("7 methods, 6,000 images, 10 epochs, 3 seeds", 23, 1.0),
        "paper": ScaleInfo("003's protocol: 60k images, 100 epochs, 10 seeds", 72, 60.0, 8.0),
    }
    label = LABEL
    accuracy_source = "003 Fig. 1(a)"
    time_source = "003 Fig. 1(b)"
    cell_methods = SEVEN
    sweeps = (
        StudySweep(
            "mnist_003",
            LABEL,
            overlays={"test": test_scale_overlay(["unit_scal", "imtl"], problem_options={"train_size": 200})},
        ),
    )

"""Multi-MNIST with the LeNet variant (Gama & Grassi, 000 §3.1; Sener & Koltun 2018).

Tasks: CL / CR classify the left / right digit (cross-entropy; accuracy, higher is better);
RL / RR reconstruct the left / right original digit, 28x28 normalised (MSE loss; test metric MSE,
lower is better, as ``metrics.py`` of Gama's code). Any combination, e.g. ``CL_RR`` (the main
problem), ``CL_CR`` or ``RL_RR``.

Protocol (000 §3.1, Appendix A.6): Adam, batch 256, 100 epochs, ExponentialLR(0.95); grid lr in
{0.01, 0.075, 0.005, 0.0025, 0.001, 0.00075, 0.0005} (as printed and run; 0.075 is probably a typo
for 0.0075) and dropout in {0, 0.1, ..., 0.5}.

The reported MSE is the mean over images of the per-image pixel MSE; Gama's code averages per-batch
means, which differs only through a smaller last batch.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from mtlbench.data.multi_mnist import SPLITS, MultiMnistData, MultiMnistSplit, load_multi_mnist, normalize
from mtlbench.errors import UserInputError, unknown
from mtlbench.models.base import MultiTaskModel
from mtlbench.models.lenet import REPRESENTATION_SIZE, LeNetClassifier, LeNetReconstructor, build_lenet
from mtlbench.problems import register_problem
from mtlbench.problems.base import (
    Batch,
    HeadSpec,
    MeanMetrics,
    Metric,
    Problem,
    ProblemOption,
    Task,
    TrainingDefaults,
)


def optional_int(value: str) -> int | None:
    """``none`` / ``all`` -> None, otherwise an integer."""
    return None if value.strip().lower() in {"", "none", "all"} else int(value)


def _accuracy(output: Tensor, target: Tensor) -> tuple[Tensor, int]:
    return (output.argmax(dim=1) == target).sum(), len(target)


def _image_mse(output: Tensor, target: Tensor) -> tuple[Tensor, int]:
    return (output - target).pow(2).flatten(1).mean(dim=1).sum(), len(target)


def _classification(name: str, side: str) -> Task:
    return Task(
        name=name,
        loss=lambda output, target: F.cross_entropy(output, target),
        metrics=(Metric("acc", higher_is_better=True),),
        make_head=lambda spec: LeNetClassifier(spec.in_features, spec.dropout),
        make_accumulator=lambda: MeanMetrics({"acc": _accuracy}),
        loss_type="cross_entropy",
        description=f"classify the {side} digit (10 classes)",
    )


def _reconstruction(name: str, side: str) -> Task:
    return Task(
        name=name,
        loss=lambda output, target: F.mse_loss(output, target),
        metrics=(Metric("mse", higher_is_better=False),),
        make_head=lambda spec: LeNetReconstructor(spec.in_features, spec.dropout),
        make_accumulator=lambda: MeanMetrics({"mse": _image_mse}),
        loss_type="mse",
        description=f"reconstruct the {side} digit (28x28, normalised)",
    )


_TASKS = {
    "CL": _classification("CL", "left"),
    "CR": _classification("CR", "right"),
    "RL": _reconstruction("RL", "left"),
    "RR": _reconstruction("RR", "right"),
}


@register_problem
class MultiMNIST(Problem):
    """Two overlapping digits; classify and/or reconstruct each (LeNet, 50-d shared representation)."""

    name: ClassVar[str] = "multi_mnist"
    description: ClassVar[str] = "Multi-MNIST (Sener & Koltun): CL, CR classify, RL, RR reconstruct; LeNet"
    options: ClassVar[tuple[ProblemOption, ...]] = (
        ProblemOption(
            "train_size",
            None,
            "train on the first N of the 50,000 training examples (none = all)",
            parse=optional_int,
        ),
        ProblemOption("partner_seed", 0, "seed of the random right partners (defines the splits)", parse=int),
        ProblemOption(
            "partners",
            "seeded",
            "right partners drawn with partner_seed (seeded) or Gama & Grassi's published index files (published)",
            choices=("seeded", "published"),
            keyed_at_default=False,
        ),
    )
    defaults: ClassVar[TrainingDefaults] = TrainingDefaults(
        lr=1e-3,
        batch_size=256,
        epochs=100,
        optimizer="adam",
        scheduler="exponential",
        scheduler_gamma=0.95,
        dropout=0.0,
        weight_decay=0.0,
        grids={
            "lr": [0.01, 0.075, 0.005, 0.0025, 0.001, 0.00075, 0.0005],
            "dropout": [0.0, 0.1, 0.2, 0.3, 0.4, 0.5],
            "weight_decay": [0.0],
        },
    )

    def __init__(self, tasks: str | list[str] = "all", **options: Any) -> None:
        super().__init__(tasks, **options)
        train_size = self.option_values["train_size"]
        if train_size is not None and (
            isinstance(train_size, bool) or not isinstance(train_size, int) or train_size < 1
        ):
            raise UserInputError(f"multi_mnist: option train_size={train_size!r} must be a positive integer or none")
        seed = self.option_values["partner_seed"]
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise UserInputError(f"multi_mnist: option partner_seed={seed!r} must be a non-negative integer")
        self._data: MultiMnistData | None = None

    @classmethod
    def available_tasks(cls) -> dict[str, Task]:
        return dict(_TASKS)

    def prepare(self) -> None:
        if self._data is not None:
            return
        data = load_multi_mnist(self.option_values["partner_seed"], partners=self.option_values["partners"])
        train_size = self.option_values["train_size"]
        available = len(data.splits["train"])
        if train_size is not None and train_size > available:
            raise UserInputError(
                f"multi_mnist: option train_size={train_size} exceeds the {available} training examples"
            )
        self._data = data

    def _split(self, split: str) -> MultiMnistSplit:
        if split not in SPLITS:
            raise unknown("split", split, SPLITS)
        self.prepare()
        assert self._data is not None
        return self._data.splits[split]

    def num_examples(self, split: str) -> int:
        count = len(self._split(split))
        train_size = self.option_values["train_size"]
        return min(count, train_size) if split == "train" and train_size is not None else count

    def batches(
        self, split: str, batch_size: int, *, shuffle: bool = False, generator: torch.Generator | None = None
    ) -> Iterator[Batch]:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise UserInputError(f"batch size {batch_size!r} must be a positive integer")
        data = self._split(split)
        n = self.num_examples(split)
        order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
        for start in range(0, n, batch_size):
            index = order[start : start + batch_size]
            yield Batch(
                normalize(data.images[index]).unsqueeze(1),
                {name: self._target(data, name, index) for name in self.task_names},
                len(index),
            )

    @staticmethod
    def _target(data: MultiMnistSplit, task: str, index: Tensor) -> Tensor:
        if task == "CL":
            return data.labels_left[index]
        if task == "CR":
            return data.labels_right[index]
        if task == "RL":
            return normalize(data.digits[data.left_index[index]])
        return normalize(data.digits[data.right_index[index]])

    def build_model(self, *, dropout: float = 0.0) -> MultiTaskModel:
        if not 0.0 <= dropout < 1.0:
            raise UserInputError(f"dropout {dropout!r} must be in [0, 1)")
        spec = HeadSpec(REPRESENTATION_SIZE, dropout)
        return build_lenet({task.name: task.make_head(spec) for task in self.tasks}, dropout=dropout)

    def data_checksums(self) -> dict[str, str]:
        self.prepare()
        assert self._data is not None
        return dict(self._data.checksums)

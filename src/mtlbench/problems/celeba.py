"""CelebA: 40 binary face attributes from one CIFAR-style ResNet-18 (003 section 4.1.2; MGDA-UB).

Tasks: the 40 attributes by their official names (``5_o_Clock_Shadow`` ... ``Young``; ``all`` = the
40, or any list). Each task is a two-class problem; the metric is its accuracy. Data:
:mod:`mtlbench.data.celeba` (``mtlbench data prepare celeba --raw PATH``); model:
:mod:`mtlbench.models.cifar_resnet` (2048-d shared feature on 64x64 inputs).

Options:

- ``head``: ``logsoftmax`` (003 and MGDA-UB: ``Linear(2048, 2)``, log-softmax, NLL loss) or
  ``sigmoid`` (FAMO's ``experiments/celeba``: one logit, binary cross-entropy, as ``BCEWithLogits``;
  accuracy thresholds the probability at 0.5).
- ``dropout_layout``: ``kurin`` (003's fixed Dropout2d placements and rates) or ``none`` (MGDA-UB).
  The run's ``dropout`` must stay 0: the layout sets the rates.
- ``width``: channels of the first stage (64 in the papers; smaller for tests and CPU runs).
- ``subset`` N: the first N images of each split; ``train_size`` N: the first N training images.

Protocol (003's ``scripts/celeba.sh``, ``../shared/REFERENCE-DATA.md`` section 3): Adam, lr 1e-3
(5e-4 for IMTL and MGDA-UB), batch 128, 50 epochs, ExponentialLR(0.95) per epoch, weight decay
searched in {0, 1e-4, 1e-3}, model selection by the best mean validation accuracy.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mtlbench.data import celeba as celeba_data
from mtlbench.errors import UserInputError
from mtlbench.models.base import MultiTaskModel
from mtlbench.models.cifar_resnet import DROPOUT_LAYOUTS, LogSoftmaxHead, build_cifar_resnet
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

ATTRIBUTES = celeba_data.ATTRIBUTES
HEADS = ("logsoftmax", "sigmoid")
ACCURACY = Metric("acc", higher_is_better=True)


def positive_or_none(value: str) -> int | None:
    """``none``/``all``/``full`` -> None, else a positive integer."""
    if value.strip().lower() in ("", "none", "all", "full"):
        return None
    number = int(value)
    if number < 1:
        raise ValueError(value)
    return number


def positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise ValueError(value)
    return number


# ------------------------------------------------------------------------ binary attribute tasks


def nll_loss(output: Tensor, target: Tensor) -> Tensor:
    """NLL of the log-softmax output (B, 2) for targets in {0, 1} (MGDA-UB's ``nll`` loss)."""
    return F.nll_loss(output, target.long())


def bce_loss(output: Tensor, target: Tensor) -> Tensor:
    """Binary cross-entropy of the logit (B, 1) (FAMO's sigmoid + BCELoss, computed stably)."""
    return F.binary_cross_entropy_with_logits(output.reshape(-1), target.to(output.dtype))


def correct_two_class(output: Tensor, target: Tensor) -> tuple[Tensor, int]:
    return (output.argmax(dim=1) == target.long()).sum(), len(target)


def correct_logit(output: Tensor, target: Tensor) -> tuple[Tensor, int]:
    return ((output.reshape(-1) > 0).long() == target.long()).sum(), len(target)


class SigmoidLogitHead(nn.Module):
    """``Linear(in, 1)``: the logit of a sigmoid head (the sigmoid lives in the loss)."""

    def __init__(self, in_features: int) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear(x)


def binary_task(name: str, head: str, description: str = "") -> Task:
    """A binary attribute task with a log-softmax (NLL) or sigmoid (BCE) head; metric: accuracy."""
    if head not in HEADS:
        raise UserInputError(f"head {head!r} is invalid; choose one of: {', '.join(HEADS)}")
    sigmoid = head == "sigmoid"
    return Task(
        name=name,
        loss=bce_loss if sigmoid else nll_loss,
        metrics=(ACCURACY,),
        make_head=(lambda spec: SigmoidLogitHead(spec.in_features))
        if sigmoid
        else (lambda spec: LogSoftmaxHead(spec.in_features, 2)),
        make_accumulator=lambda: MeanMetrics({"acc": correct_logit if sigmoid else correct_two_class}),
        loss_type="cross_entropy",
        description=description or f"binary attribute {name}",
    )


def check_positive(problem: str, options: dict[str, Any], keys: tuple[str, ...]) -> None:
    for key in keys:
        value = options[key]
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise UserInputError(f"{problem}: option {key}={value!r} must be a positive integer or none")


def index_batches(n: int, batch_size: int, shuffle: bool, generator: torch.Generator | None) -> Iterator[np.ndarray]:
    """Index arrays of the batches of ``range(n)`` (in a random order when ``shuffle``)."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise UserInputError(f"batch size {batch_size!r} must be a positive integer")
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    for start in range(0, n, batch_size):
        yield order[start : start + batch_size].numpy()


# ------------------------------------------------------------------------------------- the problem


@register_problem
class CelebAProblem(Problem):
    """CelebA, 40 attributes, CIFAR-style ResNet-18 (MGDA-UB's model; 003's dropout)."""

    name: ClassVar[str] = "celeba"
    description: ClassVar[str] = "CelebA: 40 binary face attributes, CIFAR-style ResNet-18 (003, MGDA-UB)"
    options: ClassVar[tuple[ProblemOption, ...]] = (
        ProblemOption(
            "head", "logsoftmax", "logsoftmax (Linear(2048,2), NLL) or sigmoid (BCE, as FAMO)", choices=HEADS
        ),
        ProblemOption(
            "dropout_layout", "kurin", "kurin (003's Dropout2d placements) or none (MGDA-UB)", choices=DROPOUT_LAYOUTS
        ),
        ProblemOption("width", 64, "channels of the first ResNet stage (64 in the papers)", parse=positive_int),
        ProblemOption("subset", None, "use the first N images of each split (none = all)", parse=positive_or_none),
        ProblemOption(
            "train_size", None, "train on the first N training images (after subset)", parse=positive_or_none
        ),
    )
    defaults: ClassVar[TrainingDefaults] = TrainingDefaults(
        lr=1e-3,
        batch_size=128,
        epochs=50,
        optimizer="adam",
        scheduler="exponential",
        scheduler_gamma=0.95,
        dropout=0.0,
        weight_decay=0.0,
        grids={"lr": [1e-3], "dropout": [0.0], "weight_decay": [0.0, 1e-4, 1e-3]},
    )

    def __init__(self, tasks: str | list[str] = "all", **options: Any) -> None:
        super().__init__(tasks, **options)
        check_positive(self.name, self.option_values, ("width", "subset", "train_size"))
        head = self.option_values["head"]
        self.tasks = [binary_task(name, head, f"CelebA attribute {name}") for name in self.task_names]
        self._columns = [ATTRIBUTES.index(name) for name in self.task_names]
        self._data: celeba_data.CelebAData | None = None

    @classmethod
    def available_tasks(cls) -> dict[str, Task]:
        return {name: binary_task(name, "logsoftmax", f"CelebA attribute {name}") for name in ATTRIBUTES}

    def prepare(self) -> None:
        if self._data is None:
            self._data = celeba_data.load_celeba()

    def _split(self, split: str) -> celeba_data.CelebASplit:
        if split not in celeba_data.SPLITS:
            raise UserInputError(f"unknown split {split!r}; choose one of: {', '.join(celeba_data.SPLITS)}")
        self.prepare()
        assert self._data is not None
        return self._data.splits[split]

    def num_examples(self, split: str) -> int:
        count = len(self._split(split).attributes)
        for key in ("subset",) + (("train_size",) if split == "train" else ()):
            if self.option_values[key] is not None:
                count = min(count, self.option_values[key])
        return count

    def batches(
        self, split: str, batch_size: int, *, shuffle: bool = False, generator: torch.Generator | None = None
    ) -> Iterator[Batch]:
        data = self._split(split)
        for index in index_batches(self.num_examples(split), batch_size, shuffle, generator):
            ordered = np.sort(index)  # the memory map reads faster in order; the batch keeps the shuffled order
            rank = np.argsort(np.argsort(index))
            images = torch.from_numpy(np.ascontiguousarray(data.images[ordered][rank]))
            labels = torch.from_numpy(data.attributes[index][:, self._columns].astype(np.int64))
            yield Batch(
                celeba_data.normalize(images),
                dict(zip(self.task_names, labels.T.contiguous(), strict=True)),
                len(index),
            )

    def build_model(self, *, dropout: float = 0.0) -> MultiTaskModel:
        if dropout:
            raise UserInputError(
                f"celeba: dropout={dropout!r} is not used; the option dropout_layout sets it (kurin or none)"
            )
        width = self.option_values["width"]
        encoder_features = 8 * width * (celeba_data.SIZE // 32) ** 2
        spec = HeadSpec(encoder_features, 0.0)
        heads = {task.name: task.make_head(spec) for task in self.tasks}
        return build_cifar_resnet(
            heads, width=width, dropout_layout=self.option_values["dropout_layout"], image_size=celeba_data.SIZE
        )

    def data_checksums(self) -> dict[str, str]:
        self.prepare()
        assert self._data is not None
        return dict(self._data.checksums)

"""``synthetic_attributes``: generated images with 40 binary attributes known by construction (CelebA's stand-in).

The offline stand-in of :mod:`mtlbench.problems.celeba`: the same T = 40 binary tasks, heads,
metric and CIFAR-style ResNet-18 (at a small width), on images generated here.

Construction (every number below is a module constant the tests read):

- Eight latent binary factors z_g ~ Bernoulli(p_g), independent, with base rates ``BASE_RATES``
  (imbalanced like CelebA's attributes).
- Attribute j = 5 g + k (k = 0..4) belongs to group g: a_j = z_g XOR f_j for k = 0, 1, 2 and
  a_j = 1 - (z_g XOR f_j) for k = 3, 4, with independent flips f_j ~ Bernoulli(``FLIP``). So
  attributes of a group with the same ``SIGN`` are positively correlated, those of opposite signs
  anti-correlated, and attributes of different groups independent.
- Each attribute has a fixed smooth pattern P_j (an 8x8x3 Gaussian field, bilinearly upsampled)
  and an ``AMPLITUDE``: easy attributes (k = 0, 3) 1.0, medium (k = 2) 0.35, hard (k = 1, 4) 0.12.
  The image is sum_j AMPLITUDE_j (2 a_j - 1) P_j plus smooth Gaussian noise (``NOISE`` per
  coefficient of the same 8x8x3 field) and a little white noise, scaled to unit variance. A linear
  probe reads an easy attribute almost perfectly and a hard one much worse (tested).

Names: ``A0`` .. ``A39`` (``all`` = the forty). The data of a task never depends on which other
tasks are chosen (all forty attributes are always drawn).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from mtlbench.errors import UserInputError
from mtlbench.models.base import MultiTaskModel
from mtlbench.models.cifar_resnet import DROPOUT_LAYOUTS, build_cifar_resnet, feature_size
from mtlbench.problems import register_problem
from mtlbench.problems.base import Batch, HeadSpec, Problem, ProblemOption, Task, TrainingDefaults
from mtlbench.problems.celeba import HEADS, binary_task, check_positive, index_batches, positive_int

N_ATTRIBUTES = 40
GROUP_SIZE = 5
N_GROUPS = N_ATTRIBUTES // GROUP_SIZE
NAMES = tuple(f"A{j}" for j in range(N_ATTRIBUTES))
BASE_RATES = (0.5, 0.3, 0.5, 0.2, 0.6, 0.4, 0.5, 0.15)
FLIP = 0.1
#: +1: a_j follows its group's factor; -1: a_j follows its negation
SIGN = tuple(1 if j % GROUP_SIZE < 3 else -1 for j in range(N_ATTRIBUTES))
GROUP = tuple(j // GROUP_SIZE for j in range(N_ATTRIBUTES))
_AMPLITUDE_BY_POSITION = (1.0, 0.12, 0.35, 1.0, 0.12)
AMPLITUDE = tuple(_AMPLITUDE_BY_POSITION[j % GROUP_SIZE] for j in range(N_ATTRIBUTES))
EASY = tuple(j for j in range(N_ATTRIBUTES) if AMPLITUDE[j] == 1.0)
HARD = tuple(j for j in range(N_ATTRIBUTES) if AMPLITUDE[j] == 0.12)
FIELD = 8  # the patterns and the smooth noise live on an 8x8x3 grid
NOISE = 3.0
WHITE_NOISE = 0.1


def generate_attributes(n: int, generator: torch.Generator) -> torch.Tensor:
    """(n, 40) int64 attributes in {0, 1} drawn as the module docstring says."""
    rates = torch.tensor(BASE_RATES)
    latent = (torch.rand(n, N_GROUPS, generator=generator) < rates).long()
    flips = (torch.rand(n, N_ATTRIBUTES, generator=generator) < FLIP).long()
    follows = latent[:, list(GROUP)] ^ flips
    negated = torch.tensor([s < 0 for s in SIGN])
    return torch.where(negated, 1 - follows, follows)


def upsample(field: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear upsampling of an (n, 3, 8, 8) field, rescaled so that a white field keeps unit variance."""
    basis = torch.eye(FIELD * FIELD).view(-1, 1, FIELD, FIELD)
    gain = F.interpolate(basis, size=(size, size), mode="bilinear", align_corners=False).pow(2).sum(0).mean().sqrt()
    return F.interpolate(field, size=(size, size), mode="bilinear", align_corners=False) / gain


def patterns(image_size: int, generator: torch.Generator) -> torch.Tensor:
    """(40, 3, S, S) smooth patterns: 8x8x3 standard Gaussian fields, bilinearly upsampled (unit variance)."""
    return upsample(torch.randn(N_ATTRIBUTES, 3, FIELD, FIELD, generator=generator), image_size)


def render(attributes: torch.Tensor, bank: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Images (n, 3, S, S) for ``attributes`` (n, 40) from the pattern ``bank``, noise included, unit variance."""
    n, size = attributes.shape[0], bank.shape[-1]
    signs = (2 * attributes - 1).float() * torch.tensor(AMPLITUDE)
    images = torch.einsum("nj,jchw->nchw", signs, bank)
    smooth = torch.randn(n, 3, FIELD, FIELD, generator=generator) * NOISE
    images += upsample(smooth, size)
    images += WHITE_NOISE * torch.randn(n, 3, size, size, generator=generator)
    scale = (sum(a * a for a in AMPLITUDE) + NOISE**2 + WHITE_NOISE**2) ** 0.5
    return images / scale


@register_problem
class SyntheticAttributes(Problem):
    """Generated images with 40 binary attributes in correlated and anti-correlated groups (easy and hard)."""

    name: ClassVar[str] = "synthetic_attributes"
    description: ClassVar[str] = (
        "generated images, 40 binary attributes (correlated groups, easy/hard); CelebA's offline stand-in"
    )
    options: ClassVar[tuple[ProblemOption, ...]] = (
        ProblemOption("train_size", 512, "training images", parse=positive_int),
        ProblemOption("eval_size", 256, "validation and test images each", parse=positive_int),
        ProblemOption("image_size", 32, "image side (a multiple of 32)", parse=positive_int),
        ProblemOption("width", 8, "channels of the first ResNet stage (64 = CelebA's model)", parse=positive_int),
        ProblemOption("head", "logsoftmax", "logsoftmax (NLL) or sigmoid (BCE)", choices=HEADS),
        ProblemOption("dropout_layout", "none", "kurin (003's Dropout2d placements) or none", choices=DROPOUT_LAYOUTS),
        ProblemOption("data_seed", 0, "seed of the generated data", parse=int),
    )
    defaults: ClassVar[TrainingDefaults] = TrainingDefaults(
        lr=1e-3,
        batch_size=64,
        epochs=5,
        optimizer="adam",
        scheduler="exponential",
        scheduler_gamma=0.95,
        grids={"lr": [1e-3], "dropout": [0.0], "weight_decay": [0.0, 1e-4, 1e-3]},
    )

    def __init__(self, tasks: str | list[str] = "all", **options: Any) -> None:
        super().__init__(tasks, **options)
        check_positive(self.name, self.option_values, ("train_size", "eval_size", "image_size", "width"))
        size = self.option_values["image_size"]
        if size % 32:
            raise UserInputError(f"synthetic_attributes: option image_size={size} must be a multiple of 32")
        head = self.option_values["head"]
        self.tasks = [binary_task(name, head, self._describe(name)) for name in self.task_names]
        self._columns = [NAMES.index(name) for name in self.task_names]
        self._data: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    @staticmethod
    def _describe(name: str) -> str:
        j = NAMES.index(name)
        level = {1.0: "easy", 0.35: "medium", 0.12: "hard"}[AMPLITUDE[j]]
        return f"group {GROUP[j]}, sign {SIGN[j]:+d}, {level}"

    @classmethod
    def available_tasks(cls) -> dict[str, Task]:
        return {name: binary_task(name, "logsoftmax", cls._describe(name)) for name in NAMES}

    def prepare(self) -> None:
        if self._data:
            return
        options = self.option_values
        generator = torch.Generator().manual_seed(options["data_seed"])
        bank = patterns(options["image_size"], generator)
        sizes = {"train": options["train_size"], "val": options["eval_size"], "test": options["eval_size"]}
        for split, n in sizes.items():
            attributes = generate_attributes(n, generator)
            self._data[split] = (render(attributes, bank, generator), attributes)

    def all_attributes(self, split: str) -> torch.Tensor:
        """The (n, 40) attributes of a split (all forty, whatever the tasks)."""
        self.prepare()
        return self._split(split)[1]

    def _split(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        self.prepare()
        if split not in self._data:
            raise UserInputError(f"unknown split {split!r}; choose one of: {', '.join(self._data)}")
        return self._data[split]

    def num_examples(self, split: str) -> int:
        return self._split(split)[0].shape[0]

    def batches(
        self, split: str, batch_size: int, *, shuffle: bool = False, generator: torch.Generator | None = None
    ) -> Iterator[Batch]:
        images, attributes = self._split(split)
        for index in index_batches(images.shape[0], batch_size, shuffle, generator):
            rows = torch.from_numpy(np.asarray(index))
            labels = attributes[rows][:, self._columns].T.contiguous()
            yield Batch(images[rows], dict(zip(self.task_names, labels, strict=True)), len(index))

    def build_model(self, *, dropout: float = 0.0) -> MultiTaskModel:
        if dropout:
            raise UserInputError(
                f"synthetic_attributes: dropout={dropout!r} is not used; the option dropout_layout sets it"
            )
        width, size = self.option_values["width"], self.option_values["image_size"]
        spec = HeadSpec(feature_size(width, size), 0.0)
        heads = {task.name: task.make_head(spec) for task in self.tasks}
        return build_cifar_resnet(
            heads, width=width, dropout_layout=self.option_values["dropout_layout"], image_size=size
        )

"""``synthetic``: a generated multi-task regression problem with any number of tasks (up to 16).

Inputs x ~ N(0, I_8); each task t regresses y_t = s_t * (a_t . tanh(W x)) + noise, with the task
scales s_t in {0.1, 1, 10} cycling so that gradient magnitudes differ across tasks, and task vectors
a_t correlated through a shared component (``similarity``) so that gradients partly conflict. It is
small enough for tests and CPU benchmarks (the T=11 step-overhead benchmark uses it) and serves as
the documented example of a user-defined problem.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn

from mtlbench.models.base import MultiTaskModel
from mtlbench.problems import register_problem
from mtlbench.problems.base import Batch, HeadSpec, MeanMetrics, Metric, Problem, ProblemOption, Task, TrainingDefaults

MAX_TASKS = 16
INPUT_SIZE = 8
LATENT_SIZE = 6


def _mae(output: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, int]:
    return (output.squeeze(-1) - target).abs().sum(), target.shape[0]


def _task(name: str) -> Task:
    return Task(
        name=name,
        loss=lambda output, target: nn.functional.mse_loss(output.squeeze(-1), target),
        metrics=(Metric("mae", higher_is_better=False),),
        make_head=lambda spec: nn.Linear(spec.in_features, 1),
        make_accumulator=lambda: MeanMetrics({"mae": _mae}),
        loss_type="mse",
        description="scalar regression",
    )


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError(text)
    return value


@register_problem
class SyntheticRegression(Problem):
    """Generated regression tasks T0..T15 sharing a latent representation."""

    name = "synthetic"
    description = "generated multi-task regression (T0..T15), any number of tasks; for tests and benchmarks"
    options = (
        ProblemOption("train_size", 512, "training examples", parse=_positive_int),
        ProblemOption("eval_size", 256, "validation and test examples each", parse=_positive_int),
        ProblemOption("hidden", 32, "width of the shared encoder", parse=_positive_int),
        ProblemOption("similarity", 0.5, "shared component of the task vectors in [0, 1]", parse=float),
        ProblemOption("data_seed", 0, "seed of the generated data", parse=int),
    )
    defaults = TrainingDefaults(
        lr=1e-2,
        batch_size=64,
        epochs=5,
        optimizer="adam",
        scheduler="none",
        grids={"lr": [1e-2, 1e-3], "dropout": [0.0], "weight_decay": [0.0]},
    )

    @classmethod
    def available_tasks(cls) -> dict[str, Task]:
        return {f"T{i}": _task(f"T{i}") for i in range(MAX_TASKS)}

    def prepare(self) -> None:
        if hasattr(self, "_data"):
            return
        options = self.option_values
        generator = torch.Generator().manual_seed(options["data_seed"])
        projection = torch.randn(INPUT_SIZE, LATENT_SIZE, generator=generator) / INPUT_SIZE**0.5
        common = torch.randn(LATENT_SIZE, generator=generator)
        similarity = float(options["similarity"])
        sizes = {"train": options["train_size"], "val": options["eval_size"], "test": options["eval_size"]}
        vectors = {}
        for index in range(MAX_TASKS):
            own = torch.randn(LATENT_SIZE, generator=generator)
            vectors[f"T{index}"] = (similarity * common + (1 - similarity) * own) * 10.0 ** (index % 3 - 1)
        self._data = {}
        for split, size in sizes.items():
            x = torch.randn(size, INPUT_SIZE, generator=generator)
            latent = torch.tanh(x @ projection)
            # noise is drawn for every task, so a task's data never depends on which other tasks are chosen
            noise = {name: 0.05 * torch.randn(size, generator=generator) for name in vectors}
            targets = {name: latent @ vectors[name] + noise[name] for name in self.task_names}
            self._data[split] = (x, targets)

    def num_examples(self, split: str) -> int:
        self.prepare()
        return self._data[split][0].shape[0]

    def batches(
        self, split: str, batch_size: int, *, shuffle: bool = False, generator: torch.Generator | None = None
    ) -> Iterator[Batch]:
        self.prepare()
        x, targets = self._data[split]
        n = x.shape[0]
        order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
        for start in range(0, n, batch_size):
            index = order[start : start + batch_size]
            yield Batch(x[index], {name: target[index] for name, target in targets.items()}, len(index))

    def build_model(self, *, dropout: float = 0.0) -> MultiTaskModel:
        hidden = self.option_values["hidden"]
        encoder = nn.Sequential(
            nn.Linear(INPUT_SIZE, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, hidden), nn.ReLU()
        )
        spec = HeadSpec(hidden, dropout)
        heads = {task.name: task.make_head(spec) for task in self.tasks}
        return MultiTaskModel(encoder, heads, representation_size=hidden)

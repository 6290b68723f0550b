"""The seams every benchmark problem plugs into: metrics, tasks, batches and the problem itself."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import torch
from torch import Tensor, nn

from mtlbench.errors import UserInputError, unknown
from mtlbench.models.base import MultiTaskModel


@dataclass(frozen=True)
class Metric:
    """A scalar test metric of a task; Delta_m negates the relative change where lower is better."""

    name: str
    higher_is_better: bool


class MetricAccumulator(Protocol):
    """Accumulates a task's metrics over the batches of a split."""

    def update(self, output: Tensor, target: Any) -> None: ...

    def compute(self) -> dict[str, float]: ...


class MeanMetrics:
    """Accumulator for metrics that are means over samples.

    ``functions`` maps metric names to ``f(output, target) -> (sum over the batch, count)``.
    """

    def __init__(self, functions: Mapping[str, Callable[[Tensor, Any], tuple[Tensor, int]]]) -> None:
        self._functions = dict(functions)
        self._sums = dict.fromkeys(self._functions, 0.0)
        self._counts = dict.fromkeys(self._functions, 0)

    def update(self, output: Tensor, target: Any) -> None:
        for name, function in self._functions.items():
            total, count = function(output, target)
            self._sums[name] += float(total)
            self._counts[name] += int(count)

    def compute(self) -> dict[str, float]:
        return {
            name: self._sums[name] / self._counts[name] if self._counts[name] else math.nan for name in self._functions
        }


@dataclass(frozen=True)
class HeadSpec:
    """What a head factory is told: the size of the shared representation and the dropout rate."""

    in_features: int
    dropout: float = 0.0


@dataclass(frozen=True)
class Task:
    """One task of a problem: its loss, its metrics and how to build its head.

    ``loss_type`` ('cross_entropy', 'mse', 'l1') selects the likelihood form of uncertainty
    weighting (Kendall et al. 2018: Boltzmann, Gaussian, Laplace).
    """

    name: str
    loss: Callable[[Tensor, Any], Tensor]
    metrics: tuple[Metric, ...]
    make_head: Callable[[HeadSpec], nn.Module]
    make_accumulator: Callable[[], MetricAccumulator]
    loss_type: str = "mse"
    description: str = ""

    def metric(self, name: str) -> Metric:
        for metric in self.metrics:
            if metric.name == name:
                return metric
        raise unknown(f"metric of task {self.name}", name, [m.name for m in self.metrics])


@dataclass
class Batch:
    """A batch: model inputs, one target per task name, and the number of examples."""

    inputs: Any
    targets: dict[str, Any]
    size: int

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        def move(value: Any) -> Any:
            return value.to(device, non_blocking=non_blocking) if hasattr(value, "to") else value

        return Batch(move(self.inputs), {k: move(v) for k, v in self.targets.items()}, self.size)


@dataclass(frozen=True)
class ProblemOption:
    """A configuration option of a problem (it changes the numbers, so it keys the references).

    ``keyed_at_default`` False leaves the option out of :meth:`Problem.reference_config` while it has
    its default value: an option added later keeps the stored references' keys valid.
    """

    name: str
    default: Any
    doc: str
    parse: Callable[[str], Any] = str
    choices: tuple[Any, ...] | None = None
    keyed_at_default: bool = True

    def coerce(self, value: Any, problem: str) -> Any:
        try:
            parsed = self.parse(value) if isinstance(value, str) and self.parse is not str else value
        except (TypeError, ValueError):
            raise UserInputError(
                f"{problem}: option {self.name}={value!r} is not a valid {self.parse.__name__}"
            ) from None
        if self.choices is not None and parsed not in self.choices:
            allowed = ", ".join(map(str, self.choices))
            raise UserInputError(f"{problem}: option {self.name}={value!r} is not allowed; choose one of: {allowed}")
        return parsed


@dataclass(frozen=True)
class TrainingDefaults:
    """A problem's default protocol (000 section 3 and Appendix A.6)."""

    lr: float
    batch_size: int
    epochs: int
    optimizer: str = "adam"
    scheduler: str = "exponential"
    scheduler_gamma: float = 0.95
    dropout: float = 0.0
    weight_decay: float = 0.0
    grids: Mapping[str, Sequence[Any]] = field(default_factory=dict)


def task_splits(text: str, available: Sequence[str]) -> list[list[str]]:
    """Every way of reading ``text`` as known task names joined by ``_`` (names may contain ``_``).

    ``task_splits("CL_RR", ["CL", "RR"]) == [["CL", "RR"]]``; CelebA's ``5_o_Clock_Shadow_Bald`` reads as
    ``["5_o_Clock_Shadow", "Bald"]``. More than one reading means the string is ambiguous.
    """
    known = set(available)
    parts = text.split("_")
    # readings[i]: the readings of parts[i:] (built from the end: O(len(parts)^2) joins)
    readings: list[list[list[str]]] = [[] for _ in range(len(parts))] + [[[]]]
    for start in range(len(parts) - 1, -1, -1):
        for stop in range(start + 1, len(parts) + 1):
            name = "_".join(parts[start:stop])
            if name in known:
                readings[start].extend([name, *rest] for rest in readings[stop])
    return readings[0]


def parse_task_names(spec: str | Sequence[str], available: Sequence[str], problem: str) -> list[str]:
    """Task names from ``all``, a list, a comma-separated string (``CL,RR``) or an ``_``-joined one (``CL_RR``).

    An ``_``-joined string is split by matching the problem's known task names, which may themselves
    contain ``_`` (CelebA's ``5_o_Clock_Shadow``); a string with two readings is an error that lists
    them (use commas then). Each name is checked against ``available``.
    """
    if isinstance(spec, str):
        text = spec.strip()
        if text == "all":
            return list(available)
        if "," in text:
            names = [name.strip() for name in text.split(",")]
        elif text in available:
            names = [text]
        else:
            readings = task_splits(text, available) if text else []
            if len(readings) > 1:
                shown = "; ".join(",".join(reading) for reading in readings)
                raise UserInputError(
                    f"{problem}: task list {spec!r} is ambiguous: it reads as {shown}; separate the names with ','"
                )
            names = readings[0] if readings else text.split("_")
    else:
        names = list(spec)
        if names == ["all"]:
            return list(available)
    if not names or any(not name for name in names):
        raise UserInputError(f"{problem}: task list {spec!r} is empty or malformed; use names joined by '_' or ','")
    for name in names:
        if name not in available:
            raise unknown(f"task of {problem}", name, available)
    if len(set(names)) != len(names):
        raise UserInputError(f"{problem}: task list {spec!r} names a task twice")
    return names


class Problem(ABC):
    """A benchmark problem: data splits, a task set, and a shared-encoder model with one head per task.

    Subclasses set the class attributes and implement the abstract methods; they are registered in
    ``mtlbench.problems.PROBLEMS`` (or through the ``mtlbench.problems`` entry-point group).
    """

    name: ClassVar[str]
    description: ClassVar[str] = ""
    options: ClassVar[tuple[ProblemOption, ...]] = ()
    defaults: ClassVar[TrainingDefaults]
    splits: ClassVar[tuple[str, ...]] = ("train", "val", "test")

    def __init__(self, tasks: str | Sequence[str] = "all", **options: Any) -> None:
        catalog = self.available_tasks()
        self.task_names = parse_task_names(tasks, list(catalog), self.name)
        self.tasks: list[Task] = [catalog[name] for name in self.task_names]
        known = {option.name: option for option in self.options}
        for key in options:
            if key not in known:
                raise unknown(f"option of problem {self.name}", key, known)
        self.option_values: dict[str, Any] = {
            name: option.coerce(options.get(name, option.default), self.name) for name, option in known.items()
        }

    @classmethod
    @abstractmethod
    def available_tasks(cls) -> dict[str, Task]:
        """Every task the problem defines, by name (a name may contain ``_``: task lists are split by matching)."""

    @abstractmethod
    def prepare(self) -> None:
        """Load (and if needed construct) the data; raise MissingDataError naming the fetch command."""

    @abstractmethod
    def num_examples(self, split: str) -> int: ...

    @abstractmethod
    def batches(
        self, split: str, batch_size: int, *, shuffle: bool = False, generator: torch.Generator | None = None
    ) -> Iterator[Batch]:
        """Iterate over a split in batches (shuffled with ``generator`` when asked)."""

    @abstractmethod
    def build_model(self, *, dropout: float = 0.0) -> MultiTaskModel: ...

    def data_checksums(self) -> dict[str, str]:
        """Checksums of the data files the problem read (recorded in every run's provenance)."""
        return {}

    def config(self) -> dict[str, Any]:
        """Everything that defines the problem instance, tasks included."""
        return {"problem": self.name, "tasks": list(self.task_names), **self.option_values}

    def reference_config(self) -> dict[str, Any]:
        """The problem configuration that single-task references are keyed by (tasks excluded)."""
        unkeyed = {o.name for o in self.options if not o.keyed_at_default and self.option_values[o.name] == o.default}
        return {"problem": self.name, **{k: v for k, v in self.option_values.items() if k not in unkeyed}}

    def with_tasks(self, tasks: Sequence[str]) -> Problem:
        """The same problem instance restricted to other tasks (used for single-task references)."""
        return type(self)(list(tasks), **self.option_values)

"""One run's configuration: (problem, tasks, method, hyperparameters, seed), validated with one-line errors."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from mtlbench.errors import UserInputError
from mtlbench.methods import get as get_method
from mtlbench.problems import PROBLEMS
from mtlbench.problems.base import parse_task_names

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULERS = ("exponential", "plateau", "step", "poly", "none")
RUN_KINDS = ("multi_task", "reference")
#: the objective scale of a run: the sum of the losses, or every gradient of the step divided by T
#: (``mean``), or only the shared parameters' gradient divided by T (``mean_shared``, 000's CAGrad)
OBJECTIVES = ("sum", "mean", "mean_shared")
#: what ReduceLROnPlateau monitors (see RunConfig)
PLATEAU_MONITORS = ("train_loss", "last_batch", "val_loss", "val_delta_m")
#: fields dropped from :meth:`RunConfig.to_dict` while at these defaults (so stored runs keep their hashes)
HASH_OMITTED_DEFAULTS: dict[str, Any] = {
    "grad_metrics_every": 0,
    "objective": "sum",
    "selection": "delta_m",
    "grad_clip": 0.0,
    "iterations": 0,
    "eval_every": 0,
    "grad_memory": 0.0,
}
#: exponent of the poly schedule, lr = base * (1 - step / total)^0.9 (InvPT ``utils/utils.py``, MTI-Net)
POLY_POWER = 0.9


@dataclass
class RunConfig:
    """Everything that defines a run. ``None`` fields take the problem's defaults in :meth:`resolved`.

    ``scheduler`` 'exponential' is ExponentialLR(gamma) stepped each epoch; 'plateau' is
    ReduceLROnPlateau(factor=scheduler_gamma, patience 5, min_lr 1e-5) monitoring ``plateau_monitor``:
    'train_loss' the summed training loss averaged over the epoch; 'last_batch' the summed training
    loss of the epoch's last mini-batch (Gama's code, 000); 'val_loss' the summed validation loss;
    'val_delta_m' minus the validation Delta_m (nash-mtl's QM9 trainer; needs a reference). 'step' is
    StepLR(step_size, gamma); 'poly' is lr * (1 - step / total_steps)^0.9 stepped after every training
    step (002 Table IX; InvPT's ``poly`` schedule); 'none' keeps the lr constant.

    ``iterations`` > 0 trains for that many steps instead of ``epochs`` (002's HRNet/ViT setups: 40k),
    drawing batches from consecutive shuffled passes over the training set, and evaluates every
    ``eval_every`` steps (0 = once, at the end): each evaluation block is one entry of the history (an
    "epoch" of the record), so ``epochs`` becomes ceil(iterations / eval_every). ``grad_clip`` > 0 clips
    the global L2 norm of the model's gradients to it before the optimizer step
    (``torch.nn.utils.clip_grad_norm_``, InvPT's ``grad_clip``; 10 in 002's ViT setup; 0 = off).

    ``objective`` 'sum' (default) trains on the sum of the losses; 'mean' divides every gradient the
    step writes into the main optimizer (shared parameters, heads, method parameters such as UW's)
    by T after the method's combination and any clipping, reported weights unchanged; 'mean_shared'
    divides only the shared parameters' gradient. ``selection`` is a rule of
    :mod:`mtlbench.training.selection` (default ``delta_m``). Single-task runs always train on
    'sum' (the same numbers at T = 1) and references always select per metric.

    ``grad_memory`` > 0 is the gradient engine's memory budget in MiB (``--grad-memory``): a method whose
    combination needs only the Gramian of the per-task gradients (``gramian_only``, on the shared
    parameters) takes G G^T block by block, blocks of parameters whose T gradients fit in it, whenever the
    (T, D) matrix would not (:mod:`mtlbench.methods.gradients`, ``max_gradient_bytes``): the same numbers to
    float rounding, less memory, more backward passes. Other methods have no such path; for them the field
    is reset to 0 (one config hash, as the objective at T = 1).
    """

    problem: str
    tasks: list[str]
    method: str = "unit_scal"
    method_params: dict[str, Any] = field(default_factory=dict)
    problem_options: dict[str, Any] = field(default_factory=dict)
    lr: float | None = None
    dropout: float | None = None
    weight_decay: float | None = None
    epochs: int | None = None
    batch_size: int | None = None
    optimizer: str | None = None
    momentum: float = 0.9
    scheduler: str | None = None
    scheduler_gamma: float | None = None
    step_size: int = 30
    plateau_monitor: str = "train_loss"
    seed: int = 0
    device: str = "auto"
    threads: int | None = None
    kind: str = "multi_task"
    eval_batch_size: int | None = None
    #: record gradient diagnostics every N steps of an epoch (0 = off); see mtlbench.training.diagnostics
    grad_metrics_every: int = 0
    objective: str = "sum"
    selection: str = "delta_m"
    grad_clip: float = 0.0
    iterations: int = 0
    eval_every: int = 0
    #: memory budget (MiB) of the per-task gradients of a step (0 = none): see the class docstring
    grad_memory: float = 0.0

    def resolved(self) -> RunConfig:
        """A copy with the problem's defaults filled in, the device and threads fixed, and all values checked."""
        problem_cls = PROBLEMS[self.problem]
        defaults = problem_cls.defaults
        tasks = parse_task_names(
            self.tasks if isinstance(self.tasks, str) else list(self.tasks),
            list(problem_cls.available_tasks()),
            self.problem,
        )
        method_cls = get_method(self.method)
        if len(tasks) < method_cls.min_tasks:
            raise UserInputError(f"{self.method} needs at least {method_cls.min_tasks} tasks; got {'_'.join(tasks)}")
        params = method_cls.validate(self.method_params)
        config = dataclasses.replace(
            self,
            tasks=tasks,
            method_params=params,
            lr=defaults.lr if self.lr is None else self.lr,
            dropout=defaults.dropout if self.dropout is None else self.dropout,
            weight_decay=defaults.weight_decay if self.weight_decay is None else self.weight_decay,
            epochs=defaults.epochs if self.epochs is None else self.epochs,
            batch_size=defaults.batch_size if self.batch_size is None else self.batch_size,
            optimizer=defaults.optimizer if self.optimizer is None else self.optimizer,
            scheduler=defaults.scheduler if self.scheduler is None else self.scheduler,
            scheduler_gamma=defaults.scheduler_gamma if self.scheduler_gamma is None else self.scheduler_gamma,
            device=str(resolve_device(self.device)),
            threads=torch.get_num_threads() if self.threads is None else self.threads,
        )
        config.eval_batch_size = config.eval_batch_size or max(config.batch_size, 256)
        if config.iterations > 0:
            block = config.eval_every or config.iterations
            config.epochs = -(-config.iterations // block)
        if len(tasks) == 1 and config.objective in OBJECTIVES:
            config.objective = "sum"  # at T = 1 every scale gives the same numbers: one hash
        if config.kind == "reference":
            config.selection = "delta_m"  # references select per metric whatever the run's rule
        config._check()
        if not _budgets_gradients(method_cls, params):
            config.grad_memory = 0.0  # no Gramian path: the budget changes nothing, one hash
        if config.selection != "delta_m":
            from mtlbench.training.selection import check_metric, parse_selection

            catalog = problem_cls.available_tasks()
            directions = {t: {m.name: m.higher_is_better for m in catalog[t].metrics} for t in tasks}
            check_metric(parse_selection(config.selection), directions, self.problem)
        return config

    def _check(self) -> None:
        checks = [
            (self.lr > 0, f"lr={self.lr!r} must be > 0"),
            (0 <= self.dropout < 1, f"dropout={self.dropout!r} must be in [0, 1)"),
            (self.weight_decay >= 0, f"weight_decay={self.weight_decay!r} must be >= 0"),
            (self.epochs >= 1, f"epochs={self.epochs!r} must be >= 1"),
            (self.batch_size >= 1, f"batch_size={self.batch_size!r} must be >= 1"),
            (self.optimizer in OPTIMIZERS, f"optimizer={self.optimizer!r}; choose one of: {', '.join(OPTIMIZERS)}"),
            (self.scheduler in SCHEDULERS, f"scheduler={self.scheduler!r}; choose one of: {', '.join(SCHEDULERS)}"),
            (0 < self.scheduler_gamma <= 1, f"scheduler_gamma={self.scheduler_gamma!r} must be in (0, 1]"),
            (0 <= self.momentum < 1, f"momentum={self.momentum!r} must be in [0, 1)"),
            (self.seed >= 0, f"seed={self.seed!r} must be >= 0"),
            (self.threads >= 1, f"threads={self.threads!r} must be >= 1"),
            (self.kind in RUN_KINDS, f"kind={self.kind!r}; choose one of: {', '.join(RUN_KINDS)}"),
            (self.grad_metrics_every >= 0, f"grad_metrics_every={self.grad_metrics_every!r} must be >= 0 (0 = off)"),
            (
                self.plateau_monitor in PLATEAU_MONITORS,
                f"plateau_monitor={self.plateau_monitor!r}; choose one of: {', '.join(PLATEAU_MONITORS)}",
            ),
            (self.objective in OBJECTIVES, f"objective={self.objective!r}; choose one of: {', '.join(OBJECTIVES)}"),
            (self.grad_clip >= 0, f"grad_clip={self.grad_clip!r} must be >= 0 (0 = off)"),
            (self.iterations >= 0, f"iterations={self.iterations!r} must be >= 0 (0 = train for epochs)"),
            (self.eval_every >= 0, f"eval_every={self.eval_every!r} must be >= 0"),
            (
                isinstance(self.grad_memory, int | float) and 0 <= self.grad_memory < float("inf"),
                f"grad_memory={self.grad_memory!r} must be a finite number of MiB >= 0 (0 = no budget)",
            ),
            (
                self.eval_every == 0 or self.iterations > 0,
                f"eval_every={self.eval_every!r} needs iterations > 0 (with epochs, evaluation is every epoch)",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise UserInputError(message)
        from mtlbench.training.selection import parse_selection

        parse_selection(self.selection)

    def to_dict(self) -> dict[str, Any]:
        """The config as plain data (hashed by the store). Fields added after runs were stored
        (:data:`HASH_OMITTED_DEFAULTS`: ``grad_metrics_every``, ``objective``, ``selection``) appear only
        when they differ from their defaults, so that stored runs keep their hashes."""
        data = dataclasses.asdict(self)
        data["tasks"] = list(self.tasks)
        for name, default in HASH_OMITTED_DEFAULTS.items():
            if data[name] == default:
                del data[name]
        return data

    def needs_reference(self) -> bool:
        """Whether this (resolved) run needs every task's single-task reference: a multi-task run selected
        by a Delta_m rule, or one whose plateau schedule monitors validation Delta_m. Other runs train
        without references (Delta_m None) and compute Delta_m when references exist."""
        from mtlbench.training.selection import parse_selection

        if self.kind != "multi_task":
            return False
        monitors = self.scheduler == "plateau" and self.plateau_monitor == "val_delta_m"
        return parse_selection(self.selection).needs_delta_m or monitors

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def _budgets_gradients(method_cls: type, params: Mapping[str, Any]) -> bool:
    """Whether ``grad_memory`` applies to a method: a Gramian-only gradient method on the shared parameters."""
    from mtlbench.methods.base import GradientMethod

    gramian = issubclass(method_cls, GradientMethod) and method_cls.gramian_only
    return gramian and params.get("space", "parameters") == "parameters"


def gradient_budget_bytes(grad_memory: float) -> int | None:
    """``RunConfig.grad_memory`` (MiB) as the engine's ``max_gradient_bytes`` (None for 0: no budget)."""
    return max(1, int(grad_memory * 2**20)) if grad_memory > 0 else None


def resolve_device(device: str) -> torch.device:
    """'auto' -> cuda when available, else cpu; anything else must be a valid torch device."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError:
        raise UserInputError(f"device={device!r} is not a device; use auto, cpu, cuda or cuda:N") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise UserInputError(f"device={device!r} but CUDA is not available here; use --device auto or cpu")
    return resolved

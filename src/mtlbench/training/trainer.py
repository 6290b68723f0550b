"""The training engine: one run = (problem, tasks, method, hyperparameters, seed).

Per epoch it records the training loss per task, validation metrics, validation Delta_m against the
single-task reference, the mean task weights and the time. A multi-task run is evaluated on test at
the epoch with the best validation Delta_m; a single-task reference run selects an epoch per metric
(000 section 3). Checkpoints (``last.pt`` every epoch, ``best*.pt`` on improvement) are written
atomically; a run killed mid-training resumes from ``last.pt`` with identical numbers (same seed,
device and thread count). A loss that becomes NaN or infinite, or a numerical failure of a method,
makes the run *failed* with its reason; nothing else stored is touched.
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from threadpoolctl import threadpool_limits

from mtlbench.errors import MissingDataError, MtlbenchError, RunFailedError, UserInputError
from mtlbench.methods import Method, StepResult, TrainingContext, create
from mtlbench.metrics import check_reference, delta_m, delta_m_metrics
from mtlbench.models.base import MultiTaskModel, check_method
from mtlbench.optim import fused_supported
from mtlbench.problems import create_problem
from mtlbench.problems.base import Problem
from mtlbench.training import provenance
from mtlbench.training.allocator import tune_allocator
from mtlbench.training.config import POLY_POWER, RunConfig, gradient_budget_bytes
from mtlbench.training.diagnostics import GradientDiagnostics
from mtlbench.training.evaluation import Metrics, evaluate, metric_directions
from mtlbench.training.objective import apply_objective, objective_factor, scaled_parameters
from mtlbench.training.selection import epoch_score, mean_test_metrics, parse_selection

CHECKPOINT_VERSION = 1


@dataclass
class RunResult:
    """The outcome of a run (also stored in the results store)."""

    config: RunConfig
    status: str
    run_id: int | None = None
    best_epoch: int | None = None
    val_delta_m: float | None = None
    test_delta_m: float | None = None
    #: the per-metric Delta_m variant (mean over all metrics; :func:`mtlbench.metrics.delta_m_metrics`)
    val_delta_m_metrics: float | None = None
    test_delta_m_metrics: float | None = None
    #: the selection rule saw the test split (``last_test_epochs``, ``best_test``)
    test_selected: bool = False
    #: the selected model's validation score by the run's rule (higher is better; sweeps select
    #: configurations on it): the rule's own score, or val Delta_m for per_metric / last_test_epochs
    #: (without references: minus the summed validation loss, see :mod:`mtlbench.training.selection`)
    val_score: float | None = None
    test_metrics: Metrics = field(default_factory=dict)
    #: reference runs: task -> metric -> {"epoch", "val", "test"}
    selected: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    counters: dict[str, int] = field(default_factory=dict)
    error: str | None = None
    seconds: float = 0.0


def atomic_torch_save(obj: Any, path: Path) -> None:
    """Save with ``torch.save`` to a temporary file, then rename over ``path`` (never a partial file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as handle:
        torch.save(obj, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def build_optimizer(config: RunConfig, parameters: list[torch.nn.Parameter]) -> torch.optim.Optimizer:
    """Adam with coupled L2 weight decay (as the reference code); AdamW and SGD with momentum as options.

    The optimizers use PyTorch's fused kernels where they exist (CPU and CUDA): the same update in
    one kernel over all parameters instead of a Python loop of small operations per parameter
    (4-10x faster optimizer steps on CPU; results agree with the loop to float rounding, ~1e-8).
    """
    fused = fused_supported(parameters)
    if config.optimizer == "adam":
        return torch.optim.Adam(parameters, lr=config.lr, weight_decay=config.weight_decay, fused=fused)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(parameters, lr=config.lr, weight_decay=config.weight_decay, fused=fused)
    return torch.optim.SGD(
        parameters, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay, fused=fused
    )


def build_scheduler(config: RunConfig, optimizer: torch.optim.Optimizer, total_steps: int = 1) -> Any:
    """The run's lr schedule; ``poly`` (stepped after each training step) decays over ``total_steps``."""
    if config.scheduler == "poly":
        total = max(1, total_steps)
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: max(0.0, 1.0 - step / total) ** POLY_POWER)
    if config.scheduler == "exponential":
        return torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=config.scheduler_gamma)
    if config.scheduler == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="min", factor=config.scheduler_gamma, patience=5, min_lr=1e-5
        )
    if config.scheduler == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=config.step_size, gamma=config.scheduler_gamma)
    return None


class Session:
    """A built run, ready to step: problem, model, method (attached to its context), optimizer.

    :meth:`step` is the training step of mtlbench; the trainer's loop and the benchmarks both call it.
    """

    def __init__(self, config: RunConfig, problem: Problem, device: torch.device, data_generator: torch.Generator):
        self.config, self.problem, self.device = config, problem, device
        self.data_generator = data_generator
        torch.manual_seed(config.seed)
        model = problem.build_model(dropout=config.dropout)
        method = create(
            config.method,
            n_tasks=len(problem.tasks),
            generator=torch.Generator().manual_seed(config.seed + 10_007),
            **config.method_params,
        )
        check_method(model, method)  # one-line error if the method needs a z the model lacks
        if config.grad_memory > 0:  # the gradient engine's budget (RunConfig.grad_memory; Gramian-only methods)
            method.engine = dataclasses.replace(
                method.engine, max_gradient_bytes=gradient_budget_bytes(config.grad_memory)
            )
        self.model = model = method.wrap_model(model).to(device)
        self.method = method.to(device)
        parameters = [p for p in model.parameters() if p.requires_grad and not _is_adapter(model, p)]
        self.optimizer = build_optimizer(config, [*parameters, *method.parameters()])
        #: ``config.objective``: gradients rescaled after the method's backward (training/objective.py)
        self._objective_factor = objective_factor(config.objective, len(problem.tasks))
        self._objective_parameters = scaled_parameters(
            config.objective, model.shared_parameters(), [*parameters, *method.parameters()]
        )
        steps_per_pass = math.ceil(problem.num_examples("train") / config.batch_size)
        self.total_steps = config.iterations or config.epochs * steps_per_pass
        self.scheduler = build_scheduler(config, self.optimizer, self.total_steps)
        self._clip_parameters = parameters if config.grad_clip > 0 else None
        self._train_stream: Any = None
        self.shared = model.shared_parameters()
        self.heads = model.task_parameters()
        self._current: Any = None
        self._val_batches: Any = None
        #: gradient diagnostics (``config.grad_metrics_every`` > 0), observed before each step's backward
        self.diagnostics = (
            GradientDiagnostics(config.grad_metrics_every, last_layer=list(model.last_shared_layer.parameters()))
            if config.grad_metrics_every
            else None
        )
        method.attach(
            TrainingContext(
                model=model,
                optimizer=self.optimizer,
                lr=config.lr,
                weight_decay=config.weight_decay,
                task_names=problem.task_names,
                loss_types=[task.loss_type for task in problem.tasks],
                compute_losses=self.compute_losses,
                next_validation_batch=self.next_validation_batch,
                current_batch=lambda: self._current,
                device=device,
            )
        )

    def compute_losses(self, batch: Any) -> torch.Tensor:
        """The per-task losses (T,) of the model on ``batch``."""
        batch = batch.to(self.device)
        outputs = self.model(batch.inputs)
        return torch.stack([task.loss(outputs[task.name], batch.targets[task.name]) for task in self.problem.tasks])

    def next_validation_batch(self, batch_size: int | None = None) -> Any:
        """An endless stream of shuffled validation batches (Auto-Lambda's meta step); ``batch_size``
        defaults to the training batch size (a new size starts a new pass)."""
        size = batch_size or self.config.batch_size
        if getattr(self, "_val_batch_size", size) != size:
            self._val_batches = None
        self._val_batch_size = size
        while True:
            if self._val_batches is None:
                self._val_batches = self.problem.batches("val", size, shuffle=True, generator=self.data_generator)
            try:
                return next(self._val_batches).to(self.device)
            except StopIteration:
                self._val_batches = None

    def train_batches(self, epoch: int) -> Any:
        """The training batches of record ``epoch``: one shuffled pass, or with ``config.iterations`` the next
        ``eval_every`` steps (fewer at the end) of consecutive shuffled passes."""
        config = self.config
        if not config.iterations:
            yield from self.problem.batches("train", config.batch_size, shuffle=True, generator=self.data_generator)
            return
        block = config.eval_every or config.iterations
        count = min(block, config.iterations - epoch * block)
        for _ in range(count):
            batch = next(self._train_stream, None) if self._train_stream is not None else None
            if batch is None:
                self._train_stream = self.problem.batches(
                    "train", config.batch_size, shuffle=True, generator=self.data_generator
                )
                batch = next(self._train_stream, None)
                if batch is None:
                    return
            yield batch

    def step(self, batch: Any, *, check_finite: bool = False) -> tuple[torch.Tensor, StepResult]:
        """One training step on a batch already on the device; returns the losses and the method's result."""
        self._current = batch
        self.optimizer.zero_grad(set_to_none=True)
        features = self.model.encode(batch.inputs)
        outputs = self.model.decode(features)
        losses = torch.stack([task.loss(outputs[task.name], batch.targets[task.name]) for task in self.problem.tasks])
        if check_finite and not bool(torch.isfinite(losses).all()):
            raise RunFailedError(_non_finite_message(losses, self.problem))
        if self.diagnostics is not None:
            self.diagnostics.observe(losses, outputs, batch, self.problem.tasks, self.shared)
        result = self.method.backward(losses, self.shared, features=features, task_parameters=self.heads)
        if self.diagnostics is not None:
            self.diagnostics.after_backward(result.weights)
        apply_objective(self._objective_parameters, self._objective_factor)
        if self._clip_parameters is not None:  # config.grad_clip: the model's global gradient norm
            torch.nn.utils.clip_grad_norm_(self._clip_parameters, self.config.grad_clip)
        self.optimizer.step()
        if self.config.scheduler == "poly":
            self.scheduler.step()
        if self.method.needs_extra_forward:
            self.method.after_step(_no_grad(lambda: self.compute_losses(batch)))
        else:
            self.method.after_step(None)
        return losses.detach(), result


class Trainer:
    """Trains one run. ``store`` (a :class:`mtlbench.store.ResultsStore`) records it; checkpoints go to
    ``checkpoint_root / <config hash>``. ``require_reference`` (multi-task runs) makes a missing
    single-task reference an error when the run needs Delta_m (:meth:`RunConfig.needs_reference`: a
    Delta_m selection rule, or a plateau schedule on validation Delta_m); without it, or for any other
    rule, a run without references selects by its rule (the Delta_m rules by the lowest summed
    validation loss) and Delta_m is not computed (None)."""

    def __init__(
        self,
        config: RunConfig,
        *,
        store: Any | None = None,
        checkpoint_root: Path | str | None = None,
        require_reference: bool = True,
        progress: Callable[[dict[str, Any]], None] | None = None,
        # progress receives events: {"event": "epoch_start"|"step"|"epoch_end", ...}
    ) -> None:
        self.config = config.resolved()
        self.store = store
        self.checkpoint_root = Path(checkpoint_root) if checkpoint_root is not None else None
        self.require_reference = require_reference
        self.progress = progress
        self.device = torch.device(self.config.device)

    # --- set-up --------------------------------------------------------------------------------
    def config_hash(self) -> str:
        from mtlbench.store.results import config_hash

        return config_hash(self.config.to_dict())

    @property
    def checkpoint_dir(self) -> Path | None:
        return None if self.checkpoint_root is None else self.checkpoint_root / self.config_hash()

    def _references(self, problem: Problem) -> dict[str, Metrics | None]:
        if self.config.kind == "reference":
            return {"val": None, "test": None}
        refs: dict[str, Metrics | None] = {"val": None, "test": None}
        if self.store is not None:
            key = problem.reference_config()
            refs = {split: self.store.reference(key, problem.task_names, split) for split in refs}
        if refs["val"] is None and self.require_reference and self.config.needs_reference():
            options = " ".join(f"--option {k}={v}" for k, v in problem.option_values.items() if v is not None)
            raise MissingDataError(
                f"no single-task reference for {problem.name} tasks {'_'.join(problem.task_names)}"
                + (f" ({options})" if options else "")
                + f"; create it with `mtlbench reference --problem {problem.name} "
                f"--tasks {'_'.join(problem.task_names)}{' ' + options if options else ''}`"
            )
        for split, reference in refs.items():  # a zero reference metric: fail before training, not after
            if reference is not None:
                check_reference(reference, f"{problem.name} ({split})")
        return refs

    # --- the run -------------------------------------------------------------------------------
    def run(self) -> RunResult:
        """Train to the end (resuming from ``last.pt`` if present) and evaluate on test."""
        config = self.config
        torch.set_num_threads(config.threads)
        tune_allocator()
        problem = create_problem(config.problem, config.tasks, **config.problem_options)
        problem.prepare()
        references = self._references(problem)
        run_id = None
        if self.store is not None:
            run_id = self.store.start_run(
                config.to_dict(),
                kind=config.kind,
                provenance=provenance.collect(self.device, problem.data_checksums()),
            )
        from mtlbench.store.heartbeat import heartbeat

        started = time.perf_counter()
        try:
            # BLAS (numpy/scipy solvers) uses the run's thread count too, so results do not depend on the caller;
            # the store hears from this process every 30 s (a background thread) and at each epoch end
            with threadpool_limits(limits=config.threads), heartbeat(self.store, run_id):
                result = self._train(problem, references, run_id)
        except (RunFailedError, FloatingPointError, torch.linalg.LinAlgError, OverflowError) as error:
            return self._failed(config, run_id, error, started)
        except MtlbenchError:
            raise
        except RuntimeError as error:  # numerical failures inside a method's solver
            return self._failed(config, run_id, error, started)
        result.seconds = time.perf_counter() - started
        result.run_id = run_id
        if self.store is not None:
            self.store.finish_run(
                run_id,
                test_metrics=result.test_metrics,
                summary={
                    "best_epoch": result.best_epoch,
                    "val_delta_m": result.val_delta_m,
                    "test_delta_m": result.test_delta_m,
                    "val_delta_m_metrics": result.val_delta_m_metrics,
                    "test_delta_m_metrics": result.test_delta_m_metrics,
                    "selection": "per_metric" if config.kind == "reference" else config.selection,
                    **({"val_score": result.val_score} if config.selection != "delta_m" else {}),
                    "test_selected": result.test_selected,
                    "seconds": result.seconds,
                    "counters": result.counters,
                    "selected": result.selected,
                },
            )
        return result

    def _failed(self, config: RunConfig, run_id: int | None, error: BaseException, started: float) -> RunResult:
        message = f"{type(error).__name__}: {error}"
        if self.store is not None and run_id is not None:
            self.store.fail_run(run_id, message)
        return RunResult(config, "failed", run_id=run_id, error=message, seconds=time.perf_counter() - started)

    def _train(self, problem: Problem, references: dict[str, Metrics | None], run_id: int | None) -> RunResult:
        config = self.config
        data_generator = torch.Generator().manual_seed(config.seed)
        session = Session(config, problem, self.device, data_generator)
        model, method, optimizer, scheduler = session.model, session.method, session.optimizer, session.scheduler
        directions = metric_directions(problem)
        tasks = problem.tasks
        is_reference = config.kind == "reference"
        rule = parse_selection(config.selection)

        state: dict[str, Any] = {"epoch": 0, "history": [], "best": None, "best_per_metric": {}}
        self._maybe_resume(state, model, method, optimizer, scheduler, data_generator)
        check_each_step = self.device.type == "cpu"

        steps_per_pass = math.ceil(problem.num_examples("train") / config.batch_size)
        steps_per_epoch = config.eval_every or config.iterations or steps_per_pass
        for epoch in range(state["epoch"], config.epochs):
            epoch_start = time.perf_counter()
            self._emit({"event": "epoch_start", "epoch": epoch, "epochs": config.epochs, "steps": steps_per_epoch})
            model.train()
            loss_sums = torch.zeros(len(tasks), device=self.device)
            weight_sums = torch.zeros(len(tasks), device=self.device)
            weight_steps, examples, steps = 0, 0, 0
            info_sums: dict[str, float] = {}
            if session.diagnostics is not None:
                session.diagnostics.start_epoch()
            if self.device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(self.device)
            for batch in session.train_batches(epoch):
                batch = batch.to(self.device, non_blocking=True)
                try:
                    losses, result = session.step(batch, check_finite=check_each_step)
                except RunFailedError as error:
                    raise RunFailedError(f"{error} at epoch {epoch}, step {steps}") from None
                loss_sums += losses * batch.size
                last_losses = losses  # the plateau monitor 'last_batch' (000's code)
                examples += batch.size
                steps += 1
                self._emit({"event": "step", "step": steps})
                if result.weights is not None:
                    weight_sums += result.weights.to(self.device)
                    weight_steps += 1
                for key, value in result.info.items():
                    if not key.startswith("count_"):
                        info_sums[key] = info_sums.get(key, 0.0) + float(value)
            if examples == 0:
                raise UserInputError(f"{problem.name}: the training split is empty")
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            train_seconds = time.perf_counter() - epoch_start
            train_losses = loss_sums / examples
            if not bool(torch.isfinite(train_losses).all()):
                raise RunFailedError(f"{_non_finite_message(train_losses, problem)} in epoch {epoch}")
            method.end_epoch(train_losses.detach())
            val_metrics, val_losses = evaluate(
                model, problem, "val", batch_size=config.eval_batch_size, device=self.device
            )
            if not all(math.isfinite(v) for v in val_losses.values()):
                raise RunFailedError(f"non-finite validation loss at epoch {epoch}: {val_losses}")
            val_dm = delta_m(val_metrics, references["val"], directions) if references["val"] else None
            val_dmm = delta_m_metrics(val_metrics, references["val"], directions) if references["val"] else None
            lr_now = optimizer.param_groups[0]["lr"]
            self._step_scheduler(scheduler, train_losses, val_losses, last_losses=last_losses, val_delta_m=val_dm)
            record = {
                "epoch": epoch,
                "train_losses": dict(zip(problem.task_names, train_losses.tolist(), strict=True)),
                "val_metrics": val_metrics,
                "val_losses": val_losses,
                "val_delta_m": val_dm,
                "val_delta_m_metrics": val_dmm,
                "weights": (
                    dict(zip(problem.task_names, (weight_sums / weight_steps).tolist(), strict=True))
                    if weight_steps
                    else None
                ),
                "lr": lr_now,
                "seconds": time.perf_counter() - epoch_start,
                "extra": {key: value / max(steps, 1) for key, value in info_sums.items()},
                "train_seconds": train_seconds,
                "steps": steps,
                "memory": _peak_memory(self.device),
            }
            if session.diagnostics is not None:
                record["extra"]["grad"] = session.diagnostics.summary()
            if not is_reference and rule.evaluates_test_at(epoch, config.epochs):  # test-selected rules
                same = (val_metrics, val_losses) if getattr(problem, "val_is_test", False) else None
                record.update(self._test_record(model, problem, references, directions, same_as_val=same))
            state["history"].append(record)
            if self.store is not None:
                self.store.add_epoch(run_id, epoch, record)
            if is_reference or rule.kind == "per_metric":
                self._update_per_metric(state, record, model, directions)
            elif rule.kind != "last_test_epochs":
                self._update_best(state, record, model, method, rule, directions)
            state["epoch"] = epoch + 1
            self._save_last(state, model, method, optimizer, scheduler, data_generator)
            self._emit({"event": "epoch_end", "epochs": config.epochs, **record})

        return self._finish(problem, model, method, state, references, directions)

    def _emit(self, event: dict[str, Any]) -> None:
        if self.progress is not None:
            self.progress(event)

    # --- selection -----------------------------------------------------------------------------
    def _test_record(
        self,
        model: MultiTaskModel,
        problem: Problem,
        references: dict[str, Metrics | None],
        directions: dict,
        *,
        same_as_val: tuple[Metrics, dict[str, float]] | None = None,
    ) -> dict[str, Any]:
        """The test numbers of this epoch, for the test-selected rules (last_test_epochs, best_test); a problem
        whose ``val`` is its test split (``val_is_test``) reuses this epoch's validation evaluation."""
        if same_as_val is not None:
            metrics, losses = same_as_val
        else:
            metrics, losses = evaluate(
                model, problem, "test", batch_size=self.config.eval_batch_size, device=self.device
            )
        ref = references["test"]
        return {
            "test_metrics": metrics,
            "test_losses": losses,
            "test_delta_m": delta_m(metrics, ref, directions) if ref else None,
            "test_delta_m_metrics": delta_m_metrics(metrics, ref, directions) if ref else None,
        }

    def _update_best(
        self, state: dict, record: dict, model: MultiTaskModel, method: Method, rule: Any, directions: dict
    ) -> None:
        score = epoch_score(rule, record, directions)
        if score is None:
            score = -math.inf  # an epoch the rule cannot score is chosen only if no epoch can be
        best = state["best"]
        if best is None or score > best["score"]:
            state["best"] = {
                "score": score,
                "epoch": record["epoch"],
                "val_delta_m": record["val_delta_m"],
                "val_delta_m_metrics": record.get("val_delta_m_metrics"),
            }
            model_state = _cpu_state(model)
            state["best_model"] = model_state
            if self.checkpoint_dir is not None:
                atomic_torch_save(
                    {
                        "version": CHECKPOINT_VERSION,
                        "config": self.config.to_dict(),
                        "epoch": record["epoch"],
                        "model": model_state,
                        "method": method.state_dict(),
                    },
                    self.checkpoint_dir / "best.pt",
                )

    def _update_per_metric(self, state: dict, record: dict, model: MultiTaskModel, directions: dict) -> None:
        snapshot = None
        for task, metrics in record["val_metrics"].items():
            for metric, value in metrics.items():
                key = f"{task}/{metric}"
                best = state["best_per_metric"].get(key)
                higher = directions[task][metric]
                if not math.isfinite(value):
                    continue
                if best is None or (value > best["val"] if higher else value < best["val"]):
                    snapshot = snapshot or _cpu_state(model)
                    state["best_per_metric"][key] = {"epoch": record["epoch"], "val": value}
                    state.setdefault("best_models", {})[key] = snapshot

    def _finish(
        self,
        problem: Problem,
        model: MultiTaskModel,
        method: Method,
        state: dict,
        references: dict[str, Metrics | None],
        directions: dict,
    ) -> RunResult:
        config = self.config
        result = RunResult(config, "completed", history=state["history"], counters=dict(method.counters))
        # a problem whose validation split is its test split (nyuv2 val_split=none, as MTAN's code): every
        # rule selected on test
        result.test_selected = bool(getattr(problem, "test_selected", False))
        rule = parse_selection(config.selection)
        if config.kind == "reference" or rule.kind == "per_metric":
            evaluated: dict[int, Metrics] = {}
            for key, chosen in state["best_per_metric"].items():
                task, metric = key.split("/", 1)
                epoch = chosen["epoch"]
                if epoch not in evaluated:
                    model.load_state_dict(state["best_models"][key])
                    evaluated[epoch], _ = evaluate(
                        model, problem, "test", batch_size=config.eval_batch_size, device=self.device
                    )
                test_value = evaluated[epoch][task][metric]
                result.selected.setdefault(task, {})[metric] = {
                    "epoch": epoch,
                    "val": chosen["val"],
                    "test": test_value,
                }
                result.test_metrics.setdefault(task, {})[metric] = test_value
            if config.kind == "reference":
                return result
            # per_metric on a multi-task run: validation Delta_m of the per-metric best validation values
            best_val = {t: {m: v["val"] for m, v in ms.items()} for t, ms in result.selected.items()}
            if references["val"] is not None:
                result.val_delta_m = delta_m(best_val, references["val"], directions)
                result.val_delta_m_metrics = delta_m_metrics(best_val, references["val"], directions)
                result.val_score = result.val_delta_m
            else:  # no reference: minus the lowest summed validation loss over the epochs
                result.val_score = _loss_score(state["history"], min)
        elif rule.kind == "last_test_epochs":
            tail = state["history"][-int(rule.epochs) :]
            result.test_selected = True
            result.best_epoch = tail[-1]["epoch"]
            result.test_metrics = mean_test_metrics(tail, len(tail))
            for name in ("val_delta_m", "val_delta_m_metrics"):
                values = [record.get(name) for record in tail]
                if all(value is not None for value in values):
                    setattr(result, name, sum(values) / len(values))
            # no reference: minus the summed validation loss, averaged over the last N epochs
            result.val_score = result.val_delta_m if references["val"] is not None else _loss_score(tail, _mean)
        else:
            best = state["best"]
            result.test_selected = rule.test_selected or result.test_selected
            result.best_epoch = best["epoch"]
            result.val_delta_m = best["val_delta_m"]
            result.val_delta_m_metrics = best.get("val_delta_m_metrics")
            record = next((r for r in state["history"] if r["epoch"] == best["epoch"]), {})
            scored = rule.inner if rule.kind == "best_test" else rule  # best_test: the same rule on val
            result.val_score = epoch_score(scored, record, directions) if record else None
            if record.get("test_metrics") is not None:  # best_test: evaluated at that epoch already
                result.test_metrics = record["test_metrics"]
            else:
                model.load_state_dict(state["best_model"])
                result.test_metrics, _ = evaluate(
                    model, problem, "test", batch_size=config.eval_batch_size, device=self.device
                )
        if references["test"] is not None:
            result.test_delta_m = delta_m(result.test_metrics, references["test"], directions)
            result.test_delta_m_metrics = delta_m_metrics(result.test_metrics, references["test"], directions)
        return result

    def _step_scheduler(
        self,
        scheduler: Any,
        train_losses: torch.Tensor,
        val_losses: dict[str, float],
        *,
        last_losses: torch.Tensor | None = None,
        val_delta_m: float | None = None,
    ) -> None:
        if scheduler is None or self.config.scheduler == "poly":  # poly steps with the training steps
            return
        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            monitor = self.config.plateau_monitor
            if monitor == "val_delta_m" and val_delta_m is None:
                raise UserInputError("plateau_monitor=val_delta_m needs a single-task reference (Delta_m)")
            monitored = {
                "train_loss": lambda: float(train_losses.sum()),
                "last_batch": lambda: float(last_losses.sum()),
                "val_loss": lambda: sum(val_losses.values()),
                "val_delta_m": lambda: -float(val_delta_m),  # mode "min": minus Delta_m (higher is better)
            }[monitor]()
            scheduler.step(monitored)
        else:
            scheduler.step()

    # --- checkpoints ---------------------------------------------------------------------------
    def _save_last(self, state, model, method, optimizer, scheduler, data_generator) -> None:
        if self.checkpoint_dir is None:
            return
        payload = {
            "version": CHECKPOINT_VERSION,
            "config": self.config.to_dict(),
            "epoch": state["epoch"],
            "history": state["history"],
            "best": state["best"],
            "best_model": state.get("best_model"),
            "best_per_metric": state["best_per_metric"],
            "best_models": state.get("best_models", {}),
            "model": model.state_dict(),
            "method": method.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": None if scheduler is None else scheduler.state_dict(),
            "rng": {
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
                "data": data_generator.get_state(),
                "method": None if method.generator is None else method.generator.get_state(),
            },
        }
        atomic_torch_save(payload, self.checkpoint_dir / "last.pt")

    def _maybe_resume(self, state, model, method, optimizer, scheduler, data_generator) -> None:
        if self.checkpoint_dir is None or not (self.checkpoint_dir / "last.pt").exists():
            return
        saved = torch.load(self.checkpoint_dir / "last.pt", map_location=self.device, weights_only=False)
        if saved.get("version") != CHECKPOINT_VERSION or saved.get("config") != self.config.to_dict():
            return
        model.load_state_dict(saved["model"])
        method.load_state_dict(saved["method"])
        optimizer.load_state_dict(saved["optimizer"])
        if scheduler is not None and saved["scheduler"] is not None:
            scheduler.load_state_dict(saved["scheduler"])
        rng = saved["rng"]
        torch.set_rng_state(rng["torch"].cpu())
        if rng["cuda"] is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all([s.cpu() for s in rng["cuda"]])
        data_generator.set_state(rng["data"].cpu())
        if rng["method"] is not None and method.generator is not None:
            method.generator.set_state(rng["method"].cpu())
        for key in ("epoch", "history", "best", "best_model", "best_per_metric", "best_models"):
            state[key] = saved[key]


def _peak_memory(device: torch.device) -> dict[str, Any]:
    """Peak memory of the epoch: CUDA allocated (reset each epoch), else the process's peak RSS so far."""
    if device.type == "cuda":
        return {"peak_mb": torch.cuda.max_memory_allocated(device) / 2**20, "kind": "cuda_allocated"}
    try:
        import resource

        scale = 2**20 if sys.platform == "darwin" else 2**10  # ru_maxrss: bytes on macOS, KiB on Linux
        return {"peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale, "kind": "process_rss"}
    except (ImportError, OSError):  # not on Linux/macOS
        return {"peak_mb": None, "kind": "unavailable"}


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def _loss_score(history: list[dict[str, Any]], reduce: Callable[[list[float]], float]) -> float | None:
    """Minus ``reduce`` (min or mean) of the summed validation losses of ``history``'s epochs (a run's
    validation score without references, for ``per_metric`` and ``last_test_epochs``)."""
    losses = [sum(r["val_losses"].values()) for r in history if r.get("val_losses")]
    losses = [value for value in losses if math.isfinite(value)]
    return -reduce(losses) if losses else None


def _is_adapter(model: MultiTaskModel, parameter: torch.nn.Parameter) -> bool:
    return model.adapters is not None and any(parameter is p for p in model.adapters.parameters())


def _cpu_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {key: value.detach().to("cpu", copy=True) for key, value in model.state_dict().items()}


def _no_grad(function: Callable[[], torch.Tensor]) -> Callable[[], torch.Tensor]:
    def wrapped() -> torch.Tensor:
        with torch.no_grad():
            return function()

    return wrapped


def _non_finite_message(losses: torch.Tensor, problem: Problem) -> str:
    bad = [name for name, value in zip(problem.task_names, losses.tolist(), strict=True) if not math.isfinite(value)]
    return f"loss became non-finite ({', '.join(bad)})"


def train(config: RunConfig, **kwargs: Any) -> RunResult:
    """Train one run; see :class:`Trainer` for the keyword arguments."""
    return Trainer(config, **kwargs).run()


__all__ = ["RunResult", "Session", "Trainer", "atomic_torch_save", "train"]

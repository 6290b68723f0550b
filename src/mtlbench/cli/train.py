"""``mtlbench train``, ``mtlbench reference`` and ``mtlbench evaluate``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from mtlbench.cli.app import app
from mtlbench.cli.common import (
    EpochProgress,
    checkpoint_root,
    coerce_option,
    console,
    parse_assignments,
    pct,
    results_path,
)
from mtlbench.errors import MissingDataError, UserInputError

ProblemOpt = Annotated[str, typer.Option("--problem", "-p", help="Problem name (see `mtlbench problems`).")]
TasksOpt = Annotated[
    str, typer.Option("--tasks", "-t", help="Tasks joined by '_' (CL_RR) or ',' (names with '_'), or 'all'.")
]
LrOpt = Annotated[float | None, typer.Option(help="Learning rate (default: the problem's).")]
DropoutOpt = Annotated[float | None, typer.Option(help="Dropout rate in [0, 1) (default: the problem's).")]
WdOpt = Annotated[float | None, typer.Option("--weight-decay", help="Coupled L2 weight decay (Adam).")]
EpochsOpt = Annotated[int | None, typer.Option(help="Epochs (default: the problem's).")]
BatchOpt = Annotated[int | None, typer.Option("--batch-size", help="Batch size (default: the problem's).")]
DeviceOpt = Annotated[str, typer.Option(help="auto (CUDA if available), cpu, cuda or cuda:N.")]
TrainSizeOpt = Annotated[
    int | None, typer.Option("--train-size", help="Train on the first N training examples (quick runs).")
]
OptionOpt = Annotated[list[str] | None, typer.Option("--option", "-o", help="Problem option name=value (repeatable).")]
ResultsOpt = Annotated[
    Path | None, typer.Option("--results", help="Results database (default: $MTLBENCH_RESULTS or ./mtlbench-results).")
]
OptimizerOpt = Annotated[str | None, typer.Option(help="adam (coupled L2, default), adamw or sgd (momentum 0.9).")]
SchedulerOpt = Annotated[
    str | None,
    typer.Option(
        help="exponential, plateau (ReduceLROnPlateau on --plateau-monitor), step, poly (lr (1 - step/total)^0.9 "
        "per training step, 002) or none."
    ),
]
ThreadsOpt = Annotated[int | None, typer.Option(help="torch CPU threads (part of the run's record).")]
ProgressOpt = Annotated[bool | None, typer.Option("--progress/--no-progress", help="Live progress bar.")]


def _problem_options(options: list[str] | None, train_size: int | None) -> dict:
    values = {key: coerce_option(value) for key, value in parse_assignments(options, "--option").items()}
    if train_size is not None:
        if train_size < 1:
            raise UserInputError(f"--train-size={train_size} must be >= 1")
        values["train_size"] = train_size
    return values


@app.command()
def train(
    problem: ProblemOpt,
    tasks: TasksOpt,
    method: Annotated[str, typer.Option("--method", "-m", help="Method name (see `mtlbench methods`).")] = "unit_scal",
    lr: LrOpt = None,
    dropout: DropoutOpt = None,
    weight_decay: WdOpt = None,
    epochs: EpochsOpt = None,
    batch_size: BatchOpt = None,
    seed: Annotated[int, typer.Option(help="Random seed (model init, data order, method randomness).")] = 0,
    device: DeviceOpt = "auto",
    set_: Annotated[
        list[str] | None, typer.Option("--set", "-s", help="Method hyperparameter name=value (repeatable).")
    ] = None,
    train_size: TrainSizeOpt = None,
    option: OptionOpt = None,
    optimizer: OptimizerOpt = None,
    scheduler: SchedulerOpt = None,
    plateau_monitor: Annotated[
        str,
        typer.Option(
            help="train_loss (epoch mean), last_batch (the last mini-batch's, Gama's code), val_loss, "
            "or val_delta_m (nash-mtl)."
        ),
    ] = "train_loss",
    objective: Annotated[
        str,
        typer.Option(
            help="sum (default: the sum of the losses), mean (every gradient of the step / T: Gama's code), "
            "or mean_shared (only the shared parameters' gradient / T). Part of the run's config."
        ),
    ] = "sum",
    selection: Annotated[
        str,
        typer.Option(
            help="Model selection: delta_m (default, 000), delta_m_metrics, mean_metric:NAME, val_loss, per_metric, "
            "last_test_epochs:N or best_test:RULE (both flag the run test-selected). Part of the run's config."
        ),
    ] = "delta_m",
    threads: ThreadsOpt = None,
    results: ResultsOpt = None,
    no_reference: Annotated[
        bool,
        typer.Option(
            "--no-reference",
            help="Train without a single-task reference (Δm rules then select by val loss; other rules need none).",
        ),
    ] = False,
    progress: ProgressOpt = None,
    grad_metrics: Annotated[
        int,
        typer.Option(
            "--grad-metrics",
            metavar="EVERY",
            help="Record gradient diagnostics every EVERY steps of an epoch (0 = off): 000's mean cos(g_i, mean g) "
            "and 001's S_cos, S_mag and sign conflicts for task pairs and sample pairs, on the shared parameters, "
            "without changing the training numbers (extra.grad.* of the epoch records; `mtlbench report` plots "
            "them). Cost: a recorded step takes about 5 training steps (T + 4T extra backward passes; Multi-MNIST "
            "CL_RR on CPU), so 100 adds about 5% to the training time and 10 about 50%. Part of the run's config.",
        ),
    ] = 0,
    grad_clip: Annotated[
        float, typer.Option("--grad-clip", help="Clip the model's global gradient norm to this (0 = off; 002 ViT: 10).")
    ] = 0.0,
    iterations: Annotated[
        int, typer.Option(help="Train for this many steps instead of epochs (0 = use epochs; 002 HRNet/ViT: 40000).")
    ] = 0,
    eval_every: Annotated[
        int, typer.Option("--eval-every", help="With --iterations: evaluate every N steps (0 = once at the end).")
    ] = 0,
    grad_memory: Annotated[
        float,
        typer.Option(
            "--grad-memory",
            metavar="MB",
            help="Memory budget (MiB) of the per-task gradients (0 = none): Gramian-only methods (PCGrad, MGDA, "
            "CAGrad, ...) take G Gᵀ by parameter blocks that fit when the (T, D) matrix would not; same numbers, "
            "less memory, more backward passes (docs/performance.md). Part of the run's config.",
        ),
    ] = 0.0,
) -> None:
    """Train one multi-task run and store it (resumes from its last checkpoint if interrupted)."""
    from mtlbench.store.results import ResultsStore
    from mtlbench.training.config import RunConfig
    from mtlbench.training.trainer import Trainer

    path = results_path(results)
    config = RunConfig(
        problem=problem,
        tasks=tasks,
        method=method,
        method_params=parse_assignments(set_, "--set"),
        problem_options=_problem_options(option, train_size),
        lr=lr,
        dropout=dropout,
        weight_decay=weight_decay,
        epochs=epochs,
        batch_size=batch_size,
        optimizer=optimizer,
        scheduler=scheduler,
        plateau_monitor=plateau_monitor,
        seed=seed,
        device=device,
        threads=threads,
        grad_metrics_every=grad_metrics,
        objective=objective,
        selection=selection,
        grad_clip=grad_clip,
        iterations=iterations,
        eval_every=eval_every,
        grad_memory=grad_memory,
    )
    store = ResultsStore(path)
    trainer = Trainer(
        config,
        store=store,
        checkpoint_root=checkpoint_root(path),
        require_reference=not no_reference,
        progress=EpochProgress(method, progress),
    )
    result = trainer.run()
    if result.status != "completed":
        console.print(f"[red]run {result.run_id} failed:[/red] {result.error}")
        raise typer.Exit(1)
    print(
        f"run {result.run_id}: {method} on {config.problem} {'_'.join(trainer.config.tasks)} completed; "
        f"best epoch {result.best_epoch}, val Δm {pct(result.val_delta_m, 3)}, test Δm {pct(result.test_delta_m, 3)}"
        + (f" (test-selected: {trainer.config.selection})" if result.test_selected else "")
    )
    print(json.dumps({"test_metrics": result.test_metrics}, indent=None))


@app.command()
def reference(
    problem: ProblemOpt,
    tasks: TasksOpt,
    seeds: Annotated[int, typer.Option(help="Reference seeds (1..N); the reference is their mean.")] = 3,
    lr: LrOpt = None,
    dropout: DropoutOpt = None,
    weight_decay: WdOpt = None,
    epochs: EpochsOpt = None,
    batch_size: BatchOpt = None,
    device: DeviceOpt = "auto",
    train_size: TrainSizeOpt = None,
    option: OptionOpt = None,
    optimizer: OptimizerOpt = None,
    scheduler: SchedulerOpt = None,
    threads: ThreadsOpt = None,
    results: ResultsOpt = None,
    progress: ProgressOpt = None,
) -> None:
    """Train the single-task references of each task and store their mean metrics (per split)."""
    from mtlbench.store.results import ResultsStore
    from mtlbench.training.config import RunConfig
    from mtlbench.training.references import train_references

    if seeds < 1:
        raise UserInputError(f"--seeds={seeds} must be >= 1")
    path = results_path(results)
    base = RunConfig(
        problem=problem,
        tasks=tasks,
        problem_options=_problem_options(option, train_size),
        lr=lr,
        dropout=dropout,
        weight_decay=weight_decay,
        epochs=epochs,
        batch_size=batch_size,
        optimizer=optimizer,
        scheduler=scheduler,
        device=device,
        threads=threads,
    )
    store = ResultsStore(path)
    refs = train_references(
        base,
        seeds=list(range(1, seeds + 1)),
        store=store,
        checkpoint_root=checkpoint_root(path),
        progress=EpochProgress("reference", progress),
        announce=lambda c: console.print(f"reference: {c.problem} {c.tasks[0]} seed {c.seed}", highlight=False),
    )
    for task, metrics in refs["test"].items():
        shown = ", ".join(f"{name}={value:.4g}" for name, value in metrics.items())
        print(f"reference {problem} {task} (test, mean of {seeds} seeds): {shown}")


@app.command()
def evaluate(
    checkpoint: Annotated[Path, typer.Argument(help="A best.pt or last.pt checkpoint written by the trainer.")],
    split: Annotated[str, typer.Option(help="train, val or test.")] = "test",
    device: DeviceOpt = "auto",
    results: ResultsOpt = None,
) -> None:
    """Re-evaluate a checkpoint on a split (Delta_m too when the store has its reference)."""
    import torch

    from mtlbench.methods import create
    from mtlbench.metrics import delta_m
    from mtlbench.problems import create_problem
    from mtlbench.store.results import ResultsStore
    from mtlbench.training.config import RunConfig, resolve_device
    from mtlbench.training.evaluation import evaluate as evaluate_model
    from mtlbench.training.evaluation import metric_directions

    if not checkpoint.exists():
        raise MissingDataError(f"checkpoint {checkpoint} does not exist")
    if not checkpoint.is_file():
        raise UserInputError(f"checkpoint {checkpoint} is a folder; give its best.pt or last.pt")
    not_a_checkpoint = f"{checkpoint} is not an mtlbench checkpoint (a best.pt or last.pt written by the trainer)"
    try:
        saved = torch.load(checkpoint, map_location="cpu", weights_only=False)
    except Exception as error:  # pickle, zip and torch errors alike: the file is not a checkpoint
        raise UserInputError(f"{not_a_checkpoint}; loading it failed with {type(error).__name__}") from None
    if not isinstance(saved, dict) or "config" not in saved or "model" not in saved:
        raise UserInputError(not_a_checkpoint)
    config = RunConfig.from_dict(saved["config"])
    target = resolve_device(device)
    problem_ = create_problem(config.problem, config.tasks, **config.problem_options)
    if split not in problem_.splits:
        raise UserInputError(f"split={split!r}; choose one of: {', '.join(problem_.splits)}")
    problem_.prepare()
    model = problem_.build_model(dropout=config.dropout)
    method = create(config.method, n_tasks=len(problem_.tasks), **config.method_params)
    model = method.wrap_model(model)
    model.load_state_dict(saved["model"])
    model.to(target)
    metrics, _ = evaluate_model(model, problem_, split, batch_size=config.eval_batch_size or 256, device=target)
    output = {"checkpoint": str(checkpoint), "epoch": saved.get("epoch"), "split": split, "metrics": metrics}
    path = results_path(results)
    if path.exists() and config.kind == "multi_task":
        ref = ResultsStore(path).reference(problem_.reference_config(), problem_.task_names, split)
        if ref is not None:
            output["delta_m"] = delta_m(metrics, ref, metric_directions(problem_))
    print(json.dumps(output, indent=2))

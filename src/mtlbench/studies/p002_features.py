"""``002-features``: Guo et al. (002), Fig. 6 -- distance of the multi-task shared feature to the single-task ones.

002 section V-F1, following URL (Li & Bilen, ``DensePred/nyu_url.py``): single-task models are trained
first; while a multi-task model trains, a per-task adaptor (a 1x1 convolution, C -> C) maps the shared
feature onto that task's single-task feature, and the L2 distance is recorded per task:
both the single-task feature (the frozen STL encoder's output, in eval mode) and the adapted multi-task
feature (bilinearly resized to the STL size) are L2-normalised over channels; the distance is the sum over
channels of the squared difference, averaged over batch and positions. The adaptors train on it with Adam
(lr 1e-2, weight decay 5e-4, cosine schedule over the run; URL's settings).

By default the distance is *measured only*: the adaptors see the shared feature detached and the
multi-task network is trained exactly as without them (whether 002 back-propagated it is unverified).
``Features002(backprop=True)`` (Python; not a CLI flag) adds URL's variant in a simple form: after each
multi-task step, one more step of the network's optimizer on sum_t w_t distance_t with URL's weights
(1 / 1 / 2 for seg / depth / normals, 1 for the other tasks) -- URL adds it to the same backward.

The runs go through :class:`mtlbench.training.trainer.Session` (mtlbench's training step) in this process
(not stored or resumed); the data, model and settings are ``nyud_002``/``pascal_002``'s at the scale (the
generated stand-ins below the paper scale). Fig. 6 prints no numbers: the cells are our final-epoch
distances, and the claim is 002's reading: Grid Search, CAGrad and Nash-MTL, which reach a better Delta_m,
stay closer to the single-task features than Uniform.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar

from mtlbench.analysis import claims as verdicts
from mtlbench.studies import register_study
from mtlbench.studies.base import (
    Cell,
    CellResult,
    Claim,
    ClaimResult,
    ScaleInfo,
    Study,
    StudyContext,
    StudyOutcome,
    no_number,
)
from mtlbench.studies.p002_imbalance import COLUMNS

METHODS = ("unit_scal", "fixed_weights", "cagrad", "nash_mtl")
BALANCED = ("fixed_weights", "cagrad", "nash_mtl")
DATASETS = {"NYUD": ("nyud_002", "nyud"), "PASCAL": ("pascal_002", "pascal_context")}
#: URL's distillation weights (seg / depth / normals); other tasks 1
URL_WEIGHTS = {"S": 1.0, "D": 1.0, "N": 2.0}
ADAPTOR_LR, ADAPTOR_WD = 1e-2, 5e-4
#: per scale: datasets, methods, spec-scale overrides
PLAN: dict[str, tuple[tuple[str, ...], tuple[str, ...], dict[str, Any]]] = {
    "test": (
        ("NYUD",),
        ("unit_scal", "fixed_weights"),
        {
            "problem_options": {"n_images": 12, "synthetic_size": 16, "width": 4, "edge_thresholds": 3},
            "settings": {"epochs": 2, "batch_size": 3},
            "lr": 0.01,
        },
    ),
    "smoke": (("NYUD", "PASCAL"), METHODS, {}),
    "cpu": (("NYUD", "PASCAL"), METHODS, {}),
    "paper": (("NYUD", "PASCAL"), METHODS, {}),
}


def feature_distance(mtl: Any, stl: Any) -> Any:
    """URL's distance per sample-average: ||n(mtl) - n(stl)||^2 over channels, mean over batch and positions
    (n = L2 normalisation over channels; ``mtl`` bilinearly resized to ``stl``'s size first)."""
    from torch.nn import functional as F

    if mtl.shape[-2:] != stl.shape[-2:]:
        mtl = F.interpolate(mtl, size=stl.shape[-2:], mode="bilinear", align_corners=False)
    difference = F.normalize(mtl, p=2, dim=1) - F.normalize(stl, p=2, dim=1)
    return (difference**2).sum(dim=1).mean()


def _config(spec: Any, tasks: str, method: str, lr: float, kind: str = "multi_task") -> Any:
    from mtlbench.training import RunConfig

    settings = {k: v for k, v in spec.settings.items() if k in ("epochs", "batch_size", "optimizer", "scheduler")}
    return RunConfig(
        problem=spec.problem,
        tasks=tasks,
        method=method,
        method_params=dict(spec.method_params.get(method, {})),
        problem_options=dict(spec.problem_options),
        lr=lr,
        weight_decay=spec.grid.get("weight_decay", [None])[0],
        threads=None,
        kind=kind,
        **settings,
    ).resolved()


def _train(config: Any, problem: Any, on_step: Any = None) -> Any:
    """Train a :class:`Session` for ``config.epochs``; ``on_step(session, batch, features)`` after each step."""
    import torch

    from mtlbench.training.trainer import Session

    session = Session(config, problem, torch.device("cpu"), torch.Generator().manual_seed(config.seed))
    captured: dict[str, Any] = {}
    handle = session.model.encoder.register_forward_hook(lambda _m, _i, out: captured.__setitem__("z", out))
    try:
        for _ in range(config.epochs):
            session.model.train()
            for batch in problem.batches("train", config.batch_size, shuffle=True, generator=session.data_generator):
                session.step(batch)
                if on_step is not None:
                    on_step(session, batch, captured["z"])
    finally:
        handle.remove()
    return session


class _Distances:
    """Per-task adaptors, their optimizer and the recorded distances (per epoch: mean over its steps)."""

    def __init__(self, stl: dict[str, Any], channels: int, steps: int, backprop: bool) -> None:
        import torch

        self.stl, self.backprop = stl, backprop
        self.adaptors = torch.nn.ModuleDict({t: torch.nn.Conv2d(channels, channels, 1) for t in stl})
        self.optimizer = torch.optim.Adam(self.adaptors.parameters(), lr=ADAPTOR_LR, weight_decay=ADAPTOR_WD)
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, max(1, steps))
        self.current: dict[str, list[float]] = {t: [] for t in stl}

    def __call__(self, session: Any, batch: Any, features: Any) -> None:
        import torch

        with torch.no_grad():
            targets = {t: model.encode(batch.inputs) for t, model in self.stl.items()}
        self.optimizer.zero_grad(set_to_none=True)
        distances = {t: feature_distance(self.adaptors[t](features.detach()), targets[t]) for t in self.stl}
        sum(distances.values()).backward()
        self.optimizer.step()
        self.scheduler.step()
        for t, value in distances.items():
            self.current[t].append(float(value.detach()))
        if self.backprop:  # URL-like: one more step of the network on the weighted distances
            session.optimizer.zero_grad(set_to_none=True)
            shared = session.model.encode(batch.inputs)
            total = sum(
                URL_WEIGHTS.get(t, 1.0) * feature_distance(self.adaptors[t](shared), targets[t]) for t in self.stl
            )
            total.backward()
            self.adaptors.zero_grad(set_to_none=True)
            session.optimizer.step()

    def epoch_means(self, steps_per_epoch: int) -> dict[str, list[float]]:
        out = {}
        for t, values in self.current.items():
            out[t] = [
                sum(values[i : i + steps_per_epoch]) / len(values[i : i + steps_per_epoch])
                for i in range(0, len(values), steps_per_epoch)
            ]
        return out


def _delta_m(metrics: dict[str, dict[str, float]], reference: dict[str, dict[str, float]], directions: Any) -> float:
    per_task = []
    for task, values in metrics.items():
        changes = []
        for metric, value in values.items():
            base = reference.get(task, {}).get(metric)
            if base:
                sign = 1.0 if directions[task][metric] else -1.0
                changes.append(sign * (value - base) / base * 100.0)
        if changes:
            per_task.append(sum(changes) / len(changes))
    return sum(per_task) / len(per_task) if per_task else math.nan


@register_study
class Features002(Study):
    name = "002-features"
    paper = "002"
    title = "L2 distance between the MTL shared feature (through a 1x1 adaptor) and the STL features"
    targets = "Fig. 6"
    problems = ("nyud", "pascal_context", "synthetic_scenes")
    description = "STL first, then MTL with per-task 1x1 adaptors onto the STL features; distance per task and epoch."
    scales: ClassVar[dict[str, ScaleInfo]] = {
        "test": ScaleInfo("NYUD stand-in, uniform and grid, 2 tiny epochs", 6, 0.002),
        "smoke": ScaleInfo("NYUD and PASCAL stand-ins, 4 methods, smoke sizes", 17, 0.2),
        "cpu": ScaleInfo("NYUD and PASCAL stand-ins at 64 px, 4 methods", 17, 0.6),
        "paper": ScaleInfo("002's ResNet-18 protocol, 4 methods", 17, 200.0, 50.0),
    }

    def __init__(self, backprop: bool = False) -> None:
        self.backprop = backprop

    def cells(self) -> list[Cell]:
        return [
            Cell(
                f"{label}/{method}/distance.{task}",
                f"{label}: {method} STL-MTL feature distance of {task}, final epoch",
                no_number("002 Fig. 6"),
                "lower",
            )
            for label, (_, dataset) in DATASETS.items()
            for method in METHODS
            for task, _, _ in COLUMNS[dataset]
        ]

    def claims(self) -> list[Claim]:
        return [
            Claim(
                "closer_than_uniform",
                "Grid Search, CAGrad and Nash-MTL stay closer to the single-task features than Uniform",
                "002 section V-F1, Fig. 6",
                "qualitative",
            ),
            Claim(
                "distance_tracks_delta_m",
                "Methods with a better Δm have feature distances closer to the single-task ones",
                "002 section V-F1, Fig. 6",
                "qualitative",
            ),
        ]

    def execute(self, context: StudyContext) -> StudyOutcome:
        import torch

        from mtlbench.problems import create_problem
        from mtlbench.studies import stand_ins
        from mtlbench.studies.sweeps import study_spec
        from mtlbench.training.evaluation import evaluate, metric_directions

        self.check_scale(context.scale)
        outcome = self.outcome(context.scale)
        labels, methods, extra = PLAN[context.scale]
        results: dict[str, dict[str, Any]] = {}
        torch.set_num_threads(context.threads or 1)
        for label in labels:
            spec_name, dataset = DATASETS[label]
            overlay: dict[str, Any] = {}
            if context.scale != "paper" and not stand_ins.dense_002(dataset).available():
                overlay = {"problem_options": {"source": "synthetic", **extra.get("problem_options", {})}}
                if "settings" in extra:
                    overlay["settings"] = extra["settings"]
                outcome.notes.append(stand_ins.dense_002(dataset).note)
            spec = study_spec(spec_name, context.scale, overlay, name=f"{self.name}:{label}")
            lr = extra.get("lr", spec.grid["lr"][0])
            problem = create_problem(spec.problem, spec.tasks, **spec.problem_options)
            tasks = problem.task_names
            directions = metric_directions(problem)
            stl_models, stl_metrics = {}, {}
            for task in tasks:
                context.note(f"{label}: single-task {task}")
                config = _config(spec, task, "unit_scal", lr, kind="reference")
                single = create_problem(spec.problem, task, **spec.problem_options)
                session = _train(config, single)
                metrics, _ = evaluate(
                    session.model, single, "test", batch_size=config.batch_size, device=torch.device("cpu")
                )
                stl_metrics.update(metrics)
                session.model.eval()
                for p in session.model.parameters():
                    p.requires_grad_(False)
                stl_models[task] = session.model
            results[label] = {}
            for method in methods:
                context.note(f"{label}: {method} with adaptors")
                config = _config(spec, "_".join(tasks), method, lr)
                steps = math.ceil(problem.num_examples("train") / config.batch_size)
                channels = problem.build_model().encoder.out_channels
                recorder = _Distances(stl_models, channels, steps * config.epochs, self.backprop)
                session = _train(config, problem, recorder)
                metrics, _ = evaluate(
                    session.model, problem, "test", batch_size=config.batch_size, device=torch.device("cpu")
                )
                series = recorder.epoch_means(steps)
                results[label][method] = {
                    "series": series,
                    "final": {t: v[-1] for t, v in series.items() if v},
                    "delta_m": _delta_m(metrics, stl_metrics, directions),
                }
        self._fill(outcome, results)
        self._judge(outcome, results)
        outcome.notes.append(
            "Distances are measured only (the adaptors see the shared feature detached)"
            if not self.backprop
            else "URL-like back-propagation of the weighted distances into the network (an extra step per step)"
        )
        outcome.notes.append("Runs in this process (not stored or resumed); Δm against these STL models' final epoch.")
        return outcome

    def _fill(self, outcome: StudyOutcome, results: dict[str, dict[str, Any]]) -> None:
        for cell in self.cells():
            label, method, what = cell.key.split("/")
            task = what.split(".", 1)[1]
            run = results.get(label, {}).get(method)
            value = None if run is None else run["final"].get(task)
            note = "" if value is not None else f"not run at {outcome.scale} scale"
            outcome.cells.append(CellResult(cell, value, None, 1 if value is not None else 0, note))
        for label, runs in results.items():
            tasks = list(next(iter(runs.values()))["series"]) if runs else []
            lines = [
                "| method | " + " | ".join(f"d_{t} per epoch" for t in tasks) + " | mean final d | Δm (%) |",
                "|---" * (len(tasks) + 3) + "|",
            ]
            for method, run in runs.items():
                cells = [" ".join(f"{v:.3g}" for v in run["series"][t]) for t in tasks]
                lines.append(
                    f"| {method} | " + " | ".join(cells) + f" | {_mean(list(run['final'].values())):.3g} | "
                    f"{run['delta_m']:+.2f} |"
                )
            outcome.tables[f"{label}: STL-MTL feature distance ({outcome.scale} scale)"] = "\n".join(lines)

    def _judge(self, outcome: StudyOutcome, results: dict[str, dict[str, Any]]) -> None:
        declared = {c.key: c for c in self.claims()}
        closer, parts, points = [], [], []
        for label, runs in results.items():
            uniform = runs.get("unit_scal")
            for method, run in runs.items():
                points.append((_mean(list(run["final"].values())), run["delta_m"]))
                if method in BALANCED and uniform is not None:
                    mine, base = _mean(list(run["final"].values())), _mean(list(uniform["final"].values()))
                    closer.append(mine < base)
                    parts.append(f"{label} {method} {mine:.3g} vs uniform {base:.3g}")
        check = verdicts.qualitative(
            (sum(closer) > len(closer) / 2) if closer else None,
            "mean final distance over tasks: "
            + ("; ".join(parts) or "no run")
            + f" ({sum(closer)} of {len(closer)} closer)",
        )
        outcome.claims.append(ClaimResult(declared["closer_than_uniform"], check.verdict, check.detail))
        finite = [(d, m) for d, m in points if math.isfinite(d) and math.isfinite(m)]
        if len(finite) >= 3:
            from scipy.stats import spearmanr

            rho = float(spearmanr([d for d, _ in finite], [m for _, m in finite]).statistic)
            check = verdicts.qualitative(
                rho < 0, f"Spearman(distance, Δm) over {len(finite)} runs: {rho:+.2f} (holds if < 0)"
            )
        else:
            check = verdicts.qualitative(None, f"{len(finite)} runs: too few to rank")
        outcome.claims.append(ClaimResult(declared["distance_tracks_delta_m"], check.verdict, check.detail))


def _mean(values: Sequence[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return sum(finite) / len(finite) if finite else math.nan

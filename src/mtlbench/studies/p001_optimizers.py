"""``001-optimizers``: Elich et al. (001), section 4.1, Table 2, Tables A2-A6, Figs. 2, A3, A4 -- Adam vs SGD.

EW, UW, RLW, PCGrad, CAGrad and IMTL (LibMTL's forms) with Adam and with SGD + momentum 0.9 (LibMTL's default;
001 does not state the momentum) on Cityscapes and NYUv2 with SegNet and DeepLabV3+ (built-in sweeps
``city_001`` and ``nyuv2_001``; ``model`` = segnet / deeplabv3plus), 001's ten-value lr grid, 3 seeds, weight
decay 1e-5, selection on the validation Delta_m over all metrics. Outputs per setup:

* **Pareto counts** (Table 2, A2) over the individual task metrics of every completed run of both optimisers
  (001's filters: NaN outputs dropped; Cityscapes runs with mIoU < 0.1 dropped on the real data only -- on the
  tiny stand-ins every run would fall under it): runs on the front of all runs (PO full) and each optimiser's
  runs not dominated by any run of the other (PO w.r.t. the other), per optimiser and per method. Test metrics
  (001 does not say which split it used).
* **Best-lr Delta_m** per method and optimiser next to Tables A3-A6. 001's Delta_m is the mean relative change
  per metric with lower = better; ours (``delta_m_metrics``) has higher = better: the published values are
  shown converted with ``to_ours = -1``.
* **Parallel-coordinate plot** (Figs. 2, A4): every run a line over the min-max normalised metrics (up = better),
  Adam blue, SGD red, Pareto-optimal runs bold.

Claims: Adam has more Pareto-optimal runs than SGD in every setup, and more runs not dominated by the other
optimiser (Table 2); Adam's best-lr Delta_m beats SGD's for most methods (Tables A3-A6, Fig. A3); no method's
best-lr run Pareto-dominates EW with Adam (section 4.1). The SGD sweeps reuse the Adam sweeps' single-task
references (001's STL rows are Adam's). Stand-ins: the specs' generated scenes for Cityscapes (preset R18),
synthetic_scenes preset NYUv2 for NYUv2; DeepLabV3+ on a dilated ResNet-18 below paper scale.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from mtlbench.analysis import claims as verdicts
from mtlbench.studies import register_study
from mtlbench.studies.base import Cell, CellResult, Claim, ClaimResult, Published, ScaleInfo, StudyContext, StudyOutcome
from mtlbench.studies.p001_common import METHODS, METRICS, NETWORKS, PAPER_NAME, table_a3_a6
from mtlbench.studies.sweep_study import StandIn, StudySweep, SweepStudy
from mtlbench.studies.sweeps import has_dataset

SETUPS = (("cityscapes", "segnet"), ("cityscapes", "deeplabv3plus"), ("nyuv2", "segnet"), ("nyuv2", "deeplabv3plus"))
OPTIMIZERS = ("adam", "sgd")
#: 001 Table 2: setup -> (valid runs Adam, SGD), PO full (Adam, SGD), PO w.r.t. the other (Adam, SGD)
TABLE_2 = {
    ("cityscapes", "segnet"): ((151, 149), (12, 0), (109, 0)),
    ("cityscapes", "deeplabv3plus"): ((177, 178), (15, 0), (108, 0)),
    ("nyuv2", "segnet"): ((180, 169), (9, 2), (20, 2)),
    ("nyuv2", "deeplabv3plus"): ((177, 179), (16, 7), (31, 7)),
}
#: 001 Table A2: (setup, optimizer) -> PO (full) per method in METHODS order (EW, UW, RLW, IMTL, PCGrad, CAGrad);
#: '-' printed as 0
TABLE_A2 = {
    ("cityscapes", "segnet", "adam"): (1, 7, 0, 3, 0, 1),
    ("cityscapes", "segnet", "sgd"): (0, 0, 0, 0, 0, 0),
    ("cityscapes", "deeplabv3plus", "adam"): (3, 3, 2, 3, 2, 2),
    ("cityscapes", "deeplabv3plus", "sgd"): (0, 0, 0, 0, 0, 0),
    ("nyuv2", "segnet", "adam"): (1, 3, 0, 3, 1, 1),
    ("nyuv2", "segnet", "sgd"): (0, 0, 0, 2, 0, 0),
    ("nyuv2", "deeplabv3plus", "adam"): (2, 2, 0, 6, 1, 5),
    ("nyuv2", "deeplabv3plus", "sgd"): (0, 1, 0, 2, 0, 4),
}
#: the fewest valid runs per optimizer and setup for a verdict on the Pareto counts
MIN_RUNS = 5
GRID = [0.5, 0.1, 0.05, 0.01, 0.005, 0.001, 0.0005, 0.0001, 0.00005, 0.00001]
#: study scale -> (methods, lr grid, search seeds, final seeds)
PLAN: dict[str, tuple[list[str], list[float], int, int]] = {
    "test": (["unit_scal"], [0.001], 1, 1),
    "smoke": (["unit_scal", "uw", "imtl"], [0.01, 0.001], 1, 1),
    "cpu": (list(METHODS.values()), [0.05, 0.01, 0.001, 0.0001], 1, 2),
    "paper": (list(METHODS.values()), GRID, 3, 3),
}
#: the NYUv2 stand-in (synthetic_scenes preset NYUv2) per scale
NYU_STAND_IN = {
    "test": {"resolution": "64x32", "width": 4, "n_images": 12},
    "smoke": {"resolution": "64x64", "width": 4, "n_images": 40},
    "cpu": {"resolution": "128x96", "width": 8, "n_images": 300},
}
CITY_SIZES = {"test": {"resolution": "64x32", "width": 4, "n_images": 12}}


def _label(dataset: str, network: str, optimizer: str) -> str:
    return f"{dataset}-{network}-{optimizer}"


def _overlays(dataset: str, network: str, optimizer: str) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for scale, (methods, grid, search, final) in PLAN.items():
        overlay: dict[str, Any] = {
            "methods": methods,
            "grid": {"lr": grid},
            "search_seeds": search,
            "final_seeds": final,
            "name": f"001-optimizers:{_label(dataset, network, optimizer)}",
            "model": network,  # the spec's top-level architecture (it overrides problem_options.model)
        }
        options: dict[str, Any] = {"model": network}
        if network == "deeplabv3plus" and scale != "paper":
            options["encoder"] = "resnet18"  # a dilated ResNet-50 is too slow below paper scale
        if dataset == "cityscapes" and scale in CITY_SIZES:
            options.update(CITY_SIZES[scale])
        overlay["problem_options"] = options
        settings: dict[str, Any] = {"optimizer": optimizer}
        if optimizer == "sgd":
            settings["momentum"] = 0.9  # LibMTL's default; 001 does not state it
        if scale == "test":
            settings.update({"epochs": 1, "batch_size": 4})
        if scale == "smoke" and dataset == "nyuv2":
            # about 28 steps: the references' normal fractions within 11.25 degrees leave 0 (else Delta_m is
            # undefined; as the nyuv2_standin spec's smoke scale)
            settings.update({"epochs": 4, "batch_size": 4})
        overlay["settings"] = settings
        if optimizer == "sgd":
            overlay["references"] = {"enabled": False}  # the Adam sweep's STL references (001's STL rows: Adam)
        else:
            overlay["references"] = {"grid": {"lr": grid[-2:] if scale != "paper" else GRID[3:9]}}
            if scale != "paper":
                overlay["references"].update({"search_seeds": 1, "final_seeds": 1})
        out[scale] = overlay
    return out


def _nyu_stand_in(network: str) -> StandIn:
    def overlay(scale: str) -> dict[str, Any]:
        options = {"preset": "NYUv2", **NYU_STAND_IN[scale], "model": network}
        if network == "deeplabv3plus":
            options["encoder"] = "resnet18"
        return options

    replacement = {"problem": "synthetic_scenes", "grid_problem": "nyuv2", "tasks": "all"}
    return StandIn(
        lambda: has_dataset("nyuv2"),
        {**replacement, "problem_options": overlay("smoke")},
        "NYUv2 is not prepared here: synthetic_scenes preset NYUv2 (S13 + D + N on generated scenes) stood in",
        {"problem_options": overlay("test")},
    )


def _sweeps() -> tuple[StudySweep, ...]:
    out = []
    for optimizer in OPTIMIZERS:  # Adam first: its references serve the SGD sweeps
        for dataset, network in SETUPS:
            spec = "city_001" if dataset == "cityscapes" else "nyuv2_001"
            stand_in = _nyu_stand_in(network) if dataset == "nyuv2" else None
            # the NYUv2 stand-in's references need about 28 steps before Delta_m is defined: not at the test scale
            # (and the test scale runs Cityscapes SegNet only: seconds)
            test = dataset == "cityscapes" and network == "segnet"
            scales = ("test", "smoke", "cpu", "paper") if test else ("smoke", "cpu", "paper")
            label = _label(dataset, network, optimizer)
            out.append(StudySweep(spec, label, _overlays(dataset, network, optimizer), stand_in, scales))
    return tuple(out)


@register_study
class Optimizers001(SweepStudy):
    name = "001-optimizers"
    paper = "001"
    title = "Adam vs SGD + momentum for six MTO methods: Pareto counts and best-lr Delta_m"
    targets = "Section 4.1, Table 2, Tables A2-A6, Figs. 2, A3, A4"
    problems = ("cityscapes", "nyuv2", "synthetic_scenes")
    description = "city_001/nyuv2_001 x SegNet/DeepLabV3+ x Adam/SGD: Pareto counts, parallel coordinates, Δm tables."
    scales: ClassVar[dict[str, ScaleInfo]] = {
        "test": ScaleInfo("Cityscapes stand-in SegNet x 2 optimizers, EW, 1 lr, 1 seed, 1 epoch", 4, 0.003),
        "smoke": ScaleInfo("4 setups (stand-ins) x 2 optimizers, EW/UW/IMTL, 2 lrs, 1 seed", 72, 0.3),
        "cpu": ScaleInfo("4 setups (stand-ins) x 2 optimizers, 6 methods, 4 lrs, 1 + 2 seeds", 420, 12.0),
        "paper": ScaleInfo(
            "001's protocol: 4 setups x 2 optimizers x 6 methods x 10 lrs x 3 seeds", 1440, 60000.0, 9000.0
        ),
    }
    sweeps = _sweeps()

    # ------------------------------------------------------------------------------------ declarations
    def cells(self) -> list[Cell]:
        out = []
        rows = table_a3_a6()
        for dataset, network in SETUPS:
            setup = f"{dataset}-{network}"
            title = f"{dataset} {NETWORKS[network]}"
            valid, full, other = TABLE_2[(dataset, network)]
            for i, optimizer in enumerate(OPTIMIZERS):
                for key, name, value in (
                    ("valid", "valid runs", valid[i]),
                    ("po_full", "PO (full)", full[i]),
                    ("po_other", "PO w.r.t. the other optimizer", other[i]),
                ):
                    published = Published(float(value), "001 Table 2", "higher", "runs of 6 methods x 10 lrs x 3 seeds")
                    out.append(Cell(f"{setup}/{optimizer}/{key}", f"{title} {optimizer}: {name}", published, "higher"))
                for mto, method in METHODS.items():
                    row = rows[(dataset, network, mto, optimizer)]
                    published = Published(
                        row.delta_m,
                        f"001 {row.source} (lr {row.lr:g}, ±{row.delta_m_sd:g})",
                        "lower",
                        "mean test Δm of 3 seeds at the best validation lr",
                        "%",
                        to_ours=-1.0,
                        note="001's Δm is lower-is-better; shown in ours x(-1)",
                    )
                    out.append(
                        Cell(
                            f"{setup}/{optimizer}/{method}/delta_m",
                            f"{title} {optimizer} {mto}: Δm",
                            published,
                            "higher",
                            "%",
                        )
                    )
        return out

    def claims(self) -> list[Claim]:
        return [
            Claim(
                "adam_more_po",
                "Adam has more Pareto-optimal runs (PO full) than SGD in every setup",
                "001 Table 2",
                "qualitative",
            ),
            Claim(
                "adam_po_wrt_sgd",
                "More Adam runs are undominated by SGD runs than SGD runs undominated by Adam runs, every setup",
                "001 Table 2",
                "qualitative",
            ),
            Claim(
                "adam_better_delta_m",
                "Adam's best-lr Δm beats SGD's for most methods",
                "001 Tables A3-A6, Fig. A3",
                "difference",
                "per method and setup, paired over seeds, Holm; majority",
            ),
            Claim(
                "nothing_dominates_ew_adam",
                "No method's best-lr Adam or SGD run Pareto-dominates EW with Adam",
                "001 section 4.1",
                "qualitative",
            ),
        ]

    # ------------------------------------------------------------------------------------------ results
    def _cells(self, outcome: StudyOutcome, reports: Mapping[str, Any]) -> None:
        """Filled in :meth:`extra` (the Pareto counts need every run)."""

    def extra(self, outcome: StudyOutcome, reports: Mapping[str, Any], context: StudyContext) -> None:
        from mtlbench.studies.base import cell_value

        outcome.notes.append(
            "SGD + momentum 0.9 (LibMTL's default; 001 does not state the momentum). Pareto counts over the test "
            "metrics of every completed run; NaN runs dropped; Cityscapes mIoU < 0.1 dropped on the real data only. "
            "001's Δm is lower-is-better: the published Δm are shown in our convention (x -1)."
        )
        by_key = {c.key: c for c in self.cells()}
        counts: dict[tuple[str, str], dict[str, Any]] = {}
        runs_by_setup: dict[str, Any] = {}
        for dataset, network in SETUPS:
            setup = f"{dataset}-{network}"
            labels = {opt: _label(dataset, network, opt) for opt in OPTIMIZERS}
            if not all(label in reports for label in labels.values()):
                continue
            frame = self._runs(context, reports, labels, dataset)
            runs_by_setup[setup] = frame
            counts[(dataset, network)] = self._pareto(frame, dataset)
        tables = []
        for dataset, network in SETUPS:
            setup = f"{dataset}-{network}"
            found = counts.get((dataset, network))
            for optimizer in OPTIMIZERS:
                for key in ("valid", "po_full", "po_other"):
                    cell = by_key[f"{setup}/{optimizer}/{key}"]
                    value = None if found is None else float(found[optimizer][key])
                    outcome.cells.append(CellResult(cell, value, None, 1 if found else 0, "" if found else "not run"))
                report = reports.get(_label(dataset, network, optimizer))
                for method in METHODS.values():
                    cell = by_key[f"{setup}/{optimizer}/{method}/delta_m"]
                    if report is None or method not in {r.method for r in report.methods}:
                        outcome.cells.append(CellResult(cell, None, None, 0, f"not run at {outcome.scale} scale"))
                        continue
                    values = self._final_dm(context, report, method)
                    mean, ci, n = cell_value(list(values.values()))
                    selection = next((r.selection for r in report.methods if r.method == method), None)
                    best = getattr(selection, "best", None)
                    chosen = best.label(["lr"]) if best is not None else ""
                    outcome.cells.append(CellResult(cell, mean, ci, n, f"selected {chosen}" if chosen else ""))
            if found is not None:
                tables.append(self._count_table(dataset, network, found))
        if tables:
            outcome.tables["Pareto counts per method (Table A2; ours over this scale's runs)"] = "\n\n".join(tables)
        delta_tables = [self._delta_table(outcome, dataset, network) for dataset, network in SETUPS]
        delta_tables = [t for t in delta_tables if t]
        if delta_tables:
            title = "Best-lr Δm per method and optimizer (ours, higher is better) beside 001 Tables A3-A6 (x -1)"
            outcome.tables[title] = "\n\n".join(delta_tables)
        self._claims_extra(outcome, reports, counts, context)
        self._figure(outcome, runs_by_setup, context)
        self._figure_a3(outcome, context)

    def _runs(self, context: StudyContext, reports: Mapping[str, Any], labels: Mapping[str, str], dataset: str) -> Any:
        """Every completed multi-task run of the two sweeps: one row per run, its optimizer, method, lr and test
        metrics as ``task.metric`` columns."""
        import pandas as pd

        from mtlbench.store.results import ResultsStore

        store = ResultsStore(context.results)
        frames = []
        for optimizer, label in labels.items():
            spec = reports[label].spec
            runs = store.runs(kind="multi_task", status="completed", problem=spec.problem)
            if runs.empty:
                continue
            model = spec.problem_options.get("model", "aspp")
            keep = runs["config.optimizer"].eq(optimizer) & runs["method"].isin(spec.methods)
            if "config.problem_options.model" in runs:
                keep &= runs["config.problem_options.model"].fillna("aspp").eq(model)
            for option in ("preset", "resolution", "width"):
                column = f"config.problem_options.{option}"
                if option in spec.problem_options and column in runs:
                    keep &= runs[column].astype(str).eq(str(spec.problem_options[option]))
            chosen = runs[keep][["id", "method", "config.lr"]].rename(columns={"config.lr": "lr"})
            chosen["optimizer"] = optimizer
            frames.append(chosen)
        if not frames:
            return pd.DataFrame(columns=["id", "method", "lr", "optimizer"])
        frame = pd.concat(frames, ignore_index=True)
        metrics = store.test_metrics(kind="multi_task", status="completed")
        metrics = metrics[metrics["run_id"].isin(frame["id"])]
        wide = metrics.assign(key=metrics["task"] + "." + metrics["metric"]).pivot_table(
            index="run_id", columns="key", values="value", aggfunc="first"
        )
        return frame.merge(wide, left_on="id", right_index=True, how="left")

    @staticmethod
    def _metric_columns(frame: Any, dataset: str) -> tuple[list[str], list[bool]]:
        from mtlbench.problems import PROBLEMS

        columns, higher = [], []
        for task, metric in METRICS[dataset]:
            key = f"{task}.{metric}"
            if key in frame:
                columns.append(key)
        directions = {}
        for problem in ("nyuv2",) if dataset == "nyuv2" else ("cityscapes",):
            for task in PROBLEMS[problem].available_tasks().values():
                for m in task.metrics:
                    directions[f"{task.name}.{m.name}"] = m.higher_is_better
        higher = [directions.get(c, True) for c in columns]
        return columns, higher

    def _pareto(self, frame: Any, dataset: str) -> dict[str, Any]:
        import numpy as np

        from mtlbench.analysis.pareto import dominated_by, pareto_mask

        columns, higher = self._metric_columns(frame, dataset)
        values = frame[columns].to_numpy(dtype=float) if columns else np.zeros((len(frame), 0))
        valid = np.isfinite(values).all(axis=1) if columns else np.zeros(len(frame), dtype=bool)
        if dataset == "cityscapes" and self._real(dataset) and "S.miou" in frame:
            valid &= frame["S.miou"].to_numpy(dtype=float) >= 0.1
        signs = np.where(np.asarray(higher, dtype=bool), 1.0, -1.0)
        oriented = values * signs
        full = np.zeros(len(frame), dtype=bool)
        if valid.any():
            full[valid] = pareto_mask(values[valid], higher)
        frame["valid"], frame["po"] = valid, full
        out: dict[str, Any] = {}
        optimizers = frame["optimizer"].to_numpy()
        for optimizer in OPTIMIZERS:
            mine = valid & (optimizers == optimizer)
            theirs = valid & (optimizers != optimizer)
            undominated = ~dominated_by(oriented[mine], oriented[theirs])
            per_method = {m: int((full & mine & (frame["method"].to_numpy() == m)).sum()) for m in METHODS.values()}
            out[optimizer] = {
                "valid": int(mine.sum()),
                "po_full": int(full[mine].sum()),
                "po_other": int(undominated.sum()),
                "per_method": per_method,
            }
        out["columns"] = columns
        return out

    @staticmethod
    def _real(dataset: str) -> bool:
        return has_dataset(dataset)

    @staticmethod
    def _delta_table(outcome: StudyOutcome, dataset: str, network: str) -> str:
        """Markdown: per method, our selected lr and Δm for each optimizer beside 001's lr and Δm (x -1)."""
        rows = table_a3_a6()
        ours = {r.cell.key: r for r in outcome.cells}
        lines = []
        for mto, method in METHODS.items():
            cells = []
            for optimizer in OPTIMIZERS:
                result = ours.get(f"{dataset}-{network}/{optimizer}/{method}/delta_m")
                paper = rows[(dataset, network, mto, optimizer)]
                mine = "-" if result is None or result.ours is None else f"{result.ours:.2f} ({result.note})"
                cells.append(f"{mine} | {-paper.delta_m:.2f} (lr {paper.lr:g})")  # type: ignore[operator]
            if any(not c.startswith("-") for c in cells):
                lines.append(f"| {mto} | " + " | ".join(cells) + " |")
        if not lines:
            return ""
        head = [
            f"**{dataset} {NETWORKS[network]}**",
            "",
            "| method | Adam: ours | Adam: 001 | SGD: ours | SGD: 001 |",
            "|---|---|---|---|---|",
        ]
        return "\n".join(head + lines)

    @staticmethod
    def _count_table(dataset: str, network: str, found: Mapping[str, Any]) -> str:
        lines = [
            f"**{dataset} {NETWORKS[network]}**",
            "",
            "| optimizer | " + " | ".join(METHODS) + " | total |",
            "|---|" + "---|" * (len(METHODS) + 1),
        ]
        for optimizer in OPTIMIZERS:
            published = TABLE_A2[(dataset, network, optimizer)]
            ours = found[optimizer]["per_method"]
            cells = [f"{ours[m]} ({p})" for m, p in zip(METHODS.values(), published, strict=True)]
            lines.append(
                f"| {optimizer} | " + " | ".join(cells) + f" | {found[optimizer]['po_full']} ({sum(published)}) |"
            )
        lines.append("")
        lines.append("ours (001 Table A2)")
        return "\n".join(lines)

    @staticmethod
    def _final_dm(context: StudyContext, report: Any, method: str) -> dict[int, float]:
        """``{seed: test Delta_m over the metrics}`` of a method's completed final runs (001's Delta_m variant)."""
        import math

        from mtlbench.store.results import ResultsStore

        ids = {
            final.run.id: final.seed
            for result in report.methods
            if result.method == method
            for final in result.final
            if final.run is not None and final.run.status == "completed"
        }
        if not ids:
            return {}
        runs = ResultsStore(context.results).runs(kind="multi_task", status="completed")
        out = {}
        for run_id, value in zip(runs["id"], runs["test_delta_m_metrics"], strict=True):
            if run_id in ids and value is not None and math.isfinite(value):
                out[ids[run_id]] = float(value)
        return out

    def _claims_extra(
        self,
        outcome: StudyOutcome,
        reports: Mapping[str, Any],
        counts: Mapping[tuple[str, str], Any],
        context: StudyContext,
    ) -> None:
        import numpy as np

        declared = {c.key: c for c in self.claims()}
        results: dict[str, verdicts.Check] = {}
        small = [f"{d}-{n}" for (d, n), c in counts.items() if min(c[o]["valid"] for o in OPTIMIZERS) < MIN_RUNS]
        if counts and small:
            for key in ("adam_more_po", "adam_po_wrt_sgd"):
                results[key] = verdicts.Check(
                    verdicts.INCONCLUSIVE, f"fewer than {MIN_RUNS} valid runs of an optimizer in {', '.join(small)}"
                )
        elif counts:
            more = {f"{d}-{n}": (c["adam"]["po_full"], c["sgd"]["po_full"]) for (d, n), c in counts.items()}
            results["adam_more_po"] = verdicts.qualitative(
                all(a > s for a, s in more.values()),
                "; ".join(f"{k}: Adam {a} vs SGD {s}" for k, (a, s) in more.items()),
            )
            other = {f"{d}-{n}": (c["adam"]["po_other"], c["sgd"]["po_other"]) for (d, n), c in counts.items()}
            results["adam_po_wrt_sgd"] = verdicts.qualitative(
                all(a > s for a, s in other.values()),
                "; ".join(f"{k}: Adam {a} vs SGD {s}" for k, (a, s) in other.items()),
            )
        else:
            for key in ("adam_more_po", "adam_po_wrt_sgd"):
                results[key] = verdicts.Check(verdicts.INCONCLUSIVE, "no setup ran both optimizers")
        comparisons, effects = {}, {}
        rows = table_a3_a6()
        for dataset, network in SETUPS:
            adam, sgd = reports.get(_label(dataset, network, "adam")), reports.get(_label(dataset, network, "sgd"))
            if adam is None or sgd is None:
                continue
            for method in {r.method for r in adam.methods} & {r.method for r in sgd.methods}:
                key = f"{dataset}-{network} {PAPER_NAME[method]}"
                comparisons[key] = (self._final_dm(context, adam, method), self._final_dm(context, sgd, method))
                a, s = (
                    rows[(dataset, network, PAPER_NAME[method], "adam")],
                    rows[(dataset, network, PAPER_NAME[method], "sgd")],
                )
                if a.delta_m is not None and s.delta_m is not None:
                    effects[key] = abs(a.delta_m - s.delta_m)
        if comparisons:
            checks = verdicts.check_family(comparisons, claim="difference", alternative="greater", effects=effects)
            combined = verdicts.combine(checks, require="majority")
            results["adam_better_delta_m"] = verdicts.Check(
                combined.verdict, "; ".join(f"{k}: {c.verdict} ({c.detail})" for k, c in checks.items())
            )
        else:
            results["adam_better_delta_m"] = verdicts.Check(verdicts.INCONCLUSIVE, "no method ran with both optimizers")
        # best-lr runs' mean test metrics: does any dominate EW + Adam?
        dominated = []
        judged = 0
        for dataset, network in SETUPS:
            adam = reports.get(_label(dataset, network, "adam"))
            if adam is None:
                continue
            columns = [f"{t}.{m}" for t, m in METRICS[dataset]]
            means: dict[str, list[float]] = {}
            for optimizer in OPTIMIZERS:
                report = reports.get(_label(dataset, network, optimizer))
                for result in report.methods if report is not None else []:
                    runs = [f.test_metrics for f in result.final if f.run is not None and f.run.status == "completed"]
                    if runs:
                        means[f"{result.method}/{optimizer}"] = [
                            float(np.mean([r.get(c.split(".")[0], {}).get(c.split(".")[1], np.nan) for r in runs]))
                            for c in columns
                        ]
            base = means.get("unit_scal/adam")
            if base is None:
                continue
            higher = self._metric_columns({c: 0 for c in columns}, dataset)[1]
            signs = np.where(np.asarray(higher, dtype=bool), 1.0, -1.0)
            ref = np.asarray(base) * signs
            for key, vals in means.items():
                if key == "unit_scal/adam":
                    continue
                judged += 1
                other = np.asarray(vals) * signs
                if np.all(other >= ref) and np.any(other > ref):
                    dominated.append(f"{dataset}-{network}: {key}")
        results["nothing_dominates_ew_adam"] = verdicts.qualitative(
            (not dominated) if judged else None,
            ("dominating EW + Adam: " + ", ".join(dominated)) if dominated else f"none of {judged} best-lr runs",
        )
        for key, check in results.items():
            outcome.claims.append(ClaimResult(declared[key], check.verdict, check.detail))

    def _figure_a3(self, outcome: StudyOutcome, context: StudyContext) -> None:
        """Fig. A3: best-lr Δm per method, Adam vs SGD, per setup (ours; higher is better, unlike 001's plot)."""
        import math

        from mtlbench.analysis.figures import pyplot, save

        values = {r.cell.key: r.ours for r in outcome.cells if r.ours is not None and r.cell.key.endswith("/delta_m")}
        setups = [f"{d}-{n}" for d, n in SETUPS if any(k.startswith(f"{d}-{n}/") for k in values)]
        if not setups:
            return
        plt = pyplot()
        fig, axes = plt.subplots(1, 2, figsize=(9, 3.2), sharey=True, squeeze=False)
        names = list(METHODS)
        for ax, optimizer in zip(axes[0], OPTIMIZERS, strict=True):
            for setup in setups:
                ys = [values.get(f"{setup}/{optimizer}/{METHODS[m]}/delta_m", math.nan) for m in names]
                ax.plot(range(len(names)), ys, marker="o", label=setup)
            ax.set_xticks(range(len(names)), names, fontsize=7)
            ax.set_title(f"{optimizer}: best-lr Δm (ours, higher is better)", fontsize=8)
            ax.grid(True, alpha=0.3)
        axes[0][0].legend(fontsize=6)
        figure = save(fig, context.out, "figA3_delta_m", "001 Fig. A3: best-lr Δm per method with Adam and with SGD")
        outcome.figures.append(str(figure.png))

    def _figure(self, outcome: StudyOutcome, runs: Mapping[str, Any], context: StudyContext) -> None:
        """Figs. 2 / A4: parallel coordinates over the min-max normalised test metrics (up = better)."""
        import numpy as np

        from mtlbench.analysis.figures import pyplot, save

        usable = {k: v for k, v in runs.items() if len(v) and "valid" in v}
        if not usable:
            return
        plt = pyplot()
        fig, axes = plt.subplots(len(usable), 1, figsize=(8, 2.8 * len(usable)), squeeze=False)
        for ax, (setup, frame) in zip(axes[:, 0], usable.items(), strict=True):
            dataset = setup.split("-")[0]
            columns, higher = self._metric_columns(frame, dataset)
            values = frame[columns].to_numpy(dtype=float) * np.where(np.asarray(higher, dtype=bool), 1.0, -1.0)
            lo, hi = np.nanmin(values, axis=0), np.nanmax(values, axis=0)
            scaled = (values - lo) / np.where(hi > lo, hi - lo, 1.0)
            for row, (optimizer, po, ok) in enumerate(
                zip(frame["optimizer"], frame["po"], frame["valid"], strict=True)
            ):
                if not ok:
                    continue
                colour = "tab:blue" if optimizer == "adam" else "tab:red"
                ax.plot(
                    range(len(columns)),
                    scaled[row],
                    color=colour,
                    alpha=0.9 if po else 0.25,
                    linewidth=2.2 if po else 0.8,
                )
            ax.set_xticks(range(len(columns)), columns, fontsize=7)
            ax.set_ylabel("normalised (up = better)", fontsize=7)
            ax.set_title(f"{setup}: Adam (blue) vs SGD (red); bold = Pareto-optimal", fontsize=8)
        figure = save(fig, context.out, "fig2_parallel_coordinates", "001 Figs. 2/A4: every run over the test metrics")
        outcome.figures.append(str(figure.png))

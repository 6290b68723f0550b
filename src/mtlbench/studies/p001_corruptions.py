"""``001-corruptions``: Elich et al. (001), section 4.3, Fig. 4, Tables 3, A8, A9 -- robustness of MTL vs STL.

Models trained on clean data (one multi-task model per MTO method, one single-task model per task, the same
seeds) are evaluated on the test inputs corrupted with ImageNet-C's 15 common corruptions at 5 severities
(:mod:`mtlbench.data.corruptions`; labels unchanged). 001's eq. 6: for a task metric t, corruption c and
severity s, delta_{t,c,s} = M^MTL_{t,c,s} / M^MTL_t,clean - M^STL_{t,c,s} / M^STL_t,clean, and
delta_t = mean over c, s of (-1)^p(t) delta_{t,c,s} with p(t) = 1 when higher is better: delta_t < 0 means
the MTL model kept more of its clean performance (MTL more robust), > 0 the STL model. The "Mean" column
averages the metrics. Our values use the same sign (no conversion). Per seed, MTL seed i is paired with the
STL models of seed i; cells are the mean over seeds.

Published: 001 Table A8 (Cityscapes, SegNet and DeepLabV3), Table A9 (NYUv2; its SegNet rows are Table 3).
Fig. 4 / A10 (delta per corruption, EW) are drawn only; ours is the figure ``fig4_<setup>.png``.
Claims: (1) no MTO method gives delta_t < 0 on every metric (section 4.3: "none of the MTL approaches ...
yields consistent values of delta_t < 0"); (2) NYUv2 + SegNet + EW: STL is more robust on segmentation and
depth (delta > 0; Fig. 4, "a slight indication"); (3) NYUv2: the normal task's mean and median angle
deltas are < 0 for EW (A6: "consistently better for MTL"); (4) Cityscapes depth: MTL more robust with SegNet
(delta < 0), STL with DeepLabV3 (delta > 0) (A6).

Differences (docs/fidelity.md): 001 trains each method at its best lr of Tables A3-A6 and does not say how
it adapted the 224-pixel ImageNet-C code to its image sizes; images are corrupted as uint8 (NYUv2's [0, 1]
float images: x255, corrupt, /255). Model selection here: the epoch with the lowest summed validation loss
(001's early stopping of its STL models; its MTL models select on validation Delta_m).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from mtlbench.analysis import claims as verdicts
from mtlbench.studies import register_study
from mtlbench.studies.base import (
    Cell,
    CellResult,
    Claim,
    ClaimResult,
    Published,
    ScaleInfo,
    Study,
    StudyContext,
    StudyOutcome,
    cell_value,
    no_number,
)
from mtlbench.studies.p001_common import METHODS, METRICS, NETWORKS, PAPER_NAME, Setup, best_lr, setup, stand_in_note

#: 001 Table A8 (Cityscapes): (network, MTO) -> delta mIoU, pixAcc, AbsErr, RelErr, Mean
TABLE_A8: dict[tuple[str, str], tuple[float, ...]] = {
    ("segnet", "EW"): (0.0268, 0.0513, -1.6291, -3.1684, -1.1798),
    ("segnet", "UW"): (0.0532, 0.0542, -0.1942, -1.2537, -0.3351),
    ("segnet", "RLW"): (0.0377, 0.0483, -1.6592, -3.1739, -1.1868),
    ("segnet", "IMTL"): (0.0443, 0.0301, -0.8538, -1.8310, -0.6526),
    ("segnet", "PCGrad"): (0.0385, 0.0405, -1.6255, -3.1475, -1.1735),
    ("segnet", "CAGrad"): (0.0211, 0.0221, -0.6951, -2.3448, -0.7492),
    ("deeplabv3plus", "EW"): (0.0084, 0.0079, 0.7569, 0.5861, 0.3398),
    ("deeplabv3plus", "UW"): (0.0051, 0.0119, 0.6217, 0.2126, 0.2128),
    ("deeplabv3plus", "RLW"): (0.0178, 0.0251, -0.0504, 0.1443, 0.0342),
    ("deeplabv3plus", "IMTL"): (0.0261, 0.0240, 1.0149, 0.5637, 0.4072),
    ("deeplabv3plus", "PCGrad"): (0.0227, 0.0190, 0.2163, 0.4825, 0.1851),
    ("deeplabv3plus", "CAGrad"): (0.0135, 0.0142, 0.2889, 0.4765, 0.1983),
}
#: 001 Table A9 (NYUv2; SegNet rows = Table 3): delta mIoU, pixAcc, AbsErr, RelErr, normal Mean, Median,
#: <11.25, <22.5, <30, Mean over the nine
TABLE_A9: dict[tuple[str, str], tuple[float, ...]] = {
    ("segnet", "EW"): (0.0226, 0.0298, 0.1713, 0.1869, -0.0750, -0.1390, 0.0378, 0.0167, 0.0129, 0.0293),
    ("segnet", "UW"): (0.0149, 0.0200, 0.1691, 0.1652, -0.0461, -0.0895, 0.0200, 0.0168, 0.0165, 0.0319),
    ("segnet", "RLW"): (0.0236, 0.0243, 0.1250, 0.1266, -0.0942, -0.1717, 0.0342, 0.0152, 0.0110, 0.0104),
    ("segnet", "IMTL"): (0.0144, 0.0174, 0.2434, 0.2721, -0.0142, -0.0356, 0.0342, 0.0249, 0.0217, 0.0643),
    ("segnet", "PCGrad"): (0.0206, 0.0156, 0.1665, 0.1634, -0.0594, -0.1131, 0.0364, 0.0208, 0.0171, 0.0298),
    ("segnet", "CAGrad"): (0.0053, 0.0147, 0.2006, 0.2282, -0.0018, -0.0138, 0.0402, 0.0284, 0.0240, 0.0584),
    ("deeplabv3plus", "EW"): (-0.0027, -0.0131, 0.1118, 0.0880, -0.0328, -0.0628, -0.0056, 0.0046, 0.0049, 0.0102),
    ("deeplabv3plus", "UW"): (0.0050, -0.0147, 0.0555, 0.0336, -0.0160, -0.0328, 0.0140, 0.0163, 0.0146, 0.0084),
    ("deeplabv3plus", "RLW"): (0.0067, -0.0040, 0.0553, 0.0006, -0.0125, -0.0309, 0.0142, 0.0170, 0.0155, 0.0069),
    ("deeplabv3plus", "IMTL"): (0.0022, -0.0150, 0.0511, 0.0325, 0.0073, -0.0086, 0.0022, 0.0068, 0.0076, 0.0096),
    ("deeplabv3plus", "PCGrad"): (-0.0116, -0.0302, 0.0505, 0.0390, -0.0339, -0.0563, 0.0040, 0.0108, 0.0102, -0.0019),
    ("deeplabv3plus", "CAGrad"): (0.0064, 0.0017, 0.1699, 0.1124, 0.0156, 0.0070, 0.0097, 0.0121, 0.0117, 0.0385),
}
#: 001's tables' column order (task, metric), the Mean last
COLUMNS = {"cityscapes": METRICS["cityscapes"], "nyuv2": METRICS["nyuv2"]}
SETUPS = (("cityscapes", "segnet"), ("cityscapes", "deeplabv3plus"), ("nyuv2", "segnet"), ("nyuv2", "deeplabv3plus"))
ALL_METHODS = tuple(METHODS.values())

#: scale -> (setups, methods, seeds, severities)
PLAN: dict[str, tuple[tuple[tuple[str, str], ...], tuple[str, ...], int, tuple[int, ...]]] = {
    "test": ((("cityscapes", "segnet"),), ("unit_scal",), 1, (5,)),
    "smoke": (SETUPS, ("unit_scal", "uw"), 1, (1, 2, 3, 4, 5)),
    "cpu": (SETUPS, ALL_METHODS, 2, (1, 2, 3, 4, 5)),
    "paper": (SETUPS, ALL_METHODS, 3, (1, 2, 3, 4, 5)),
}


def _published(dataset: str, network: str, mto: str, column: int) -> Published:
    table = TABLE_A8 if dataset == "cityscapes" else TABLE_A9
    value = table[(network, mto)][column]
    source = (
        "001 Table A8" if dataset == "cityscapes" else ("001 Tables 3, A9" if network == "segnet" else "001 Table A9")
    )
    return Published(value, source, "lower", "mean of 3 seeds; 15 corruptions x 5 severities", "")


def delta_t(
    mtl: Mapping[str, Mapping[tuple[str, int], float]],
    stl: Mapping[str, Mapping[tuple[str, int], float]],
    mtl_clean: Mapping[str, float],
    stl_clean: Mapping[str, float],
    higher: Mapping[str, bool],
) -> dict[str, float]:
    """001 eq. 6 per metric key: mean over (corruption, severity) of (-1)^p [M^MTL/M^MTL_clean - M^STL/M^STL_clean]
    (NaN where a clean value is 0 or a value is missing)."""
    out: dict[str, float] = {}
    for key, values in mtl.items():
        terms = []
        for cs, value in values.items():
            other = stl.get(key, {}).get(cs)
            if other is None or not mtl_clean.get(key) or not stl_clean.get(key):
                continue
            d = value / mtl_clean[key] - other / stl_clean[key]
            terms.append(-d if higher[key] else d)
        finite = [t for t in terms if math.isfinite(t)]
        out[key] = sum(finite) / len(finite) if finite and len(finite) == len(terms) else math.nan
    return out


def corrupted_test_metrics(
    problem: Any,
    model: Any,
    corruptions: Sequence[str],
    severities: Sequence[int],
    *,
    seed: int = 0,
    batch_size: int = 8,
) -> tuple[dict[str, float], dict[str, dict[tuple[str, int], float]]]:
    """Clean test metrics and ``{"task.metric": {(corruption, severity): value}}`` of ``model`` on ``problem``'s
    test inputs corrupted (labels unchanged; the same corrupted images for every model: seeded by ``seed``)."""
    import torch

    from mtlbench.training.evaluation import evaluate

    device = torch.device("cpu")
    clean, _ = evaluate(model, problem, "test", batch_size=batch_size, device=device)
    flat = {f"{t}.{m}": v for t, metrics in clean.items() for m, v in metrics.items()}
    out: dict[str, dict[tuple[str, int], float]] = {k: {} for k in flat}
    with test_images(problem) as swap:
        for corruption in corruptions:
            for severity in severities:
                swap(corruption, severity, seed)
                metrics, _ = evaluate(model, problem, "test", batch_size=batch_size, device=device)
                for t, values in metrics.items():
                    for m, v in values.items():
                        out[f"{t}.{m}"][(corruption, severity)] = float(v)
    return flat, out


class test_images:
    """Swap a prepared problem's test images for corrupted copies; the clean ones come back on exit.
    Dense problems (cityscapes, synthetic_scenes: uint8 N x H x W x 3) and nyuv2 (uint8, or float in [0, 1]:
    x255, rounded, corrupted, /255)."""

    __test__ = False  # not a pytest test class

    def __init__(self, problem: Any) -> None:
        self.problem = problem
        if hasattr(problem, "_arrays") and "test" in getattr(problem, "_arrays", {}):
            self.store = problem._arrays["test"]
        elif hasattr(problem, "_data"):
            problem._split("test")
            self.store = problem._data["test"]
        else:
            raise TypeError(f"{problem.name}: no test images to corrupt")
        self.clean = self.store["image"]
        self._cache: dict[int, Any] = {}

    def __enter__(self) -> Any:
        import numpy as np

        from mtlbench.data.corruptions import corrupt_images

        clean = np.asarray(self.clean)
        as_float = clean.dtype != np.uint8
        base = np.uint8(np.clip(np.round(clean * 255.0), 0, 255)) if as_float else clean
        # nyuv2 reads its test rows through indices: corrupt the rows it evaluates only
        indices = getattr(self.problem, "_indices", None)
        rows = indices.get("test") if isinstance(indices, dict) else None

        def swap(corruption: str, severity: int, seed: int) -> None:
            images = base.copy()
            chosen = np.arange(len(base)) if rows is None else np.asarray(rows)
            images[chosen] = corrupt_images(base[chosen], corruption, severity, seed=seed)
            self.store["image"] = images.astype(np.float32) / 255.0 if as_float else images

        return swap

    def __exit__(self, *exc: object) -> None:
        self.store["image"] = self.clean


@register_study
class Corruptions001(Study):
    name = "001-corruptions"
    paper = "001"
    title = "Robustness to common corruptions: MTL vs STL (001 eq. 6)"
    targets = "Section 4.3, Fig. 4, Tables 3, A8, A9"
    problems = ("cityscapes", "nyuv2", "synthetic_scenes")
    description = "ImageNet-C's 15 corruptions x 5 severities on the test inputs; delta_t of MTL vs STL per metric."
    scales: ClassVar[dict[str, ScaleInfo]] = {
        "test": ScaleInfo("Cityscapes stand-in, SegNet, EW + 2 STL, 1 seed, 1 epoch, severity 5", 3, 0.002),
        "smoke": ScaleInfo("both stand-ins x SegNet/DeepLabV3+, EW and UW + STL, 1 seed, 3 epochs", 18, 0.05),
        "cpu": ScaleInfo("both stand-ins x SegNet/DeepLabV3+, 6 methods + STL, 2 seeds, 8 epochs", 84, 3.0),
        "paper": ScaleInfo(
            "001's protocol on Cityscapes and NYUv2, 6 methods at 001's best lr, 3 seeds", 126, 900.0, 250.0
        ),
    }

    def cells(self) -> list[Cell]:
        out = []
        for dataset, network in SETUPS:
            columns = [f"{t}.{m}" for t, m in COLUMNS[dataset]] + ["mean"]
            for mto in METHODS:
                for index, column in enumerate(columns):
                    out.append(
                        Cell(
                            f"{dataset}-{network}/{METHODS[mto]}/{column}",
                            f"{dataset} {NETWORKS[network]} {mto}: δ {column}",
                            _published(dataset, network, mto, index),
                            "lower",
                        )
                    )
            out.append(
                Cell(
                    f"{dataset}-{network}/fig/unit_scal",
                    f"{dataset} {NETWORKS[network]} EW: δ per corruption (figure)",
                    no_number("001 Fig. 4" if (dataset, network) == ("nyuv2", "segnet") else "001 Fig. A10"),
                    "lower",
                )
            )
        return out

    def claims(self) -> list[Claim]:
        return [
            Claim(
                "no_consistent_mtl_robustness",
                "No MTO method gives δ_t < 0 (MTL more robust) on every metric of a setup",
                "001 section 4.3 (Conclusion)",
                "qualitative",
            ),
            Claim(
                "nyu_segnet_stl_seg_depth",
                "NYUv2 + SegNet + EW: STL is more robust on segmentation and depth (δ > 0)",
                "001 Fig. 4, section 4.3",
                "difference",
                "effect: Table 3's EW deltas",
            ),
            Claim(
                "nyu_normals_mtl",
                "NYUv2: the normal task's δ_Mean and δ_Median are < 0 (MTL better) for EW",
                "001 Appendix A6, Table A9",
                "difference",
                "effect: Table A9's EW deltas",
            ),
            Claim(
                "city_depth_network",
                "Cityscapes depth: MTL more robust with SegNet (δ < 0), STL with DeepLabV3 (δ > 0), EW",
                "001 Appendix A6, Table A8",
                "difference",
                "effect: Table A8's EW deltas",
            ),
        ]

    # ---------------------------------------------------------------------------------------- run
    def execute(self, context: StudyContext) -> StudyOutcome:
        from mtlbench.data.corruptions import COMMON
        from mtlbench.studies.p001_common import run_config, train_model

        self.check_scale(context.scale)
        outcome = self.outcome(context.scale)
        plan_setups, methods, seeds, severities = PLAN[context.scale]
        setups = [setup(d, n, context.scale) for d, n in plan_setups]
        note = stand_in_note(setups)
        if note:
            outcome.notes.append(note)
        outcome.notes.append(
            f"{len(COMMON)} ImageNet-C corruptions x severities {list(severities)}; {seeds} seed(s); methods "
            f"{', '.join(PAPER_NAME[m] for m in methods)}; δ_t as 001 eq. 6 (lower = MTL more robust, 001's sign). "
            "Models: the epoch with the lowest summed validation loss; lr 1e-3 on the stand-ins, 001's best Adam lr "
            "(Tables A3-A6) on the real data."
        )
        checkpoints = context.results.parent / "checkpoints" / self.name
        # (setup label, method) -> seed -> {metric key: delta}; per-corruption deltas for the figure
        deltas: dict[tuple[str, str], dict[int, dict[str, float]]] = {}
        per_corruption: dict[str, dict[str, dict[str, list[float]]]] = {}
        for s in setups:
            for seed in range(seeds):
                stl_clean: dict[str, float] = {}
                stl: dict[str, dict[tuple[str, int], float]] = {}
                for task in s.tasks.split("_"):
                    lr = 1e-3 if s.stand_in else best_lr(s.dataset, s.network, "unit_scal")
                    problem, model = train_model(
                        run_config(s, "unit_scal", tasks=[task], seed=seed, lr=lr), checkpoints
                    )
                    clean, corrupted = corrupted_test_metrics(problem, model, COMMON, severities, seed=1000 + seed)
                    stl_clean.update(clean)
                    stl.update(corrupted)
                higher = self._directions(s)
                for method in methods:
                    lr = 1e-3 if s.stand_in else best_lr(s.dataset, s.network, method)
                    problem, model = train_model(run_config(s, method, seed=seed, lr=lr), checkpoints)
                    clean, corrupted = corrupted_test_metrics(problem, model, COMMON, severities, seed=1000 + seed)
                    values = delta_t(corrupted, stl, clean, stl_clean, higher)
                    finite = [v for v in values.values() if math.isfinite(v)]
                    values["mean"] = sum(finite) / len(finite) if finite and len(finite) == len(values) else math.nan
                    deltas.setdefault((s.label, method), {})[seed] = values
                    context.note(f"{s.label} {method} seed {seed}: mean δ {values['mean']:+.4f}")
                    if method == "unit_scal":
                        for corruption in COMMON:
                            sub = delta_t(
                                {
                                    k: {cs: v for cs, v in vs.items() if cs[0] == corruption}
                                    for k, vs in corrupted.items()
                                },
                                stl,
                                clean,
                                stl_clean,
                                higher,
                            )
                            for key, value in sub.items():
                                per_corruption.setdefault(s.label, {}).setdefault(corruption, {}).setdefault(
                                    key, []
                                ).append(value)
        self._cells(outcome, deltas)
        self._claims(outcome, deltas)
        self._figures(outcome, per_corruption, context.out)
        return outcome

    @staticmethod
    def _directions(s: Setup) -> dict[str, bool]:
        from mtlbench.problems import create_problem

        problem = create_problem(s.problem, s.tasks, **s.options)
        return {f"{t.name}.{m.name}": m.higher_is_better for t in problem.tasks for m in t.metrics}

    def _cells(
        self, outcome: StudyOutcome, deltas: Mapping[tuple[str, str], Mapping[int, Mapping[str, float]]]
    ) -> None:
        for cell in self.cells():
            label, method, column = cell.key.split("/")
            if method == "fig":
                ran = any(key == (label, "unit_scal") for key in deltas)
                note = "drawn: fig4_" + label + ".png" if ran else f"not run at {outcome.scale} scale"
                outcome.cells.append(CellResult(cell, None, None, 0, note))
                continue
            per_seed = deltas.get((label, method))
            if not per_seed:
                outcome.cells.append(CellResult(cell, None, None, 0, f"not run at {outcome.scale} scale"))
                continue
            mean, ci, n = cell_value([values.get(column, math.nan) for values in per_seed.values()])
            outcome.cells.append(CellResult(cell, mean, ci, n, "" if n else "undefined (a clean metric is 0)"))

    def _claims(
        self, outcome: StudyOutcome, deltas: Mapping[tuple[str, str], Mapping[int, Mapping[str, float]]]
    ) -> None:
        declared = {c.key: c for c in self.claims()}

        def seeds(label: str, column: str) -> dict[int, float]:
            return {
                seed: v[column] for seed, v in deltas.get((label, "unit_scal"), {}).items() if math.isfinite(v[column])
            }

        def against_zero(label: str, columns: Sequence[str], sign: str, table: Mapping, network: str) -> verdicts.Check:
            if (label, "unit_scal") not in deltas:
                return verdicts.Check(verdicts.INCONCLUSIVE, f"{label} not run at this scale")
            dataset = label.split("-")[0]
            order = [f"{t}.{m}" for t, m in COLUMNS[dataset]]
            comparisons, effects = {}, {}
            for column in columns:
                values = seeds(label, column)
                comparisons[column] = (values, {s: 0.0 for s in values})
                effects[column] = abs(table[(network, "EW")][order.index(column)])
            checks = verdicts.check_family(
                comparisons, claim="difference", alternative="greater" if sign == ">" else "less", effects=effects
            )
            combined = verdicts.combine(checks, require="all")
            return verdicts.Check(
                combined.verdict, "; ".join(f"{k}: {c.verdict} ({c.detail})" for k, c in checks.items())
            )

        results: dict[str, verdicts.Check] = {}
        # (1) no method has every metric < 0
        consistent = []
        for (label, method), per_seed in deltas.items():
            columns = [k for k in next(iter(per_seed.values())) if k != "mean"]
            means = {c: cell_value([v[c] for v in per_seed.values()])[0] for c in columns}
            if all(m is not None and m < 0 for m in means.values()):
                consistent.append(f"{label} {method}")
        results["no_consistent_mtl_robustness"] = verdicts.qualitative(
            not consistent if deltas else None,
            f"every metric < 0 for: {', '.join(consistent)}"
            if consistent
            else f"none of {len(deltas)} (setup, method)",
        )
        results["nyu_segnet_stl_seg_depth"] = against_zero(
            "nyuv2-segnet", ["S.miou", "S.acc", "D.abs_err", "D.rel_err"], ">", TABLE_A9, "segnet"
        )
        results["nyu_normals_mtl"] = against_zero(
            "nyuv2-segnet", ["N.mean_angle", "N.median_angle"], "<", TABLE_A9, "segnet"
        )
        seg = against_zero("cityscapes-segnet", ["D.abs_err", "D.rel_err"], "<", TABLE_A8, "segnet")
        dlv3 = against_zero("cityscapes-deeplabv3plus", ["D.abs_err", "D.rel_err"], ">", TABLE_A8, "deeplabv3plus")
        both = verdicts.combine({"segnet": seg, "deeplabv3plus": dlv3}, require="all")
        results["city_depth_network"] = verdicts.Check(
            both.verdict, f"SegNet: {seg.detail} | DeepLabV3+: {dlv3.detail}"
        )
        for key, check in results.items():
            outcome.claims.append(ClaimResult(declared[key], check.verdict, check.detail))

    def _figures(self, outcome: StudyOutcome, per_corruption: Mapping[str, Any], out: Path) -> None:
        """Fig. 4 / A10: EW's delta per corruption (mean over severities and seeds) and metric, as a heat map."""
        if not per_corruption:
            return
        import numpy as np

        from mtlbench.analysis.figures import pyplot, save

        plt = pyplot()
        for label, table in per_corruption.items():
            corruptions = list(table)
            metrics = list(next(iter(table.values())))
            grid = np.array(
                [
                    [np.nanmean(table[c][m]) if np.isfinite(table[c][m]).any() else np.nan for m in metrics]
                    for c in corruptions
                ]
            )
            fig, ax = plt.subplots(figsize=(1.0 + 0.9 * len(metrics), 0.8 + 0.32 * len(corruptions)))
            bound = float(np.nanmax(np.abs(grid))) if np.isfinite(grid).any() else 1.0
            image = ax.imshow(grid, cmap="coolwarm", vmin=-bound, vmax=bound, aspect="auto")
            ax.set_xticks(range(len(metrics)), metrics, rotation=45, ha="right")
            ax.set_yticks(range(len(corruptions)), corruptions)
            for i in range(len(corruptions)):
                for j in range(len(metrics)):
                    if np.isfinite(grid[i, j]):
                        ax.text(j, i, f"{grid[i, j]:.2f}", ha="center", va="center", fontsize=6)
            fig.colorbar(image, ax=ax, label="δ (> 0: STL more robust)")
            ax.set_title(f"{label}, EW: δ per corruption")
            figure = save(fig, out, f"fig4_{label}", f"{label}: EW vs STL, δ per corruption")
            outcome.figures.append(str(figure.png))

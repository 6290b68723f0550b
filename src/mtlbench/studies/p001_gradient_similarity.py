"""``001-gradient-similarity``: Elich et al. (001), section 4.2, Fig. 3 -- gradient similarity, task vs sample pairs.

For EW runs (001: the best EW configuration) on each dataset and network of 001 -- Cityscapes and NYUv2 with
SegNet and DeepLabV3+, CelebA with its ResNet-18 and linear heads -- mtlbench's gradient diagnostics
(:mod:`mtlbench.training.diagnostics`, ``grad_metrics_every`` = 5 steps as 001) record on the shared
parameters, for pairs of tasks on one sample (MTL) and pairs of samples of one task (STL): S_cos (001 eq. 4),
S_mag = 2||g|| ||g'|| / (||g||^2 + ||g'||^2) (eq. 5) and the fraction of conflicting components, summarised
per epoch (mean, std, 2.5/97.5 percentiles; the analysis ``gradients`` draws them as 001's Fig. 3).
Multi-MNIST (LeNet, tasks CL_CR) is an mtlbench extra with no counterpart in 001.

Figure 3 prints no numbers: every cell is ours (the mean over epochs of the epoch means) with "no published
number". Claims (section 4.2): magnitude differences are more pronounced in MTL (S_mag lower for task pairs
than for sample pairs); direction conflicts are not an exclusive problem of MTL (S_cos of task pairs not below
that of sample pairs in every setup) and the direction similarity is similar (Fig. 3 caption); a similar
fraction of conflicting components in MTL and STL (within 0.05); DeepLabV3+ (more task-specific
parameters) narrows the spread of S_cos against SegNet, for MTL and STL.

Differences: mtlbench's diagnostics use the first 4 samples of each recorded batch and every task (001: 8
random samples or tasks when the batch or the task count is large); at the test and smoke scales the CelebA
stand-in trains 8 of the 40 attributes. 001's Figs. A6 (cosine split by sign), A7 (dot products) and A8
(component sign counts) are not recorded by the diagnostics and not reproduced.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
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
    cell_value,
    no_number,
)
from mtlbench.studies.p001_common import Setup, has_real, run_config, setup, stand_in_note

MEASURES = (("cos", "S_cos"), ("mag", "S_mag"), ("conflict", "conflicting fraction"))
GROUPS = (("mtl", "MTL (task pairs)"), ("stl", "STL (sample pairs)"))
#: 001's setups, then the mtlbench extra
DENSE = (("cityscapes", "segnet"), ("cityscapes", "deeplabv3plus"), ("nyuv2", "segnet"), ("nyuv2", "deeplabv3plus"))
LABELS = {
    "cityscapes-segnet": "Cityscapes SegNet",
    "cityscapes-deeplabv3plus": "Cityscapes DeepLabV3+",
    "nyuv2-segnet": "NYUv2 SegNet",
    "nyuv2-deeplabv3plus": "NYUv2 DeepLabV3+",
    "celeba-resnet18": "CelebA ResNet-18",
    "multi_mnist-lenet": "Multi-MNIST LeNet (mtlbench extra)",
}
#: scale -> (setup labels, seeds, grad_metrics_every)
PLAN: dict[str, tuple[tuple[str, ...], int, int]] = {
    "test": (("cityscapes-segnet", "multi_mnist-lenet"), 1, 1),
    "smoke": (tuple(LABELS), 1, 2),
    "cpu": (tuple(LABELS), 2, 5),
    "paper": (tuple(LABELS), 3, 5),
}
CONFLICT_MARGIN = 0.05
COS_MARGIN = 0.05


def _setup(label: str, scale: str) -> Setup:
    dataset, network = label.split("-")
    if dataset in ("cityscapes", "nyuv2"):
        return setup(dataset, network, scale)
    if dataset == "celeba":
        if scale == "paper" or has_real("celeba"):
            settings = {"epochs": 100, "batch_size": 512, "scheduler": "step", "step_size": 30, "scheduler_gamma": 0.5}
            return Setup("celeba", "resnet18", "celeba", "all", {}, settings if scale == "paper" else {"epochs": 2})
        small = scale in ("test", "smoke")
        options = {"train_size": 64 if small else 1024, "eval_size": 32 if small else 256, "width": 4 if small else 8}
        tasks = "_".join(f"A{i}" for i in range(8)) if small else "all"
        return Setup(
            "celeba", "resnet18", "synthetic_attributes", tasks, options, {"epochs": 2, "batch_size": 32}, True
        )
    size = {"test": 128, "smoke": 2048, "cpu": 20000}.get(scale)
    options = {} if size is None else {"train_size": size}
    epochs = {"test": 1, "smoke": 2, "cpu": 10}.get(scale, 100)
    return Setup("multi_mnist", "lenet", "multi_mnist", "CL_CR", options, {"epochs": epochs, "batch_size": 256})


def _available(s: Setup) -> bool:
    if s.problem == "multi_mnist":
        return has_real("mnist")
    return True


@register_study
class GradientSimilarity001(Study):
    name = "001-gradient-similarity"
    paper = "001"
    title = "Gradient similarity of task pairs (MTL) and sample pairs (STL) over training"
    targets = "Section 4.2, Fig. 3"
    problems = ("cityscapes", "nyuv2", "celeba", "multi_mnist", "synthetic_scenes", "synthetic_attributes")
    description = "EW with gradient diagnostics every 5 steps: S_cos, S_mag, conflicting fraction, MTL vs STL pairs."
    scales: ClassVar[dict[str, ScaleInfo]] = {
        "test": ScaleInfo("Cityscapes stand-in SegNet and Multi-MNIST, EW, 1 seed, 1 epoch, every step", 2, 0.002),
        "smoke": ScaleInfo("all 6 setups (stand-ins), EW, 1 seed, 2-3 epochs", 6, 0.05),
        "cpu": ScaleInfo("all 6 setups (stand-ins), EW, 2 seeds, 8-10 epochs", 12, 2.0),
        "paper": ScaleInfo("001's protocol: 5 setups + Multi-MNIST, EW at 001's best lr, 3 seeds", 18, 600.0, 150.0),
    }

    def cells(self) -> list[Cell]:
        out = []
        for label, title in LABELS.items():
            source = "no counterpart in 001 (mtlbench extra)" if label.startswith("multi_mnist") else "001 Fig. 3"
            for group, group_title in GROUPS:
                for measure, name in MEASURES:
                    out.append(
                        Cell(
                            f"{label}/{group}/{measure}",
                            f"{title}: {group_title} {name}, mean over epochs",
                            no_number(source),
                            "higher" if measure != "conflict" else "lower",
                        )
                    )
        return out

    def claims(self) -> list[Claim]:
        source = "001 section 4.2, Fig. 3"
        return [
            Claim(
                "magnitude_lower_in_mtl",
                "Magnitude differences are more pronounced in MTL: S_mag(task pairs) < S_mag(sample pairs)",
                source,
                "difference",
                "each of 001's setups; paired over seeds",
            ),
            Claim(
                "conflicts_not_mtl_only",
                "Direction conflicts are not an exclusive problem of MTL: S_cos(task pairs) is not below "
                f"S_cos(sample pairs) by more than {COS_MARGIN:g} in every setup",
                "001 section 4.2 (Results, Conclusion)",
                "qualitative",
                f"{COS_MARGIN:g} in S_cos",
            ),
            Claim(
                "similar_direction",
                "The direction similarity is similar for MTL and STL: S_cos(MTL) - S_cos(STL) within "
                f"±{COS_MARGIN:g} in most setups",
                "001 Fig. 3 caption",
                "qualitative",
                f"{COS_MARGIN:g} in S_cos, majority of setups",
            ),
            Claim(
                "similar_conflicts",
                "A similar fraction of conflicting components in MTL and STL",
                source,
                "no_difference",
                f"±{CONFLICT_MARGIN:g} in the fraction (TOST)",
            ),
            Claim(
                "deeplab_narrower",
                "DeepLabV3+ narrows the spread (std) of S_cos against SegNet, for MTL and STL",
                source,
                "qualitative",
            ),
        ]

    def execute(self, context: StudyContext) -> StudyOutcome:
        from mtlbench.studies.p001_common import best_lr

        self.check_scale(context.scale)
        outcome = self.outcome(context.scale)
        labels, seeds, every = PLAN[context.scale]
        setups = {label: _setup(label, context.scale) for label in labels}
        note = stand_in_note([s for s in setups.values() if s.dataset in ("cityscapes", "nyuv2")])
        if note:
            outcome.notes.append(note)
        if any(s.problem == "synthetic_attributes" for s in setups.values()):
            outcome.notes.append(
                "CelebA is not prepared here: the generated 40-attribute problem synthetic_attributes stood in "
                "(8 attributes at the test and smoke scales)"
            )
        outcome.notes.append(
            f"EW (unit_scal), Adam, gradient diagnostics every {every} step(s) (001: 5) on the first 4 samples of the "
            "batch (001: 8 random samples or tasks); 001's Figs. A6-A8 are not recorded."
        )
        # label -> seed -> group.measure -> {"mean": mean of epoch means, "std": mean of epoch stds}
        found: dict[str, dict[int, dict[str, dict[str, float]]]] = {}
        for label, s in setups.items():
            if not _available(s):
                outcome.notes.append(
                    f"{LABELS[label]}: not run (its data is not prepared: `mtlbench data fetch mnist`)"
                )
                continue
            for seed in range(seeds):
                lr = None
                if not s.stand_in and s.dataset in ("cityscapes", "nyuv2"):
                    lr = best_lr(s.dataset, s.network, "unit_scal")
                elif s.dataset in ("cityscapes", "nyuv2"):
                    lr = 1e-3
                config = run_config(s, "unit_scal", seed=seed, lr=lr, grad_metrics_every=every)
                found.setdefault(label, {})[seed] = self._train(config)
                summary = ", ".join(f"{k} {v['mean']:.3f}" for k, v in found[label][seed].items())
                context.note(f"{label} seed {seed}: {summary}")
        self._cells(outcome, found)
        self._claims(outcome, found)
        self._figure(outcome, found, context)
        return outcome

    @staticmethod
    def _train(config: Any) -> dict[str, dict[str, Any]]:
        """Train in this process; per group.measure the epoch means/stds/percentiles over training."""
        from mtlbench.training.trainer import Trainer

        result = Trainer(config, require_reference=False).run()
        if result.status != "completed":
            raise RuntimeError(f"{config.problem} EW run failed: {result.error}")
        series: dict[str, dict[str, Any]] = {}
        for record in result.history:
            grad = (record.get("extra") or {}).get("grad") or {}
            for group, _ in GROUPS:
                for measure, _ in MEASURES:
                    stats = (grad.get(group) or {}).get(measure)
                    entry = series.setdefault(f"{group}.{measure}", {"epochs": []})
                    entry["epochs"].append(stats if stats and stats.get("n") else None)
        for entry in series.values():
            means = [e["mean"] for e in entry["epochs"] if e is not None and math.isfinite(e["mean"])]
            stds = [e["std"] for e in entry["epochs"] if e is not None and math.isfinite(e["std"])]
            entry["mean"] = sum(means) / len(means) if means else math.nan
            entry["std"] = sum(stds) / len(stds) if stds else math.nan
        return series

    def _cells(self, outcome: StudyOutcome, found: Mapping[str, Mapping[int, Mapping[str, Any]]]) -> None:
        for cell in self.cells():
            label, group, measure = cell.key.split("/")
            per_seed = found.get(label)
            if not per_seed:
                outcome.cells.append(CellResult(cell, None, None, 0, f"not run at {outcome.scale} scale"))
                continue
            values = [v.get(f"{group}.{measure}", {}).get("mean", math.nan) for v in per_seed.values()]
            mean, ci, n = cell_value(values)
            outcome.cells.append(CellResult(cell, mean, ci, n, "" if n else "no recorded step"))

    def _claims(self, outcome: StudyOutcome, found: Mapping[str, Mapping[int, Mapping[str, Any]]]) -> None:
        declared = {c.key: c for c in self.claims()}
        paper = [label for label in found if not label.startswith("multi_mnist")]

        def per_seed(label: str, key: str, stat: str = "mean") -> dict[int, float]:
            return {seed: v[key][stat] for seed, v in found[label].items() if key in v and math.isfinite(v[key][stat])}

        results: dict[str, verdicts.Check] = {}
        if not paper:
            for key in declared:
                results[key] = verdicts.Check(verdicts.INCONCLUSIVE, "none of 001's setups ran at this scale")
        else:
            mag = {label: (per_seed(label, "stl.mag"), per_seed(label, "mtl.mag")) for label in paper}
            checks = verdicts.check_family(mag, claim="difference", alternative="greater", effect=0.05)
            combined = verdicts.combine(checks, require="all")
            results["magnitude_lower_in_mtl"] = verdicts.Check(
                combined.verdict, "; ".join(f"{k}: {c.verdict} ({c.detail})" for k, c in checks.items())
            )
            gaps = {}
            for label in paper:
                a, b = per_seed(label, "mtl.cos"), per_seed(label, "stl.cos")
                common = sorted(set(a) & set(b))
                if common:
                    gaps[label] = sum(a[s] - b[s] for s in common) / len(common)
            text = ", ".join(f"{k} {v:+.3f}" for k, v in gaps.items())
            if not gaps:
                for key in ("conflicts_not_mtl_only", "similar_direction"):
                    results[key] = verdicts.Check(verdicts.INCONCLUSIVE, "no S_cos recorded")
            else:
                below = [k for k, g in gaps.items() if g <= -COS_MARGIN]
                if len(below) < len(gaps):
                    results["conflicts_not_mtl_only"] = verdicts.qualitative(True, f"S_cos(MTL) - S_cos(STL): {text}")
                elif len(gaps) < 2:
                    results["conflicts_not_mtl_only"] = verdicts.Check(
                        verdicts.INCONCLUSIVE, f"S_cos(MTL) - S_cos(STL): {text} (one setup)"
                    )
                else:
                    results["conflicts_not_mtl_only"] = verdicts.qualitative(False, f"S_cos(MTL) - S_cos(STL): {text}")
                within = [k for k, g in gaps.items() if abs(g) < COS_MARGIN]
                results["similar_direction"] = verdicts.qualitative(
                    2 * len(within) > len(gaps),
                    f"within ±{COS_MARGIN:g} in {len(within)} of {len(gaps)} setups; S_cos(MTL) - S_cos(STL): {text}",
                )
            conflict = {label: (per_seed(label, "mtl.conflict"), per_seed(label, "stl.conflict")) for label in paper}
            checks = verdicts.check_family(conflict, claim="no_difference", margin=CONFLICT_MARGIN, kind="equal")
            combined = verdicts.combine(checks, require="all")
            results["similar_conflicts"] = verdicts.Check(
                combined.verdict, "; ".join(f"{k}: {c.verdict} ({c.detail})" for k, c in checks.items())
            )
            pairs = []
            for dataset in ("cityscapes", "nyuv2"):
                seg, dlv3 = f"{dataset}-segnet", f"{dataset}-deeplabv3plus"
                if seg in found and dlv3 in found:
                    for group in ("mtl", "stl"):
                        a = cell_value(list(per_seed(dlv3, f"{group}.cos", "std").values()))[0]
                        b = cell_value(list(per_seed(seg, f"{group}.cos", "std").values()))[0]
                        if a is not None and b is not None:
                            pairs.append((f"{dataset} {group}", a < b, f"{a:.3f} vs {b:.3f}"))
            results["deeplab_narrower"] = verdicts.qualitative(
                all(ok for _, ok, _ in pairs) if pairs else None,
                "; ".join(f"{name}: std DLV3+ vs SegNet {text}" for name, _, text in pairs)
                or "needs both networks of a dataset",
            )
        for key, check in results.items():
            outcome.claims.append(ClaimResult(declared[key], check.verdict, check.detail))

    def _figure(
        self, outcome: StudyOutcome, found: Mapping[str, Mapping[int, Mapping[str, Any]]], context: StudyContext
    ) -> None:
        """001 Fig. 3: per setup (rows) and measure (columns), MTL (blue) and STL (red) over epochs: mean of the
        epoch means (line), +-std (band), 2.5/97.5 percentiles (dotted); averaged over seeds."""
        if not found:
            return
        import numpy as np

        from mtlbench.analysis.figures import pyplot, save

        plt = pyplot()
        fig, axes = plt.subplots(len(found), 3, figsize=(11, 2.6 * len(found)), squeeze=False)
        for row, (label, per_seed) in enumerate(found.items()):
            for col, (measure, name) in enumerate(MEASURES):
                ax = axes[row][col]
                for group, colour in (("mtl", "tab:blue"), ("stl", "tab:red")):
                    stats: dict[str, list[list[float]]] = {k: [] for k in ("mean", "std", "p2_5", "p97_5")}
                    for values in per_seed.values():
                        epochs = values.get(f"{group}.{measure}", {}).get("epochs", [])
                        for k in stats:
                            stats[k].append([math.nan if e is None else e.get(k, math.nan) for e in epochs])
                    if not stats["mean"] or not stats["mean"][0]:
                        continue
                    length = min(len(s) for s in stats["mean"])
                    with np.errstate(all="ignore"):
                        arr = {
                            k: np.nanmean(np.array([s[:length] for s in v], dtype=float), axis=0)
                            for k, v in stats.items()
                        }
                    x = np.arange(1, length + 1)
                    ax.plot(x, arr["mean"], color=colour, label=group.upper())
                    ax.fill_between(x, arr["mean"] - arr["std"], arr["mean"] + arr["std"], color=colour, alpha=0.15)
                    ax.plot(x, arr["p2_5"], color=colour, linestyle=":", linewidth=0.8)
                    ax.plot(x, arr["p97_5"], color=colour, linestyle=":", linewidth=0.8)
                ax.set_title(f"{LABELS[label]}: {name}", fontsize=8)
                ax.tick_params(labelsize=7)
                if row == len(found) - 1:
                    ax.set_xlabel("epoch")
            axes[row][0].legend(fontsize=7)
        figure = save(
            fig, context.out, "fig3_gradient_similarity", "001 Fig. 3: MTL (task pairs) vs STL (sample pairs)"
        )
        outcome.figures.append(str(figure.png))

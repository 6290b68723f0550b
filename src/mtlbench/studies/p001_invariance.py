"""``001-invariance``: Elich et al. (001), Appendix A2, Figs. A1/A2 -- the loss-scaling toy, all 8 experiments.

001's handcrafted experiment (:mod:`.p001_uw_optimal` holds the toy): two L1 "depth" tasks in different
units, a shared two-layer backbone (20 units, LeakyReLU), two two-layer heads, 100 epochs; its 8 experiments
are EW + SGD, EW + Adam, UW-O + SGD and EW with one Adam per task, each unscaled and with scaled losses --
the first six with a frozen backbone (Fig. A1), all eight with a learnable one (Fig. A2). 001 states the
scaling as 10x / 0.1x in its text and captions but 10x / 0.01x in its list of experiments: both run here.

Per scaling, backbone mode, configuration and parameter group: (a) the figures' quantities over training
from free runs (mean raw and scaled-and-weighted losses, gradient norm, update norm; solid unscaled, dashed
scaled), and (b) the cell: the largest relative difference, over every step, between the unscaled run's
update and the update a scaled twin proposes from the same parameters (the robust invariance measure of
``001-uw-optimal``: free runs of L1 losses drift apart by float rounding even where the rule is invariant).
Claims (001 A2): Adam's head updates are invariant with a frozen backbone; with a learnable one a shared
Adam is not, one Adam per task is; UW-O is invariant everywhere; SGD never -- each checked under both
scalings. Figs. A1/A2 print no numbers.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

from mtlbench.analysis.claims import qualitative
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
from mtlbench.studies.p001_uw_optimal import ADAM_EPS, CONFIGS, GROUPS, TOLERANCE

#: scale -> (epochs, samples; batch 32)
SIZES = {"test": (1, 128), "smoke": (20, 1024), "cpu": (100, 1024), "paper": (100, 1024)}

#: task 2's scale: 0.1 (001's text and captions) and 0.01 (001's list of experiments)
SECOND_SCALES = (0.1, 0.01)
LABELS = {
    "ew_sgd": "EW + SGD",
    "ew_adam": "EW + Adam",
    "uwo_sgd": "UW-O + SGD",
    "ew_adam_per_task": "EW + Adam per task",
}


def _log10(values: list[float]) -> list[float]:
    """log10 on a linear axis (matplotlib's log axes render slowly); non-positive values are dropped (NaN)."""
    return [math.log10(v) if v > 0 else math.nan for v in values]


def _runs() -> list[tuple[str, bool]]:
    frozen = [(label, True) for label, _, opt in CONFIGS if opt != "adam_per_task"]
    return frozen + [(label, False) for label, _, _ in CONFIGS]


def _mode(frozen: bool) -> str:
    return "frozen" if frozen else "learnable"


@register_study
class Invariance001(Study):
    name = "001-invariance"
    paper = "001"
    title = "Loss-scale invariance in 001's toy: the 8 experiments, frozen and learnable backbone"
    targets = "Appendix A2, Figs. A1/A2"
    problems = ("generated two-head toy",)
    description = "001's toy: losses, gradient and update magnitudes per parameter group, scaled 10x/0.1 and 10x/0.01."
    scales: ClassVar[dict[str, ScaleInfo]] = {
        "test": ScaleInfo("every experiment, both scalings, 1 epoch of 128 samples", 56, 0.003),
        "smoke": ScaleInfo("every experiment, both scalings, 20 epochs", 56, 0.03),
        "cpu": ScaleInfo("every experiment, both scalings, 100 epochs (001's length)", 56, 0.1),
        "paper": ScaleInfo("every experiment, both scalings, 100 epochs", 56, 0.1, 0.0),
    }

    def cells(self) -> list[Cell]:
        return [
            Cell(
                f"x{second:g}/{label}/{_mode(frozen)}/{group}",
                f"10x/{second:g}x, {LABELS[label]}, {_mode(frozen)} backbone, {group}: max relative update difference",
                no_number("001 Fig. A1" if frozen else "001 Fig. A2"),
                "lower",
            )
            for second in SECOND_SCALES
            for label, frozen in _runs()
            for group in GROUPS
            if not (frozen and group == "backbone")
        ]

    def claims(self) -> list[Claim]:
        source = "001 Appendix A2 (Figs. A1/A2)"
        margin = f"relative {TOLERANCE:g}, both scalings"
        return [
            Claim(
                "adam_heads_frozen",
                "Adam's head updates are invariant with a frozen backbone",
                source,
                "qualitative",
                margin,
            ),
            Claim(
                "adam_not_learnable",
                "With a learnable backbone a shared Adam is not invariant",
                source,
                "qualitative",
                margin,
            ),
            Claim(
                "adam_per_task",
                "Separate Adam optimizers per task are invariant in every group",
                source,
                "qualitative",
                margin,
            ),
            Claim(
                "uwo_everywhere",
                "UW-O + SGD is invariant in every group, frozen or learnable",
                source,
                "qualitative",
                margin,
            ),
            Claim("sgd_never", "EW + SGD is never invariant", source, "qualitative", margin),
        ]

    def execute(self, context: StudyContext) -> StudyOutcome:
        self.check_scale(context.scale)
        import torch

        threads = torch.get_num_threads()
        torch.set_num_threads(context.threads or 1)  # tiny networks: more threads only contend
        try:
            return self._execute(context)
        finally:
            torch.set_num_threads(threads)

    def _execute(self, context: StudyContext) -> StudyOutcome:
        from mtlbench.studies.p001_uw_optimal import run_configuration, run_free

        epochs, samples = SIZES[context.scale]
        outcome = self.outcome(context.scale)
        outcome.notes.append(
            f"{epochs} epochs of {samples} samples. 001 scales task 2's loss by 0.1 in its text and figure captions "
            "but by 0.01 in its list of experiments: both run here. SGD lr 0.01 (momentum 0.9), Adam lr 1e-3 "
            "(001 gives none), float64, Adam "
            f"eps {ADAM_EPS:g} (001: 1e-8, which it notes makes the runs drift apart slowly)."
        )
        config = {label: (weighting, opt) for label, weighting, opt in CONFIGS}
        differences: dict[tuple[float, str, bool, str], float] = {}
        free: dict[tuple[float, bool], dict[str, tuple[Any, Any]]] = {}
        for second in SECOND_SCALES:
            for label, frozen in _runs():
                weighting, opt = config[label]
                twin = run_configuration(weighting, opt, frozen_backbone=frozen, epochs=epochs, scales=(10.0, second))
                for group in GROUPS:
                    if not (frozen and group == "backbone"):
                        differences[(second, label, frozen, group)] = max(twin.relative_difference[group])
                common = {"frozen_backbone": frozen, "epochs": epochs, "n_samples": samples}
                plain = run_free(weighting, opt, **common)
                scaled = run_free(weighting, opt, scales=(10.0, second), **common)
                free.setdefault((second, frozen), {})[label] = (plain, scaled)
        by_key = {c.key: c for c in self.cells()}
        for (second, label, frozen, group), value in differences.items():
            outcome.cells.append(CellResult(by_key[f"x{second:g}/{label}/{_mode(frozen)}/{group}"], value, None, 1))

        def invariant(label: str, frozen: bool, groups: tuple[str, ...] = GROUPS) -> tuple[bool, str]:
            found = {
                (s, g): differences[(s, label, frozen, g)]
                for s in SECOND_SCALES
                for g in groups
                if (s, label, frozen, g) in differences
            }
            text = ", ".join(f"x{s:g} {g} {v:.1e}" for (s, g), v in found.items())
            return all(v < TOLERANCE for v in found.values()), text

        adam_frozen, d1 = invariant("ew_adam", True, ("head1", "head2"))
        adam_learn, d2 = invariant("ew_adam", False)
        per_task, d3 = invariant("ew_adam_per_task", False)
        uwo_f, d4 = invariant("uwo_sgd", True)
        uwo_l, d5 = invariant("uwo_sgd", False)
        # "never": no group of EW + SGD is invariant under either scaling
        sgd_any = [k for k, v in differences.items() if k[1] == "ew_sgd" and v < TOLERANCE]
        checks = {
            "adam_heads_frozen": qualitative(adam_frozen, d1),
            "adam_not_learnable": qualitative(not adam_learn, d2),
            "adam_per_task": qualitative(per_task, d3),
            "uwo_everywhere": qualitative(uwo_f and uwo_l, f"frozen: {d4}; learnable: {d5}"),
            "sgd_never": qualitative(
                not sgd_any,
                "invariant groups: " + ", ".join(f"x{s:g} {m} {_mode(f)} {g}" for s, m, f, g in sgd_any)
                if sgd_any
                else "every group of EW + SGD differs by more than the tolerance under both scalings",
            ),
        }
        for claim in self.claims():
            outcome.claims.append(ClaimResult(claim, checks[claim.key].verdict, checks[claim.key].detail))
        self._figures(outcome, free, context)
        return outcome

    def _figures(
        self, outcome: StudyOutcome, free: dict[tuple[float, bool], dict[str, tuple[Any, Any]]], context: StudyContext
    ) -> None:
        """Figs. A1 (frozen) and A2 (learnable), one per scaling: columns = experiments; rows = raw losses,
        scaled-and-weighted losses, gradient norm and update norm per group (solid unscaled, dashed scaled)."""
        from mtlbench.analysis.figures import pyplot, save

        plt = pyplot()
        colours = {"backbone": "tab:gray", "head1": "tab:blue", "head2": "tab:orange"}
        for (second, frozen), runs in free.items():
            if context.scale == "test" and (second, frozen) != (SECOND_SCALES[0], False):
                continue  # the test scale draws one of the four figures (seconds)
            groups = [g for g in GROUPS if not (frozen and g == "backbone")]
            fig, axes = plt.subplots(4, len(runs), figsize=(3.2 * len(runs), 9.5), squeeze=False)

            def norms(attribute: str, groups: list[str] = groups) -> Any:
                return lambda t: {g: getattr(t, attribute)[g] for g in groups}

            for column, (label, (plain, scaled)) in enumerate(runs.items()):
                rows = (
                    (
                        "loss (raw units)",
                        lambda t: {"task1": [v[0] for v in t.losses], "task2": [v[1] for v in t.losses]},
                    ),
                    (
                        "loss (scaled, weighted)",
                        lambda t: {"task1": [v[0] for v in t.weighted], "task2": [v[1] for v in t.weighted]},
                    ),
                    ("gradient norm", norms("grad_norm")),
                    ("update norm", norms("update_norm")),
                )
                for row, (title, pick) in enumerate(rows):
                    ax = axes[row][column]
                    for key, values in pick(plain).items():
                        colour = colours.get(key, "tab:blue" if key == "task1" else "tab:orange")
                        ax.plot(_log10(values), color=colour, linestyle="-", label=f"{key}")
                        ax.plot(_log10(pick(scaled)[key]), color=colour, linestyle="--", label=f"{key} scaled")
                    ax.tick_params(labelsize=7)
                    if row == 0:
                        ax.set_title(LABELS[label], fontsize=9)
                    if column == 0:
                        ax.set_ylabel(f"log10 {title}", fontsize=8)
                    if row == 3:
                        ax.set_xlabel("epoch")
            axes[0][0].legend(fontsize=6)
            name = f"fig_{'A1' if frozen else 'A2'}_x{second:g}"
            caption = f"{_mode(frozen)} backbone, losses scaled 10x / {second:g}x (dashed) against 1x / 1x (solid)"
            figure = save(fig, context.out, name, caption)
            outcome.figures.append(str(figure.png))

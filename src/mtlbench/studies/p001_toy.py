"""``001-toy``: Elich et al. (001), Tables 1 and A7 and Figs. 1/A5 -- CAGrad's two-task toy, counted.

For each method (EW = the mean of the two gradients, PCGrad, CAGrad with c = 0.5), optimizer (plain
gradient descent, Adam) and learning rate, 001 reports the iteration by which all three starts
(-8.5, 7.5), (-8.5, -5), (9, 9) have reached the global minimum within 100k iterations ('-' if not all
do). The toy and its conventions are :mod:`mtlbench.problems.toy` (float32, the mean objective of the
original toy code). The runs are deterministic: there are no seeds, and a cell is one number.

Table A7 of the seed text prints ten entries per row under nine learning-rate headers (10 ... 0.001);
the tenth column has no header in the text (a learning rate below 0.001) and is not used here.
The claims are the paper's qualitative statements about these tables; each is a deterministic check.
"""

from __future__ import annotations

from typing import Any, ClassVar

from mtlbench.analysis.claims import qualitative
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
)

#: the nine labelled learning-rate columns of 001 Table A7 (Table 1 shows 10, 1, 0.1, 0.01, 0.001)
LEARNING_RATES = (10.0, 5.0, 1.0, 0.5, 0.1, 0.05, 0.01, 0.005, 0.001)
TABLE_1_RATES = (10.0, 1.0, 0.1, 0.01, 0.001)
METHODS = {"ew": ("sum", {}), "pcgrad": ("pcgrad", {}), "cagrad": ("cagrad", {"c": 0.5})}
TITLES = {"ew": "EW", "pcgrad": "PCGrad", "cagrad": "CAGrad"}
OPTIMIZERS = {"gd": "sgd", "adam": "adam"}
NEVER = None
#: 001 Table A7 (first nine columns; None = '-', not all starts within 100k iterations)
TABLE_A7: dict[tuple[str, str], tuple[int | None, ...]] = {
    ("gd", "ew"): (None, 103, None, None, None, None, None, None, None),
    ("gd", "pcgrad"): (None,) * 9,
    ("gd", "cagrad"): (644, None, 213, 621, 8069, 5732, 20418, 34405, None),
    ("adam", "ew"): (26, 37, 22, 58, 709, 2135, 9015, 16005, None),
    ("adam", "pcgrad"): (25, 4960, 56, 15741, 34175, 41438, None, None, None),
    ("adam", "cagrad"): (27, 30, 32, 106, 802, 7109, 11239, 14323, 57700),
}
STEPS = {"test": 2_000, "smoke": 10_000, "cpu": 100_000, "paper": 100_000}
TEST_RATES = (10.0, 0.1)


def _key(optimizer: str, method: str, lr: float) -> str:
    return f"{optimizer}/{method}/lr={lr:g}"


@register_study
class Toy001(Study):
    name = "001-toy"
    paper = "001"
    title = "CAGrad's toy: iterations until every start reaches the global minimum"
    targets = "Tables 1 and A7, Figs. 1 and A5"
    problems = ("toy",)
    description = (
        "EW, PCGrad and CAGrad (c=0.5) with gradient descent and Adam at nine learning rates; the iteration "
        "by which all three starts reach the global minimum (within 0.1), as 001 counts it."
    )
    scales: ClassVar[dict[str, ScaleInfo]] = {
        "test": ScaleInfo("EW and CAGrad with Adam at lr 10 and 0.1, 2,000 iterations", 4, 0.001),
        "smoke": ScaleInfo("every cell, 10,000 iterations (later convergence shows as never)", 54, 0.02),
        "cpu": ScaleInfo("every cell, 100,000 iterations (the paper's protocol; no GPU needed)", 54, 0.1),
        "paper": ScaleInfo("every cell, 100,000 iterations", 54, 0.1, 0.0),
    }

    def cells(self) -> list[Cell]:
        cells = []
        for (optimizer, method), row in TABLE_A7.items():
            for lr, value in zip(LEARNING_RATES, row, strict=True):
                source = "001 Table 1 and A7" if lr in TABLE_1_RATES else "001 Table A7"
                published = Published(
                    None if value is None else float(value),
                    source,
                    direction="lower",
                    aggregation="max over the three starts",
                    units="iterations",
                    text="-" if value is None else "",
                    note="not all starts within 100k iterations" if value is None else "",
                )
                label = f"{TITLES[method]} + {'GD' if optimizer == 'gd' else 'Adam'}, lr {lr:g}"
                cells.append(Cell(_key(optimizer, method, lr), label, published, "lower", "iterations"))
        return cells

    def claims(self) -> list[Claim]:
        return [
            Claim(
                "ew_adam_high_lr",
                "EW with Adam reaches the global minimum from every start at lr >= 0.1",
                "001 section 4.1.1, Table 1",
                "qualitative",
            ),
            Claim(
                "gd_ew_fails",
                "EW with plain gradient descent does not reach it at Table 1's learning rates",
                "001 Table 1",
                "qualitative",
            ),
            Claim(
                "adam_faster",
                "Adam converges faster and more reliably than GD (more cells converge, and sooner where both do)",
                "001 section 4.1.1",
                "qualitative",
            ),
            Claim(
                "ew_vs_cagrad_high_lr",
                "At high learning rates (>= 0.1) EW+Adam is often faster than "
                "CAGrad+Adam (at least half of those rates)",
                "001 section 4.1.1, Table 1",
                "qualitative",
            ),
            Claim(
                "cagrad_small_lr",
                "At the smallest learning rate (0.001) CAGrad+Adam converges and EW+Adam does not",
                "001 Table A7 caption",
                "qualitative",
            ),
            Claim(
                "pcgrad_gd",
                "PCGrad with GD only reaches a point on the Pareto front, never the global minimum",
                "001 Tables 1/A7",
                "qualitative",
            ),
        ]

    def _grid(self, scale: str) -> list[tuple[str, str, float]]:
        if scale == "test":
            return [("adam", m, lr) for m in ("ew", "cagrad") for lr in TEST_RATES]
        return [(o, m, lr) for (o, m) in TABLE_A7 for lr in LEARNING_RATES]

    def execute(self, context: StudyContext) -> StudyOutcome:
        from mtlbench.studies.toy import run_toy

        self.check_scale(context.scale)
        steps = STEPS[context.scale]
        outcome = self.outcome(context.scale)
        outcome.notes.append(
            f"{steps:,} iterations per cell"
            + ("" if steps >= 100_000 else "; a published count above that shows as 'never' here")
            + ". Deterministic: each cell is one run of the three starts (001's 'seeds')."
        )
        results: dict[str, int | None] = {}
        for optimizer, method, lr in self._grid(context.scale):
            name, params = METHODS[method]
            result = run_toy(
                name,
                OPTIMIZERS[optimizer],
                lr,
                steps,
                0.1,
                hyperparameters=params,
                record_every=None,
                stop_when_converged=True,
                **_mean_objective(run_toy),
            )
            results[_key(optimizer, method, lr)] = result.all_converged_at
            context.note(f"{_key(optimizer, method, lr)}: {result.all_converged_at or 'never'}")
        for cell in self.cells():
            if cell.key not in results:
                outcome.cells.append(CellResult(cell, None, None, 0, f"not run at {context.scale} scale"))
                continue
            value = results[cell.key]
            note = f"never within {steps:,}" if value is None else ""
            outcome.cells.append(CellResult(cell, None if value is None else float(value), None, 1, note))
        for claim in self.claims():
            check = self._check(claim.key, results, steps)
            outcome.claims.append(ClaimResult(claim, check.verdict, check.detail))
        return outcome

    @staticmethod
    def _check(key: str, results: dict[str, int | None], steps: int) -> Any:
        def get(optimizer: str, method: str, lr: float) -> int | str | None:
            return results.get(_key(optimizer, method, lr), "missing")

        def known(values: list[Any]) -> bool:
            return all(v != "missing" for v in values)

        if key == "ew_adam_high_lr":
            values = [get("adam", "ew", lr) for lr in (10.0, 1.0, 0.1)]
            if not known(values):
                values = [v for v in values if v != "missing"]
            ok = None if not values else all(v is not None for v in values)
            return qualitative(ok, f"EW+Adam at lr 10/1/0.1: {values}")
        if key == "gd_ew_fails":
            values = [get("gd", "ew", lr) for lr in TABLE_1_RATES]
            if not known(values):
                return qualitative(None, "GD not run at this scale")
            return qualitative(all(v is None for v in values), f"EW+GD at {TABLE_1_RATES}: {values}")
        if key == "adam_faster":
            pairs = []
            for method in METHODS:
                for lr in LEARNING_RATES:
                    gd, adam = get("gd", method, lr), get("adam", method, lr)
                    if gd != "missing" and adam != "missing":
                        pairs.append((gd, adam))
            if not pairs:
                return qualitative(None, "GD not run at this scale")
            converged = (sum(a is not None for _, a in pairs), sum(g is not None for g, _ in pairs))
            both = [(g, a) for g, a in pairs if g is not None and a is not None]
            sooner = sum(a <= g for g, a in both)
            ok = converged[0] > converged[1] and sooner * 2 >= len(both)
            return qualitative(
                ok, f"cells converged: Adam {converged[0]}, GD {converged[1]}; Adam sooner in {sooner}/{len(both)}"
            )
        if key == "ew_vs_cagrad_high_lr":
            rates = [lr for lr in LEARNING_RATES if lr >= 0.1]
            rows = [(lr, get("adam", "ew", lr), get("adam", "cagrad", lr)) for lr in rates]
            rows = [r for r in rows if r[1] != "missing" and r[2] != "missing"]
            if not rows:
                return qualitative(None, "not run at this scale")
            faster = sum(1 for _, ew, ca in rows if ew is not None and (ca is None or ew <= ca))
            return qualitative(faster * 2 >= len(rows), f"EW+Adam at least as fast at {faster}/{len(rows)} rates")
        if key == "cagrad_small_lr":
            ew, ca = get("adam", "ew", 0.001), get("adam", "cagrad", 0.001)
            if "missing" in (ew, ca):
                return qualitative(None, "lr 0.001 not run at this scale")
            if ca is None and steps < 100_000:
                return qualitative(None, f"CAGrad needs ~57,700 iterations (001); only {steps:,} run")
            return qualitative(ca is not None and ew is None, f"lr 0.001: EW {ew}, CAGrad {ca}")
        if key == "pcgrad_gd":
            values = [get("gd", "pcgrad", lr) for lr in LEARNING_RATES]
            if not known(values):
                return qualitative(None, "GD not run at this scale")
            return qualitative(all(v is None for v in values), f"PCGrad+GD: {values}")
        raise KeyError(key)


def _mean_objective(run_toy: Any) -> dict[str, str]:
    """The keyword that selects the toy's mean objective (``objective``; ``scale`` before it was renamed)."""
    import inspect

    return {"objective": "mean"} if "objective" in inspect.signature(run_toy).parameters else {"scale": "mean"}

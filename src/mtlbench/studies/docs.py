"""``docs/studies.md`` generated from the study registry: ``python -m mtlbench.studies.docs --write``.

The test suite checks that the committed file equals :func:`render`, so the page cannot drift.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mtlbench.studies import STUDIES
from mtlbench.studies.base import SCALES

DOC = Path(__file__).resolve().parents[3] / "docs" / "studies.md"


def render() -> str:
    """The Markdown page: every study, its scales, cells with published values, and claims."""
    lines = [
        "# Studies: the papers' tables and figures as one command each",
        "",
        "Generated from the study registry by `python -m mtlbench.studies.docs --write`; do not edit by hand.",
        "",
        "`mtlbench study NAME --scale test|smoke|cpu|paper` trains what the study needs through the sweep",
        "machinery (resumable: stored runs are skipped), then writes `study.md`, `study.json` and `index.html`",
        "with, for every cell, the paper's published value (only where the paper prints a number, with its source,",
        "direction, aggregation and units) beside ours (seeds, bootstrap CI, scale), and a verdict per claim:",
        "*holds*, *does not hold* or *inconclusive* (`mtlbench.analysis.claims`: paired tests with Holm's",
        "adjustment and a power statement for claims of a difference; an equivalence test with a stated margin",
        "for claims of no difference). Where a real dataset is not cached, the test, smoke and cpu scales use the",
        "problem's generated stand-in and say so. `make studies-smoke` runs every study at smoke scale.",
        "",
        "| study | paper | tables / figures | problems | " + " | ".join(f"{s} (runs, CPU h)" for s in SCALES) + " |",
        "|---|---|---|---|" + "---|" * len(SCALES),
    ]
    for name in STUDIES:
        study = STUDIES[name]
        scales = []
        for scale in SCALES:
            info = study.scales.get(scale)
            scales.append("-" if info is None else f"{info.runs}, {info.cpu_hours:g}")
        lines.append(
            f"| `{name}` | {study.paper} | {study.targets} | {', '.join(study.problems)} | {' | '.join(scales)} |"
        )
    for name in STUDIES:
        study = STUDIES[name]()
        lines += [
            "",
            f"## `{name}`: {study.title}",
            "",
            f"Paper {study.paper}, {study.targets}. {study.description}",
            "",
        ]
        for scale in SCALES:
            info = study.scales.get(scale)
            if info is not None:
                gpu = f", ~{info.gpu_hours:g} GPU h" if info.gpu_hours is not None else ""
                lines.append(f"- **{scale}**: {info.description} ({info.runs} runs, ~{info.cpu_hours:g} CPU h{gpu})")
        published = [c for c in study.cells() if c.published.value is not None or c.published.text]
        lines += [
            "",
            f"Cells: {len(study.cells())}, of which {len(published)} with a published entry "
            f"(the others are drawn only in a figure).",
        ]
        if study.claims():
            lines += ["", "| claim | source | kind |", "|---|---|---|"]
            for claim in study.claims():
                kind = claim.kind + (f" ({claim.margin})" if claim.margin else "")
                lines.append(f"| {claim.text} | {claim.source} | {kind} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help=f"write {DOC}")
    args = parser.parse_args(argv)
    text = render()
    if args.write:
        DOC.write_text(text, encoding="utf-8")
        print(f"wrote {DOC}")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

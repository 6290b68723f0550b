"""``mtlbench study``: a paper's table or figure as one command, the published values beside ours."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mtlbench.cli.app import app
from mtlbench.errors import UserInputError, unknown


def _list_studies() -> None:
    from mtlbench.studies import STUDIES
    from mtlbench.studies.base import SCALES

    print("studies: mtlbench study NAME --scale test|smoke|cpu|paper")
    for name in STUDIES:
        study = STUDIES[name]
        print(f"\n{name}  (paper {study.paper}: {study.targets}; problems: {', '.join(study.problems) or '-'})")
        print(f"  {study.title}")
        for scale in SCALES:
            info = study.scales.get(scale)
            if info is None:
                continue
            hours = f"~{info.cpu_hours:g} CPU h"
            if scale == "paper" and info.gpu_hours is not None:
                hours += f", ~{info.gpu_hours:g} GPU h"
            print(f"  {scale:<6} {info.runs:>5} runs, {hours}: {info.description}")


@app.command("study")
def study(
    name: Annotated[str | None, typer.Argument(help="A study (see --list), e.g. 001-toy, or all.")] = None,
    scale: Annotated[str, typer.Option(help="test (seconds), smoke (minutes), cpu (hours) or paper.")] = "smoke",
    list_: Annotated[
        bool, typer.Option("--list", help="List the studies with their runs and estimated hours.")
    ] = False,
    executor: Annotated[str, typer.Option(help="local (a process pool on this machine) or ray.")] = "local",
    workers: Annotated[int | None, typer.Option(help="Runs at a time (default: cores / threads per run).")] = None,
    address: Annotated[str | None, typer.Option(help="Ray cluster address (with --executor ray).")] = None,
    threads: Annotated[int | None, typer.Option(help="torch threads per run.")] = None,
    results: Annotated[
        Path | None,
        typer.Option("--results", help="Results database (default: $MTLBENCH_RESULTS or ./mtlbench-results)."),
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Where the study's tables go (default: next to the results).")
    ] = None,
) -> None:
    """Run a study (resumable: stored runs are skipped) and write its cells, claims and verdicts."""
    from mtlbench.studies import STUDIES
    from mtlbench.studies.base import SCALES, StudyContext, to_markdown, write_outcome

    if list_:
        _list_studies()
        return
    if name is None:
        raise UserInputError("name a study (see `mtlbench study --list`)")
    if scale not in SCALES:
        raise unknown("scale", scale, SCALES)
    if executor not in ("local", "ray"):
        raise unknown("executor", executor, ("local", "ray"))
    for option, value in (("--workers", workers), ("--threads", threads)):
        if value is not None and value < 1:
            raise UserInputError(f"{option}={value} must be >= 1")
    from mtlbench.cli.common import results_path

    names = list(STUDIES) if name == "all" else [name]
    if name != "all":
        STUDIES[name]  # one-line error for an unknown study
    db = results_path(results)
    summary: list[tuple[str, str]] = []
    for study_name in names:
        chosen = STUDIES[study_name]()
        folder = (
            (out / study_name if name == "all" else out)
            if out is not None
            else db.parent / "studies" / study_name / scale
        )
        context = StudyContext(
            scale,
            db,
            folder,
            executor=executor,
            workers=workers,
            address=address,
            threads=threads,
            progress=None,
            log=lambda text: print(f"  {text}", flush=True),
        )
        info = chosen.scales[scale].description
        print(f"{study_name} ({chosen.targets} of paper {chosen.paper}), {scale} scale: {info}", flush=True)
        try:
            outcome = chosen.execute(context)
        except Exception as error:  # `all` goes on with the next study and says which failed
            if name != "all":
                raise
            summary.append((study_name, f"failed: {' '.join(str(error).split())}"))
            print(f"  {study_name} failed: {' '.join(str(error).split())}", flush=True)
            continue
        paths = write_outcome(outcome, folder)
        if name != "all":
            print(to_markdown(outcome))
        verdicts = ", ".join(f"{r.claim.key}: {r.verdict}" for r in outcome.claims) or "no claims"
        summary.append((study_name, verdicts))
        print(f"  written: {paths['markdown']}, {paths['json']}, {paths['html']}", flush=True)
    if name == "all":
        print(f"\n{len(names)} studies at {scale} scale:")
        for study_name, text in summary:
            print(f"  {study_name}: {text}")
        if any(text.startswith("failed") for _, text in summary):
            raise typer.Exit(1)

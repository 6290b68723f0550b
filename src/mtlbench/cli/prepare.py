"""``mtlbench data prepare cityscapes|celeba|nyuv2 --raw PATH``: convert a user's licensed copy into the cache."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mtlbench.cli.app import data_app
from mtlbench.errors import UserInputError

PREPARABLE = ("cityscapes", "celeba", "nyuv2", "nyud", "pascal_context")


@data_app.command("prepare")
def prepare(
    dataset: Annotated[
        str, typer.Argument(help="Dataset to prepare: cityscapes, celeba, nyuv2, nyud, pascal_context.")
    ],
    raw: Annotated[
        Path | None,
        typer.Option(
            "--raw",
            help="Folder with leftImg8bit/, gtFine/ and disparity/ (raw Cityscapes), or MTAN's train/ and val/ "
            "arrays; for celeba the release with Img/, Anno/ and Eval/ (or torchvision's flat celeba/); for nyuv2 "
            "MTAN's preprocessed train/ and val/ with {image,label,depth,normal}/{i}.npy; for nyud MTI-Net's "
            "NYUD_MT or InvPT's NYUDv2; for pascal_context PASCAL_MT or PASCALContext.",
        ),
    ] = None,
    resolution: Annotated[
        list[str] | None,
        typer.Option("--resolution", help="WIDTHxHEIGHT to cache (repeatable; default 256x128 and 512x256)."),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Rebuild resolutions that are already cached.")] = False,
    workers: Annotated[
        int | None, typer.Option("--workers", help="Processes decoding PNGs (default: up to 8).")
    ] = None,
    limit: Annotated[
        int | None, typer.Option("--limit", help="Only the first N images of each official split (a trial).")
    ] = None,
) -> None:
    """Convert licensed data you downloaded into mtlbench's cache (arrays + checksums)."""
    from mtlbench.data import cityscapes

    if dataset not in PREPARABLE:
        hint = (
            " (synthetic_scenes is generated: `mtlbench data fetch synthetic_scenes`)"
            if dataset == "synthetic_scenes"
            else ""
        )
        raise UserInputError(f"cannot prepare {dataset!r}{hint}; choose one of: {', '.join(PREPARABLE)}")
    if dataset == "celeba":
        _prepare_celeba(raw, resolution, force, workers, limit)
        return
    if dataset == "nyuv2":
        _prepare_nyuv2(raw, resolution, force, workers, limit)
        return
    if dataset in ("nyud", "pascal_context"):
        _prepare_002(dataset, raw, resolution, force, workers, limit)
        return
    if raw is None:
        raise UserInputError(
            "data prepare cityscapes needs --raw PATH: the folder with leftImg8bit/, gtFine/ and disparity/ "
            "(or MTAN's preprocessed train/ and val/)"
        )
    resolutions = list(resolution) if resolution else list(cityscapes.DEFAULT_RESOLUTIONS)
    resolutions = [cityscapes.resolution_name(*cityscapes.parse_resolution(r)) for r in resolutions]
    if limit is not None and limit < 1:
        raise UserInputError(f"--limit {limit} must be at least 1")
    if workers is not None and workers < 1:
        raise UserInputError(f"--workers {workers} must be at least 1")

    def progress(message: str) -> None:
        typer.echo(message, err=True)

    summary = cityscapes.prepare(raw, resolutions, force=force, workers=workers, limit=limit, progress=progress)
    typer.echo(summary)


def _prepare_celeba(
    raw: Path | None, resolution: list[str] | None, force: bool, workers: int | None, limit: int | None
) -> None:
    from mtlbench.data import celeba

    if raw is None:
        raise UserInputError(
            "data prepare celeba needs --raw PATH: the folder with Img/img_align_celeba/ (or img_align_celeba_png/), "
            "Anno/list_attr_celeba.txt and Eval/list_eval_partition.txt"
        )
    if resolution:
        raise UserInputError(f"--resolution {resolution[0]} is not used by celeba (003's 64x64 is fixed)")
    if limit is not None and limit < 1:
        raise UserInputError(f"--limit {limit} must be at least 1")
    if workers is not None and workers < 1:
        raise UserInputError(f"--workers {workers} must be at least 1")
    summary = celeba.prepare(
        raw, force=force, workers=workers, limit=limit, progress=lambda message: typer.echo(message, err=True)
    )
    typer.echo(summary)


def _prepare_nyuv2(
    raw: Path | None, resolution: list[str] | None, force: bool, workers: int | None, limit: int | None
) -> None:
    from mtlbench.data import nyuv2

    if raw is None:
        raise UserInputError(
            f"data prepare nyuv2 needs --raw PATH: MTAN's preprocessed NYUv2 folder with train/ and val/ "
            f"({nyuv2.DOWNLOAD_URL})"
        )
    for flag, value in (("--resolution", resolution[0] if resolution else None), ("--workers", workers)):
        if value is not None:
            raise UserInputError(f"{flag} {value} is not used by nyuv2 (the arrays keep their 288x384)")
    if limit is not None:
        raise UserInputError(f"--limit {limit} is not used by nyuv2 (every file is checked and cached)")
    typer.echo(nyuv2.prepare(raw, force=force, progress=lambda message: typer.echo(message, err=True)))


def _prepare_002(
    dataset: str, raw: Path | None, resolution: list[str] | None, force: bool, workers: int | None, limit: int | None
) -> None:
    """NYUD-v2 (MTI-Net NYUD_MT or ATRC/InvPT NYUDv2) or PASCAL-Context multi-task (PASCAL_MT / PASCALContext)."""
    from mtlbench.data import nyud, pascal_context

    module = nyud if dataset == "nyud" else pascal_context
    if raw is None:
        layout = "NYUD_MT or NYUDv2 (images/, segmentation/, depth/, normals/, edge/, gt_sets/)"
        if dataset == "pascal_context":
            layout = "PASCAL_MT or PASCALContext (JPEGImages/, ImageSets/Context/, semseg/, human_parts/, ...)"
        raise UserInputError(f"data prepare {dataset} needs --raw PATH: the {layout} folder")
    for flag, value in (("--resolution", resolution[0] if resolution else None), ("--workers", workers)):
        if value is not None:
            raise UserInputError(f"{flag} {value} is not used by {dataset} (images are cached at their native size)")
    if limit is not None and limit < 1:
        raise UserInputError(f"--limit {limit} must be at least 1")
    typer.echo(module.prepare(raw, force=force, limit=limit, progress=lambda message: typer.echo(message, err=True)))

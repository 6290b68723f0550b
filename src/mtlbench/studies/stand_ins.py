"""The generated stand-ins a study uses at test/smoke/cpu scale when a real dataset is not cached.

Each is ``(available, replacement, note)`` for :class:`~mtlbench.studies.sweep_study.StudySweep`:
Cityscapes steps fall back to the ``scenes_*`` specs (generated street scenes with the same tasks and
presets), QM9 to the generated 11-task regression problem ``synthetic``, 002's NYUD-v2 and PASCAL-Context
to their generated scenes (``source=synthetic``). The note says so in the output.
"""

from __future__ import annotations

from mtlbench.studies.sweep_study import StandIn
from mtlbench.studies.sweeps import has_dataset

QM9_TASKS = "_".join(f"T{i}" for i in range(11))


def cityscapes(step: str) -> StandIn:
    """The Cityscapes ladder step ``step`` (r50, r18, instseg, hr, 19c), or its generated-scenes spec."""
    return StandIn(
        lambda: has_dataset("cityscapes"),
        f"scenes_{step}",
        f"Cityscapes is not prepared here: the {step.upper()} step ran on generated street scenes (scenes_{step}); "
        "prepare it with `mtlbench data prepare cityscapes --raw PATH` for the real data",
        {"problem_options": {"n_images": 12, "resolution": "32x16", "width": 4}, "settings": {"batch_size": 4}},
    )


def scenes(preset: str) -> StandIn:
    """Cityscapes, or the generated street scenes with the ladder ``preset`` as an overlay of the same spec
    (unlike :func:`cityscapes`, the spec's methods, settings and grids stay)."""
    overlay = {"problem": "synthetic_scenes", "grid_problem": "cityscapes", "problem_options": {"preset": preset}}
    return StandIn(
        lambda: has_dataset("cityscapes"),
        overlay,
        f"Cityscapes is not prepared here: generated street scenes (synthetic_scenes, preset {preset}) stood in "
        "for it; prepare it with `mtlbench data prepare cityscapes --raw PATH` for the real data",
        {"problem_options": {"n_images": 12, "resolution": "32x16", "width": 4}, "settings": {"batch_size": 4}},
    )


def celeba(dropout_layout: str = "kurin", **options: object) -> StandIn:
    """CelebA, or ``synthetic_attributes``: generated images with the same 40 binary tasks, heads, metric and
    CIFAR ResNet-18 (at width 8 on 32x32 images unless ``options`` say otherwise); method grids stay
    CelebA's (``grid_problem``). ``dropout_layout`` is 003's (``kurin``) or ``none``."""
    overlay = {
        "problem": "synthetic_attributes",
        "tasks": "all",
        "grid_problem": "celeba",
        "problem_options": {"head": "logsoftmax", "dropout_layout": dropout_layout, **options},
    }
    return StandIn(
        lambda: has_dataset("celeba"),
        overlay,
        "CelebA is not prepared here: the generated 40-attribute problem `synthetic_attributes` (same tasks, "
        "heads and ResNet-18, smaller) stood in for it; prepare the real data with "
        "`mtlbench data prepare celeba --raw PATH`",
        # the test scale: 2 of the 40 attributes (a reference run per task precedes the methods)
        {
            "tasks": "A0_A3",
            "problem_options": {"train_size": 16, "eval_size": 16, "width": 2},
            "settings": {"batch_size": 8},
        },
    )


def qm9() -> StandIn:
    """QM9, or the generated regression problem with 11 tasks (same count as QM9's targets)."""
    overlay = {
        "problem": "synthetic",
        "tasks": QM9_TASKS,
        "grid_problem": "qm9",
        "problem_options": {"train_size": 256, "eval_size": 128, "similarity": 0.2},
    }
    return StandIn(
        lambda: has_dataset("qm9"),
        overlay,
        "QM9 is not cached here: the generated 11-task regression problem `synthetic` (task similarity 0.2) stood "
        "in for it; fetch the real data with `mtlbench data fetch qm9`",
        {"problem_options": {"train_size": 64, "eval_size": 32}},
    )


def dense_002(dataset: str) -> StandIn:
    """002's NYUD-v2 (``nyud``) or PASCAL-Context (``pascal_context``), or their generated stand-ins
    (``source=synthetic``: synthetic_scenes presets NYUD and PASCAL of :mod:`mtlbench.data.scenes_002`)."""
    label = {"nyud": "NYUD-v2", "pascal_context": "PASCAL-Context"}[dataset]
    preset = {"nyud": "NYUD", "pascal_context": "PASCAL"}[dataset]
    return StandIn(
        lambda: has_dataset(dataset),
        {"problem_options": {"source": "synthetic"}},
        f"{label} is not prepared here: the generated stand-in (synthetic_scenes preset {preset}, "
        f"`{dataset}` with source=synthetic) stood in for it; prepare it with "
        f"`mtlbench data prepare {dataset} --raw PATH` for the real data",
        {
            "problem_options": {"n_images": 12, "synthetic_size": 16, "width": 4, "edge_thresholds": 3},
            "settings": {"batch_size": 3, "epochs": 2},
            "grid": {"lr": [0.01]},
        },
    )


__all__ = ["QM9_TASKS", "cityscapes", "dense_002", "qm9"]

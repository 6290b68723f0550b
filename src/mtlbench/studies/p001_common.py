"""Shared pieces of 001's studies (Elich et al.): its setups (dataset x network), methods and in-process runs.

001 runs Cityscapes (7 classes + inverse depth, 128x256) and NYUv2 (13 classes + depth + normals, 288x384)
on SegNet and DeepLabV3+ (LibMTL; section 4.1, A3.1), with EW, UW, RLW, PCGrad, CAGrad and IMTL in
LibMTL's forms (the built-in specs ``city_001`` and ``nyuv2_001``). Where the data is not prepared the
studies use the generated stand-ins: ``synthetic_scenes`` with preset R18 (S7 + D, for Cityscapes) or
preset NYUv2 (S13 + D + N); each :class:`Setup` says which it ran. No torch import at module level.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: 001's names of the methods -> mtlbench's, and LibMTL's forms (as the specs city_001 / nyuv2_001)
METHODS = {"EW": "unit_scal", "UW": "uw", "RLW": "rlw_normal", "IMTL": "imtl", "PCGrad": "pcgrad", "CAGrad": "cagrad"}
PAPER_NAME = {ours: paper for paper, ours in METHODS.items()}
METHOD_PARAMS: dict[str, dict[str, Any]] = {
    "uw": {"form": "libmtl"},
    "rlw_normal": {"weights_sum": "one"},
    "cagrad": {"c": 0.5},
    "imtl": {"space": "parameters"},
}
NETWORKS = {"segnet": "SegNet", "deeplabv3plus": "DeepLabV3+"}
DATASETS = {"cityscapes": "Cityscapes", "nyuv2": "NYUv2"}
#: 001's task metrics in its tables' column order: (task, metric)
CITY_METRICS = (("S", "miou"), ("S", "acc"), ("D", "abs_err"), ("D", "rel_err"))
NYU_METRICS = (
    *CITY_METRICS,
    ("N", "mean_angle"),
    ("N", "median_angle"),
    ("N", "within_11_25"),
    ("N", "within_22_5"),
    ("N", "within_30"),
)
METRICS = {"cityscapes": CITY_METRICS, "nyuv2": NYU_METRICS}


#: 001 Tables A3-A6 as printed: per (dataset, network) the rows "MTO optimizer lr metrics... DeltaM sd" (the
#: metrics in METRICS order; DeltaM in percent, per metric, lower is better) and the STL row (no lr, no DeltaM)
_TABLES_A3_A6 = {
    ("cityscapes", "segnet"): (
        "Table A3",
        """
STL adam - 0.7122 0.9221 0.0134 29.88
EW adam 0.005 0.6898 0.9165 0.0196 109.84 79.43 3.68
EW sgd 0.1 0.6967 0.9179 0.0216 113.82 86.24 1.97
UW adam 0.001 0.7052 0.9202 0.0136 35.69 5.44 2.38
UW sgd 0.01 0.6750 0.9110 0.0219 114.67 88.39 1.35
RLW adam 0.001 0.7013 0.9196 0.0197 103.61 73.91 7.63
RLW sgd 0.1 0.6918 0.9156 0.0227 113.59 88.16 0.67
IMTL adam 0.005 0.6963 0.9170 0.0148 45.63 16.55 1.52
IMTL sgd 0.01 0.6716 0.9107 0.0230 114.38 90.21 0.74
PCGrad adam 0.01 0.6770 0.9135 0.0226 103.88 80.56 3.70
PCGrad sgd 0.1 0.6972 0.9176 0.0235 107.06 84.09 0.93
CAGrad adam 0.001 0.7088 0.9208 0.0162 66.39 35.81 14.91
CAGrad sgd 0.1 0.6896 0.9156 0.0205 115.52 85.88 0.31
""",
    ),
    ("cityscapes", "deeplabv3plus"): (
        "Table A4",
        """
STL adam - 0.7203 0.9253 0.0132 47.37
EW adam 0.001 0.7247 0.9268 0.0128 47.73 -0.80 0.69
EW sgd 0.05 0.7100 0.9217 0.0174 120.34 46.88 2.02
UW adam 0.001 0.7224 0.9259 0.0122 44.37 -3.65 0.61
UW sgd 0.005 0.7003 0.9187 0.0171 116.09 44.47 1.91
RLW adam 0.001 0.7230 0.9263 0.0133 47.76 0.26 1.08
RLW sgd 0.05 0.7070 0.9205 0.0176 123.13 48.84 1.79
IMTL adam 0.001 0.7226 0.9259 0.0121 45.25 -3.38 0.92
IMTL sgd 0.005 0.7027 0.9192 0.0185 122.37 50.33 3.30
PCGrad adam 0.001 0.7247 0.9272 0.0130 47.24 -0.58 0.56
PCGrad sgd 0.05 0.7083 0.9212 0.0173 122.52 47.90 3.68
CAGrad adam 0.001 0.7245 0.9264 0.0124 45.56 -2.59 0.68
CAGrad sgd 0.1 0.7096 0.9220 0.0172 120.24 46.58 2.21
""",
    ),
    ("nyuv2", "segnet"): (
        "Table A5",
        """
STL adam - 0.3922 0.6462 0.6068 0.2579 24.74 18.49 0.3084 0.5816 0.6996
EW adam 0.0001 0.3979 0.6496 0.5299 0.2123 29.53 25.02 0.2162 0.4542 0.5838 10.08 2.84
EW sgd 0.01 0.3843 0.6438 0.5511 0.2271 30.12 25.72 0.2121 0.4427 0.5712 12.84 0.65
UW adam 0.0001 0.4011 0.6517 0.5215 0.2132 27.93 22.80 0.2432 0.4943 0.6231 5.42 1.04
UW sgd 0.05 0.3832 0.6421 0.5508 0.2178 27.07 21.66 0.2586 0.5162 0.6435 4.46 2.13
RLW adam 0.0001 0.3898 0.6380 0.5367 0.2179 30.83 26.78 0.1961 0.4243 0.5538 14.28 2.38
RLW sgd 0.05 0.3690 0.6325 0.5722 0.2328 31.21 27.17 0.1976 0.4197 0.5459 16.82 1.16
IMTL adam 0.0001 0.3796 0.6436 0.5242 0.2156 26.35 20.77 0.2703 0.5342 0.6603 2.06 1.31
IMTL sgd 0.05 0.3957 0.6557 0.5320 0.2154 26.16 20.38 0.2773 0.5419 0.6664 0.72 0.68
PCGrad adam 0.0001 0.4057 0.6540 0.5286 0.2152 28.60 23.75 0.2307 0.4768 0.6062 7.39 0.86
PCGrad sgd 0.01 0.3893 0.6441 0.5473 0.2227 29.76 25.22 0.2143 0.4506 0.5800 11.61 0.36
CAGrad adam 0.0001 0.4046 0.6606 0.5273 0.2114 25.85 20.02 0.2816 0.5495 0.6735 -0.65 0.96
CAGrad sgd 0.05 0.4003 0.6561 0.5474 0.2226 26.39 20.78 0.2682 0.5344 0.6615 2.06 0.65
""",
    ),
    ("nyuv2", "deeplabv3plus"): (
        "Table A6",
        """
STL adam - 0.5517 0.7668 0.3650 0.1524 21.16 14.52 0.4023 0.6679 0.7679
EW adam 0.0001 0.5521 0.7697 0.3515 0.1432 22.54 16.05 0.3659 0.6340 0.7422 2.70 0.12
EW sgd 0.01 0.5558 0.7686 0.3646 0.1473 23.35 16.76 0.3520 0.6167 0.7273 5.21 0.18
UW adam 0.0005 0.5319 0.7553 0.3579 0.1408 22.01 15.30 0.3825 0.6502 0.7533 1.59 0.14
UW sgd 0.01 0.5570 0.7692 0.3643 0.1479 22.37 15.69 0.3742 0.6408 0.7464 2.57 0.56
RLW adam 0.0001 0.5562 0.7675 0.3600 0.1495 22.37 15.87 0.3697 0.6375 0.7446 2.96 0.55
RLW sgd 0.05 0.5412 0.7617 0.3678 0.1508 23.00 16.44 0.3571 0.6245 0.7338 5.15 0.54
IMTL adam 0.0005 0.5324 0.7557 0.3526 0.1404 21.34 14.61 0.3990 0.6661 0.7660 -0.39 0.05
IMTL sgd 0.05 0.5449 0.7617 0.3669 0.1499 21.63 14.98 0.3902 0.6576 0.7602 1.30 0.40
PCGrad adam 0.0001 0.5583 0.7716 0.3569 0.1460 22.33 15.81 0.3711 0.6388 0.7460 2.34 0.48
PCGrad sgd 0.01 0.5563 0.7685 0.3609 0.1471 23.36 16.79 0.3514 0.6167 0.7279 5.10 0.28
CAGrad adam 0.0005 0.5310 0.7550 0.3568 0.1428 21.42 14.67 0.3988 0.6640 0.7639 0.10 0.55
CAGrad sgd 0.05 0.5555 0.7684 0.3600 0.1437 21.77 14.99 0.3906 0.6573 0.7592 0.42 0.07
""",
    ),
}


@dataclass(frozen=True)
class TableRow:
    """One printed row of 001 Tables A3-A6."""

    source: str
    lr: float | None
    metrics: tuple[float, ...]
    delta_m: float | None  # 001's DeltaM (percent, lower is better)
    delta_m_sd: float | None


def table_a3_a6() -> dict[tuple[str, str, str, str], TableRow]:
    """(dataset, network, MTO name or STL, optimizer) -> the printed row."""
    out: dict[tuple[str, str, str, str], TableRow] = {}
    for (dataset, network), (source, text) in _TABLES_A3_A6.items():
        n = len(METRICS[dataset])
        for line in text.strip().splitlines():
            mto, optimizer, lr, *values = line.split()
            numbers = tuple(float(v) for v in values)
            dm = (numbers[n], numbers[n + 1]) if len(numbers) > n else (None, None)
            row = TableRow(source, None if lr == "-" else float(lr), numbers[:n], *dm)
            out[(dataset, network, mto, optimizer)] = row
    return out


def best_lr(dataset: str, network: str, method: str, optimizer: str = "adam") -> float:
    """001's best lr (by validation DeltaM) of ``method`` (mtlbench name) with ``optimizer``, Tables A3-A6."""
    row = table_a3_a6()[(dataset, network, PAPER_NAME[method], optimizer)]
    assert row.lr is not None
    return row.lr


@dataclass(frozen=True)
class Setup:
    """One dataset x network of 001, as a problem (real or stand-in) with its options and training settings."""

    dataset: str
    network: str
    problem: str
    tasks: str
    options: Mapping[str, Any]
    settings: Mapping[str, Any] = field(default_factory=dict)
    stand_in: bool = False

    @property
    def label(self) -> str:
        return f"{self.dataset}-{self.network}"

    @property
    def title(self) -> str:
        return f"{DATASETS[self.dataset]} {NETWORKS[self.network]}"


def has_real(dataset: str) -> bool:
    from mtlbench.studies.sweeps import has_dataset

    return has_dataset(dataset)


#: the stand-ins' sizes per study scale: (options of the Cityscapes stand-in, of the NYUv2 stand-in, settings)
STAND_IN_SIZES: dict[str, tuple[dict[str, Any], dict[str, Any], dict[str, Any]]] = {
    "test": (
        {"resolution": "64x32", "width": 4, "n_images": 12},
        {"resolution": "64x32", "width": 4, "n_images": 12},
        {"epochs": 1, "batch_size": 4},
    ),
    "smoke": (
        {"resolution": "64x32", "width": 4, "n_images": 40},
        {"resolution": "64x64", "width": 4, "n_images": 40},
        {"epochs": 3, "batch_size": 4},
    ),
    "cpu": (
        {"resolution": "128x64", "width": 8, "n_images": 200},
        {"resolution": "128x96", "width": 8, "n_images": 200},
        {"epochs": 8, "batch_size": 8},
    ),
}
#: 001's own protocol (A3.1), used at paper scale on the real data
PAPER_SETTINGS = {
    "cityscapes": {"epochs": 300, "batch_size": 64, "scheduler": "step", "step_size": 100, "scheduler_gamma": 0.5},
    "nyuv2": {"epochs": 200, "batch_size": 8, "scheduler": "step", "step_size": 100, "scheduler_gamma": 0.5},
}


def setup(dataset: str, network: str, scale: str) -> Setup:
    """The problem a study trains for 001's ``dataset`` x ``network`` at ``scale``: the real data at paper
    scale (or when cached), else the stand-in sized for the scale."""
    encoder = {"encoder": "resnet50"} if network == "deeplabv3plus" else {}
    if scale == "paper" or has_real(dataset):
        if dataset == "cityscapes":
            options = {"classes": 7, "resolution": "256x128", "augmentation": "scale_crop", "width": 64}
            tasks = "S_D"
        else:
            options = {"val_split": "libmtl", "metric_reduction": "global"}
            tasks = "S_D_N"
        settings = PAPER_SETTINGS[dataset] if scale == "paper" else STAND_IN_SIZES[scale][2]
        return Setup(dataset, network, dataset, tasks, {**options, "model": network, **encoder}, settings)
    city, nyu, settings = STAND_IN_SIZES[scale]
    # the stand-ins' DeepLabV3+ keeps 001's head on a small dilated ResNet-18 (a ResNet-50 is too slow here)
    small = {"encoder": "resnet18"} if network == "deeplabv3plus" else {}
    if dataset == "cityscapes":
        options = {"preset": "R18", **city, "model": network, **small}
        return Setup(dataset, network, "synthetic_scenes", "S_D", options, settings, stand_in=True)
    options = {"preset": "NYUv2", **nyu, "model": network, **small}
    return Setup(dataset, network, "synthetic_scenes", "S_D_N", options, settings, stand_in=True)


def stand_in_note(setups: Sequence[Setup]) -> str | None:
    used = sorted({s.dataset for s in setups if s.stand_in})
    if not used:
        return None
    names = ", ".join(DATASETS[d] for d in used)
    return (
        f"{names} not prepared here: generated street scenes stood in (synthetic_scenes preset R18 for Cityscapes' "
        "S7 + D, preset NYUv2 for NYUv2's S13 + D + N; DeepLabV3+ on a dilated ResNet-18); their numbers are not "
        "the datasets'"
    )


def run_config(
    setup: Setup,
    method: str,
    *,
    tasks: Sequence[str] | None = None,
    seed: int = 0,
    lr: float = 1e-3,
    optimizer: str = "adam",
    threads: int | None = 1,
    **extra: Any,
) -> Any:
    """The :class:`RunConfig` of one run of ``setup`` (wd 1e-5 as 001; LibMTL's method forms)."""
    from mtlbench.training.config import RunConfig

    return RunConfig(
        problem=setup.problem,
        tasks=list(tasks) if tasks is not None else setup.tasks.split("_"),
        method=method,
        method_params=dict(METHOD_PARAMS.get(method, {})) if tasks is None or len(tasks) > 1 else {},
        problem_options=dict(setup.options),
        lr=lr,
        weight_decay=1e-5,
        optimizer=optimizer,
        momentum=0.9,
        seed=seed,
        threads=threads,
        device="cpu",
        **{"scheduler": "none", **setup.settings, **extra},
    )


def train_model(config: Any, checkpoints: Path) -> tuple[Any, Any]:
    """Train ``config`` in this process (no results store; the epoch with the lowest summed validation loss
    is kept, as 001's early stopping of its STL models) and return (problem, model with the kept weights).
    A finished run's checkpoint is reused."""
    import torch

    from mtlbench.problems import create_problem
    from mtlbench.training.trainer import Trainer

    trainer = Trainer(config, checkpoint_root=checkpoints, require_reference=False)
    best = trainer.checkpoint_dir / "best.pt" if trainer.checkpoint_dir else None
    done = trainer.checkpoint_dir / "done" if trainer.checkpoint_dir else None
    if best is None or done is None or not (best.exists() and done.exists()):
        result = trainer.run()
        if result.status != "completed":
            raise RuntimeError(f"{config.method} on {config.problem} {config.tasks}: {result.error}")
        if done is not None:
            done.write_text("completed\n")
    problem = create_problem(config.problem, config.tasks, **config.problem_options)
    problem.prepare()
    model = problem.build_model(dropout=trainer.config.dropout or 0.0)
    saved = torch.load(best, map_location="cpu", weights_only=False)  # type: ignore[arg-type]
    model.load_state_dict(saved["model"])
    model.eval()
    return problem, model


__all__ = [
    "CITY_METRICS",
    "DATASETS",
    "METHODS",
    "METHOD_PARAMS",
    "METRICS",
    "NETWORKS",
    "NYU_METRICS",
    "PAPER_NAME",
    "Setup",
    "TableRow",
    "best_lr",
    "run_config",
    "setup",
    "stand_in_note",
    "table_a3_a6",
    "train_model",
]

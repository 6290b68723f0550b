"""QM9: eleven molecular properties from one MPNN (Gama & Grassi 000 section 3.4, after Nash-MTL).

Tasks (names, units of the targets): mu (D), alpha (a0^3), homo, lumo (eV), r2 (a0^2), zpve (eV),
U0Atom, UAtom, HAtom, GAtom (atomisation energies, eV), Cv (cal/(mol K)); ``all`` = the eleven,
any subset such as ``mu_alpha_homo``. Data: :mod:`mtlbench.data.qm9` (``mtlbench data fetch qm9``);
graphs and batching: :mod:`mtlbench.data.qm9_graphs`; model: :mod:`mtlbench.models.mpnn`.

Targets are z-scored with the mean and (unbiased) standard deviation of the training molecules only
(of the subset, when ``subset`` is set); ``target_stats=all`` uses every molecule of the dataset
instead, whatever ``subset`` and ``train_size``, as Gama's code (``QM9.py``: the statistics of the
whole PyG dataset, train, val and test together). The loss of a task is the MSE of the z-scored target. The metric
``MAE`` is the mean absolute error in original units, except that HOMO, LUMO, ZPVE and the four
atomisation energies are in meV, the units of Nash-MTL's and 000's tables: MAE = |y_hat - y| * std
(* 1000 for those seven), the mean cancelling.

Options: ``graph`` complete (the paper: every pair of atoms is an edge) or bonded; ``subset`` N:
the first N molecules of each split's permutation (CPU runs; full data needs a GPU: about 3 s per
step of 120 complete graphs on one CPU core); ``train_size`` N: the first N training molecules
only (``mtlbench train --train-size``); ``split_seed`` the seed of the saved split (0 =
Gama's split); ``features`` pyg (the data the reference runs used, no aromaticity or
hybridisation) or rdkit (perceived by RDKit).
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from mtlbench.data import qm9 as qm9_data
from mtlbench.data.qm9_graphs import FEATURE_SETS, GRAPH_KINDS, GraphBatcher, global_bonds, node_features
from mtlbench.errors import UserInputError
from mtlbench.models.base import MultiTaskModel
from mtlbench.problems import register_problem
from mtlbench.problems.base import (
    Batch,
    HeadSpec,
    MeanMetrics,
    Metric,
    Problem,
    ProblemOption,
    Task,
    TrainingDefaults,
)

TASKS = qm9_data.TASKS
#: Tasks whose MAE is reported in meV (Nash-MTL's ``multiply_indx``).
MEV_TASKS = frozenset({"homo", "lumo", "zpve", "U0Atom", "UAtom", "HAtom", "GAtom"})
METRIC_UNITS = {name: ("meV" if name in MEV_TASKS else unit) for name, unit in qm9_data.UNITS.items()}
METRIC_SCALE = {name: (1000.0 if name in MEV_TASKS else 1.0) for name in TASKS}
MAE = Metric("MAE", higher_is_better=False)


def positive_integer(value: str) -> int | None:
    """``none``/``full`` -> None, else a positive integer."""
    if value.strip().lower() in ("none", "full", ""):
        return None
    number = int(value)
    if number < 1:
        raise ValueError("subset must be positive")
    return number


def mse_loss(output: Tensor, target: Tensor) -> Tensor:
    """MSE between the head output (B, 1) and the z-scored target (B,)."""
    return F.mse_loss(output.reshape(-1), target)


def absolute_error_sum(output: Tensor, target: Tensor, *, scale: float) -> tuple[Tensor, int]:
    """Sum over the batch of |output - target| * ``scale`` (std of the target * unit factor)."""
    error = (output.detach().reshape(-1).double() - target.detach().double()).abs().sum() * scale
    return error, target.numel()


def _make_head(spec: HeadSpec) -> nn.Module:
    from mtlbench.models.mpnn import make_head

    return make_head(spec.in_features, spec.dropout)


def _task(name: str, scale: Any = None) -> Task:
    """Task ``name``; ``scale()`` gives the factor from z-score units to the metric's units."""
    scale = scale or (lambda: METRIC_SCALE[name])

    def accumulator() -> MeanMetrics:
        return MeanMetrics({"MAE": partial(absolute_error_sum, scale=scale())})

    return Task(
        name=name,
        loss=mse_loss,
        metrics=(MAE,),
        make_head=_make_head,
        make_accumulator=accumulator,
        loss_type="mse",
        description=f"{qm9_data.DESCRIPTIONS[name]}; MAE in {METRIC_UNITS[name]}",
    )


@register_problem
class QM9Problem(Problem):
    """QM9 with the MPNN of Gilmer et al. (the PyG example of Nash-MTL)."""

    name: ClassVar[str] = "qm9"
    description: ClassVar[str] = "QM9: 11 molecular properties (regression) from one MPNN on complete graphs"
    options: ClassVar[tuple[ProblemOption, ...]] = (
        ProblemOption("graph", "complete", "complete graphs (the paper) or chemical bonds only", choices=GRAPH_KINDS),
        ProblemOption("subset", None, "use the first N molecules of each split (None = all)", parse=positive_integer),
        ProblemOption(
            "train_size", None, "train on the first N training molecules (after subset)", parse=positive_integer
        ),
        ProblemOption("split_seed", 0, "seed of the saved train/val/test permutation (0 = Gama's)", parse=int),
        ProblemOption(
            "features", "pyg", "node/edge features: pyg (as the reference runs) or rdkit", choices=FEATURE_SETS
        ),
        ProblemOption(
            "target_stats",
            "train",
            "z-score targets with the mean/std of the training molecules (train) or of all molecules of the "
            "dataset, whatever subset/train_size (all: Gama's code)",
            choices=("train", "all"),
            keyed_at_default=False,
        ),
    )
    defaults: ClassVar[TrainingDefaults] = TrainingDefaults(
        lr=1e-3,
        batch_size=120,
        epochs=300,
        optimizer="adam",
        scheduler="plateau",
        scheduler_gamma=0.7,
        dropout=0.0,
        weight_decay=0.0,
        grids={"lr": [5e-3, 1e-3, 5e-4], "dropout": [0.0], "weight_decay": [0.0]},
    )

    def __init__(self, tasks: str | list[str] = "all", **options: Any) -> None:
        super().__init__(tasks, **options)
        for key in ("subset", "train_size"):
            value = self.option_values[key]
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise UserInputError(f"qm9: option {key}={value!r} must be a positive integer or None")
        if not isinstance(self.option_values["split_seed"], int):
            raise UserInputError(f"qm9: option split_seed={self.option_values['split_seed']!r} must be an integer")
        self._std: dict[str, float] = {}
        self._mean: dict[str, float] = {}
        self.tasks = [_task(name, partial(self._metric_scale, name)) for name in self.task_names]
        self._split: dict[str, Tensor] = {}
        self._targets = np.zeros((0, 0), dtype=np.float32)
        self._batcher: GraphBatcher | None = None
        self._checksums: dict[str, str] = {}

    @classmethod
    def available_tasks(cls) -> dict[str, Task]:
        """The catalogue; its MAE takes targets as given. An instance's tasks (``self.tasks``) know the
        training std after ``prepare()`` and report MAE in original units."""
        return {name: _task(name) for name in TASKS}

    def _metric_scale(self, name: str) -> float:
        if name not in self._std:
            raise RuntimeError("QM9Problem.prepare() must run before its metrics are computed")
        return self._std[name] * METRIC_SCALE[name]

    # ------------------------------------------------------------------------------------------ data

    def prepare(self) -> None:
        data = qm9_data.load_qm9()
        molecules = data.molecules
        permutation, split_sha = qm9_data.load_split(self.option_values["split_seed"], len(molecules))
        splits = qm9_data.split_indices(permutation)
        subset = self.option_values["subset"]
        if subset is not None:
            splits = {name: indices[:subset] for name, indices in splits.items()}
        if self.option_values["train_size"] is not None:
            splits["train"] = splits["train"][: self.option_values["train_size"]]
        self._split = {name: torch.as_tensor(indices, dtype=torch.long) for name, indices in splits.items()}
        pairs = global_bonds(molecules.atom_ptr, data.bond_ptr, data.bonds)
        features = self.option_values["features"]
        x = node_features(molecules.z, data.atom_aromatic, data.atom_hybrid, pairs, features)
        bond_code = data.bond_type if features == "rdkit" else data.bond_kekule
        self._batcher = GraphBatcher(
            x, molecules.pos, molecules.atom_ptr, data.bond_ptr, data.bonds, bond_code, self.option_values["graph"]
        )
        train = splits["train"]
        self._mean, self._std = {}, {}
        normalised = []
        for name in self.task_names:
            column = molecules.targets[:, TASKS.index(name)]
            mean, std = zscore_statistics(column if self.option_values["target_stats"] == "all" else column[train])
            self._mean[name], self._std[name] = mean, std
            normalised.append((column - mean) / std)
        self._targets = np.ascontiguousarray(np.stack(normalised), dtype=np.float32)  # (T, N)
        seed = self.option_values["split_seed"]
        self._checksums = {**data.checksums, f"qm9/{qm9_data.split_file(seed)}": split_sha}

    def target_statistics(self) -> dict[str, tuple[float, float]]:
        """Per task, the (mean, std) of the training targets used for z-scoring (original units)."""
        return {name: (self._mean[name], self._std[name]) for name in self.task_names}

    def split_indices(self, split: str) -> Tensor:
        """Molecule indices (positions in the cache) of a split."""
        self._check_split(split)
        return self._split[split]

    def _check_split(self, split: str) -> None:
        if not self._split:
            raise RuntimeError("QM9Problem.prepare() must run first")
        if split not in self._split:
            raise UserInputError(f"unknown split {split!r}; choose one of: {', '.join(self.splits)}")

    def num_examples(self, split: str) -> int:
        self._check_split(split)
        return len(self._split[split])

    def make_batch(self, ids: Tensor | np.ndarray) -> Batch:
        """The batch of molecules ``ids`` (positions in the cache)."""
        assert self._batcher is not None
        ids = ids.numpy() if isinstance(ids, Tensor) else np.asarray(ids, dtype=np.int64)
        values = torch.from_numpy(self._targets[:, ids])  # (T, B), rows contiguous
        targets = dict(zip(self.task_names, values, strict=True))
        return Batch(inputs=self._batcher(ids), targets=targets, size=len(ids))

    def batches(
        self, split: str, batch_size: int, *, shuffle: bool = False, generator: torch.Generator | None = None
    ) -> Iterator[Batch]:
        self._check_split(split)
        indices = self._split[split]
        if shuffle:
            indices = indices[torch.randperm(len(indices), generator=generator)]
        for start in range(0, len(indices), batch_size):
            yield self.make_batch(indices[start : start + batch_size])

    def build_model(self, *, dropout: float = 0.0) -> MultiTaskModel:
        from mtlbench.models.mpnn import build_mpnn

        return build_mpnn(self.task_names, dropout=dropout)

    def data_checksums(self) -> dict[str, str]:
        return dict(self._checksums)


def zscore_statistics(values: np.ndarray) -> tuple[float, float]:
    """Mean and (unbiased, as ``torch.std``) standard deviation; a constant target gets std 1."""
    values = np.asarray(values, dtype=np.float64)
    mean = float(values.mean())
    std = float(values.std(ddof=1)) if len(values) > 1 else 0.0
    return mean, std if std > 0 else 1.0

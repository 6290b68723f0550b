"""NYUv2 with three tasks: ``S`` 13-class segmentation, ``D`` depth, ``N`` surface normals.

The benchmark of 001 (Elich et al. section 4.1, A3.1) and of MTAN, LibMTL, CAGrad, Nash-MTL and FAMO,
on MTAN's preprocessed release (``mtlbench data prepare nyuv2 --raw PATH``; mtlbench.data.nyuv2).

- Splits: ``test`` = the official 654 test images (MTAN's ``val/``). ``val_split=libmtl`` (default):
  001's split, LibMTL's 636 train / 159 validation indices of the 795 training images;
  ``val_split=none`` (MTAN, FAMO): train on all 795 and evaluate the *test* set every epoch, as their
  code does (the ``val`` split is then the test split: such a run is test-selected, and the MTAN/FAMO
  protocol reports the mean of the last 10 epochs' test metrics).
- Inputs: RGB in [0, 1] without normalisation, as the reference loaders feed it.
- Augmentation (``augment``, on by default as FAMO and 001; MTAN's default is off): MTAN's
  ``RandomScaleCrop`` (credited there to Jialong Wu, lorenmt/mtan issue 34), copied by CAGrad, FAMO
  and LibMTL: a scale s from {1.0, 1.2, 1.5}, a window of int(H/s) x int(W/s) at a uniform position,
  resized back to H x W (bilinear with align_corners for image and normals, nearest for label and
  depth), depth divided by s; then a horizontal flip with probability 1/2 that negates normal x.
  Draws come from the run's data generator (the reference uses Python's ``random`` and torch's global one).
- Losses and metrics: mtlbench.problems.dense_metrics (MTAN's forms); ``metric_reduction`` global
  (LibMTL, 001) or per_batch (MTAN/FAMO/CAGrad/nash-mtl, which evaluate with batch 2).
- Model: the ``model`` option (mtlbench.models.architectures): ``segnet_mtan`` (MTAN, FAMO, CAGrad,
  nash-mtl), ``segnet`` and ``deeplabv3plus`` (001's two networks, LibMTL's), or ``aspp`` (default: a
  dilated ResNet, output stride 8, with one DeepLab ASPP head per task, CPU-sized with ``width``);
  the normal output is L2-normalised in the loss and metrics (LibMTL; MTAN does it in the network, the
  same function), so that any architecture's raw 3-channel head works.

``PUBLISHED_STL`` holds the single-task numbers papers compare against (CAGrad's, 001 Tables A5/A6).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

from mtlbench.data import nyuv2 as data
from mtlbench.data.cache import verify_files
from mtlbench.errors import MissingDataError, UserInputError
from mtlbench.models.architectures import MODEL_HELP, MODELS, build, check_model
from mtlbench.models.base import MultiTaskModel
from mtlbench.models.deeplab import DeepLabHead
from mtlbench.models.resnet import load_encoder_weights, resnet_encoder
from mtlbench.problems import register_problem
from mtlbench.problems.base import Batch, HeadSpec, Metric, Problem, ProblemOption, Task, TrainingDefaults
from mtlbench.problems.dense_metrics import (
    REDUCTIONS,
    DepthMetrics,
    NormalMetrics,
    SegmentationMetrics,
    depth_loss,
    normal_loss,
    segmentation_loss,
)

CLASSES = data.CLASSES
#: MTAN's RandomScaleCrop scales
SCALES = (1.0, 1.2, 1.5)
VAL_SPLITS = ("libmtl", "none")
TASK_NAMES = ("S", "D", "N")

#: MTAN/FAMO protocol (REFERENCE-DATA 1c); StepLR(100, 0.5) comes with the specs (`step_size` is a run setting)
DEFAULTS = TrainingDefaults(
    lr=1e-4,
    batch_size=2,
    epochs=200,
    optimizer="adam",
    scheduler="none",
    scheduler_gamma=0.5,
    dropout=0.0,
    weight_decay=0.0,
    grids={"lr": [1e-4], "weight_decay": [0.0], "dropout": [0.0]},
)


# ------------------------------------------------------------------------------------- published STL


@dataclass(frozen=True)
class PublishedValue:
    """One published single-task number: its value, unit and direction."""

    task: str
    metric: str
    value: float
    unit: str
    higher_is_better: bool


#: metric names in the papers' column order, with their units and directions
_COLUMNS = (
    ("S", "miou", "fraction", True),
    ("S", "acc", "fraction", True),
    ("D", "abs_err", "depth units (metres, unverified)", False),
    ("D", "rel_err", "fraction", False),
    ("N", "mean_angle", "degrees", False),
    ("N", "median_angle", "degrees", False),
    ("N", "within_11_25", "fraction", True),
    ("N", "within_22_5", "fraction", True),
    ("N", "within_30", "fraction", True),
)


def _row(values: Sequence[float]) -> tuple[PublishedValue, ...]:
    return tuple(
        PublishedValue(task, metric, float(value), unit, higher)
        for (task, metric, unit, higher), value in zip(_COLUMNS, values, strict=True)
    )


#: source -> (citation, values). Values are copied from the papers' tables (001 from its text, seed 001).
PUBLISHED_STL: dict[str, tuple[str, tuple[PublishedValue, ...]]] = {
    "cagrad": (
        "Liu et al., Conflict-Averse Gradient Descent for Multi-task Learning, NeurIPS 2021, NYUv2 table, "
        "'Independent' row (SegNet/MTAN setup); used as BASE by FAMO and nash-mtl experiments/nyuv2/utils.py",
        _row((0.3830, 0.6376, 0.6754, 0.2780, 25.01, 19.21, 0.3014, 0.5720, 0.6915)),
    ),
    "001_segnet_adam": (
        "Elich et al. (001), Table A5, STL row (SegNet, Adam; mean of 3 seeds, LibMTL split, global metrics)",
        _row((0.3922, 0.6462, 0.6068, 0.2579, 24.74, 18.49, 0.3084, 0.5816, 0.6996)),
    ),
    "001_deeplab_adam": (
        "Elich et al. (001), Table A6, STL row (DeepLabV3+, Adam; mean of 3 seeds, LibMTL split, global metrics)",
        _row((0.5517, 0.7668, 0.3650, 0.1524, 21.16, 14.52, 0.4023, 0.6679, 0.7679)),
    ),
}


def published_stl(source: str) -> dict[str, dict[str, float]]:
    """``task -> metric -> value`` of a published single-task row (keys of ``PUBLISHED_STL``)."""
    if source not in PUBLISHED_STL:
        raise UserInputError(
            f"no published NYUv2 single-task row {source!r}; choose one of: {', '.join(PUBLISHED_STL)}"
        )
    out: dict[str, dict[str, float]] = {}
    for item in PUBLISHED_STL[source][1]:
        out.setdefault(item.task, {})[item.metric] = item.value
    return out


# ------------------------------------------------------------------------------------- augmentation


def scale_crop(
    image: Tensor, label: Tensor, depth: Tensor, normal: Tensor, scale: float, top: int, left: int
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """MTAN's RandomScaleCrop for given draws: image/normal (C,H,W), label (H,W), depth (1,H,W)."""
    height, width = image.shape[-2:]
    h, w = int(height / scale), int(width / scale)
    rows, cols = slice(top, top + h), slice(left, left + w)
    size = (height, width)
    image = F.interpolate(image[None, :, rows, cols], size=size, mode="bilinear", align_corners=True)[0]
    label = F.interpolate(label[None, None, rows, cols].float(), size=size, mode="nearest")[0, 0].long()
    depth = F.interpolate(depth[None, :, rows, cols], size=size, mode="nearest")[0] / scale
    normal = F.interpolate(normal[None, :, rows, cols], size=size, mode="bilinear", align_corners=True)[0]
    return image, label, depth, normal


def flip(image: Tensor, label: Tensor, depth: Tensor, normal: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Horizontal flip of one sample; the x component of the normals changes sign."""
    normal = normal.flip(-1).clone()
    normal[0] = -normal[0]
    return image.flip(-1), label.flip(-1), depth.flip(-1), normal


def draw_augmentation(height: int, width: int, generator: torch.Generator | None) -> tuple[float, int, int, bool]:
    """(scale, top, left, flip): scale uniform over SCALES, a uniform window position, flip with p 1/2."""
    scale = SCALES[int(torch.randint(0, len(SCALES), (1,), generator=generator))]
    h, w = int(height / scale), int(width / scale)
    top = int(torch.randint(0, height - h + 1, (1,), generator=generator))
    left = int(torch.randint(0, width - w + 1, (1,), generator=generator))
    flipped = bool(torch.rand(1, generator=generator) < 0.5)
    return scale, top, left, flipped


def augment(
    image: Tensor, label: Tensor, depth: Tensor, normal: Tensor, generator: torch.Generator | None
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Scale-crop then flip every sample of a batch (B,3,H,W), (B,H,W), (B,1,H,W), (B,3,H,W)."""
    height, width = image.shape[-2:]
    out: list[list[Tensor]] = [[], [], [], []]
    for b in range(image.shape[0]):
        scale, top, left, flipped = draw_augmentation(height, width, generator)
        sample = scale_crop(image[b], label[b], depth[b], normal[b], scale, top, left)
        if flipped:
            sample = flip(*sample)
        for store, value in zip(out, sample, strict=True):
            store.append(value)
    return tuple(torch.stack(values) for values in out)  # type: ignore[return-value]


def make_batch(
    arrays: Mapping[str, np.ndarray], task_names: Sequence[str], augment_with: torch.Generator | bool | None = False
) -> Batch:
    """A batch from cached arrays (image uint8 k or float x in [0, 1] (B,H,W,3), label (B,H,W), depth (B,H,W),
    normal (B,H,W,3)).

    ``augment_with``: False, or the generator of the augmentation draws (None = torch's global one).
    """
    image = torch.from_numpy(np.ascontiguousarray(arrays["image"])).permute(0, 3, 1, 2)
    image = image.to(torch.float32) / 255.0 if image.dtype == torch.uint8 else image.to(torch.float32)
    label = torch.from_numpy(np.ascontiguousarray(arrays["label"])).long()
    depth = torch.from_numpy(np.ascontiguousarray(arrays["depth"], dtype=np.float32)).unsqueeze(1)
    normal = torch.from_numpy(np.ascontiguousarray(arrays["normal"], dtype=np.float32)).permute(0, 3, 1, 2)
    if augment_with is not False:
        generator = augment_with if isinstance(augment_with, torch.Generator) else None
        image, label, depth, normal = augment(image, label, depth, normal, generator)
    targets = {"S": label, "D": depth, "N": normal}
    return Batch(image.contiguous(), {name: targets[name].contiguous() for name in task_names}, int(image.shape[0]))


# ------------------------------------------------------------------------------------------- tasks


def make_tasks(classes: int, size: tuple[int, int], width: int, reduction: str = "global") -> dict[str, Task]:
    """S, D, N with DeepLab heads producing (H, W) = ``size`` maps (head channels 4 * ``width``)."""
    channels = 4 * width

    def head(outputs: int) -> Any:
        return lambda spec: DeepLabHead(spec.in_features, outputs, size, channels=channels, dropout=spec.dropout)

    return {
        "S": Task(
            name="S",
            loss=segmentation_loss,
            metrics=(Metric("miou", True), Metric("acc", True)),
            make_head=head(classes),
            make_accumulator=lambda: SegmentationMetrics(classes),
            loss_type="cross_entropy",
            description=f"semantic segmentation, {classes} classes, ignore -1 (mIoU, pixel accuracy)",
        ),
        "D": Task(
            name="D",
            loss=depth_loss,
            metrics=(Metric("abs_err", False), Metric("rel_err", False)),
            make_head=head(1),
            make_accumulator=lambda: DepthMetrics(reduction),
            loss_type="l1",
            description="depth, L1 on valid pixels (target != 0)",
        ),
        "N": Task(
            name="N",
            loss=normal_loss,
            metrics=(
                Metric("mean_angle", False),
                Metric("median_angle", False),
                Metric("within_11_25", True),
                Metric("within_22_5", True),
                Metric("within_30", True),
            ),
            make_head=head(3),
            make_accumulator=lambda: NormalMetrics(reduction),
            # no likelihood is defined for 1 - cos; UW uses its Gaussian form (LibMTL's for every task)
            loss_type="mse",
            description="surface normals (unit), 1 - cosine on valid pixels; angle metrics in degrees",
        ),
    }


def build_model(tasks: Sequence[Task], encoder: str, width: int, weights: str, dropout: float) -> MultiTaskModel:
    """Dilated ResNet (output stride 8) shared, the tasks' heads on its features."""
    network = resnet_encoder(encoder, width=width)
    if weights:
        load_encoder_weights(network, weights)
    spec = HeadSpec(in_features=network.out_channels, dropout=dropout)
    heads = {task.name: task.make_head(spec) for task in tasks}
    return MultiTaskModel(network, heads, representation_size=network.out_channels)


def _boolean(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(value)


_boolean.__name__ = "boolean (true/false)"


@register_problem
class NYUv2Problem(Problem):
    """NYUv2 (MTAN's 288x384 release): S 13 classes, D depth, N normals; prepared from the user's copy."""

    name = "nyuv2"
    description = "NYUv2 (MTAN release): 13-class segmentation, depth, surface normals (001, MTAN, LibMTL)"
    defaults: ClassVar[TrainingDefaults] = DEFAULTS
    options = (
        ProblemOption(
            "val_split", "libmtl", "libmtl: 001's 636/159 split; none: val = test (MTAN)", choices=VAL_SPLITS
        ),
        ProblemOption("augment", True, "MTAN's RandomScaleCrop and flip on training batches", parse=_boolean),
        ProblemOption(
            "metric_reduction", "global", "depth/normal metrics over pixels or per batch", choices=REDUCTIONS
        ),
        ProblemOption("model", "aspp", MODEL_HELP, choices=MODELS, keyed_at_default=False),
        ProblemOption("encoder", "resnet50", "dilated ResNet of aspp/deeplabv3plus*", choices=("resnet18", "resnet50")),
        ProblemOption("width", 64, "base channels of the network (64 = the real one)", parse=int),
        ProblemOption("train_size", 0, "use only the first N training images (0 = all)", parse=int),
        ProblemOption("val_size", 0, "use only the first N validation images (0 = all; a trial)", parse=int),
        ProblemOption("test_size", 0, "use only the first N test images (0 = all; a trial)", parse=int),
        ProblemOption("encoder_weights", "", "torchvision-named state dict to initialise the encoder", parse=str),
    )

    def __init__(self, tasks: str | Sequence[str] = "all", **options: Any) -> None:
        if "val_split" in options and options["val_split"] is None:  # the CLI reads "none" as None
            options["val_split"] = "none"
        super().__init__(tasks, **options)
        if self.option_values["width"] < 1:
            raise UserInputError(f"nyuv2: option width={self.option_values['width']} must be a positive number")
        for key in ("train_size", "val_size", "test_size"):
            if self.option_values[key] < 0:
                raise UserInputError(f"nyuv2: option {key}={self.option_values[key]} must be >= 0")
        self._arrays: dict[str, dict[str, np.ndarray]] = {}
        self._indices: dict[str, np.ndarray] = {}
        self._checksums: dict[str, str] = {}
        self.size: tuple[int, int] | None = None  # (H, W), known once prepared
        self.tasks = self._make_tasks(data.MTAN_SIZE)

    def _make_tasks(self, size: tuple[int, int]) -> list[Task]:
        catalog = make_tasks(data.CLASSES, size, self.option_values["width"], self.option_values["metric_reduction"])
        return [catalog[name] for name in self.task_names]

    @classmethod
    def available_tasks(cls) -> dict[str, Task]:
        return make_tasks(data.CLASSES, data.MTAN_SIZE, 64)

    @property
    def test_selected(self) -> bool:
        """With ``val_split=none`` the validation split is the test split."""
        return self.option_values["val_split"] == "none"

    def prepare(self) -> None:
        if self._arrays:
            return
        if not data.is_prepared():
            raise MissingDataError(data.missing_message())
        folder = data.cache_folder()
        files = verify_files(folder, data.cached_names(), dataset="nyuv2", command=data.PREPARE_COMMAND)
        self._checksums = {f"nyuv2/{name}": digest for name, digest in files.items()}
        train, test = data.load("train"), data.load("test")
        self._arrays = {"train": train, "test": test}
        n_train = len(train["image"])
        if self.option_values["val_split"] == "libmtl":
            split = data.libmtl_split()
            if n_train != data.COUNTS["train"]:
                raise UserInputError(
                    f"nyuv2: val_split=libmtl needs the 795 official training images; the cache has {n_train} "
                    "(use val_split=none)"
                )
            indices = {"train": np.array(split["train"]), "val": np.array(split["val"])}
        else:
            indices = {"train": np.arange(n_train)}
        indices["test"] = np.arange(len(test["image"]))
        if self.test_selected:
            indices["val"] = indices["test"]
        for split in ("train", "val", "test"):
            n = self.option_values[f"{split}_size"]
            if n and not (split == "val" and self.test_selected):  # val = test: test_size applies
                if n > len(indices[split]):
                    raise UserInputError(
                        f"nyuv2: option {split}_size={n} exceeds the {len(indices[split])} {split} images"
                    )
                indices[split] = indices[split][:n]
        if self.test_selected:
            indices["val"] = indices["test"]
        self._indices = indices
        self.size = tuple(train["image"].shape[1:3])  # type: ignore[assignment]
        self.tasks = self._make_tasks(self.size)

    def _source(self, split: str) -> tuple[dict[str, np.ndarray], np.ndarray]:
        if split not in self.splits:
            raise UserInputError(f"nyuv2: unknown split {split!r}; choose one of: {', '.join(self.splits)}")
        self.prepare()
        source = "test" if split == "test" or (split == "val" and self.test_selected) else "train"
        return self._arrays[source], self._indices[split]

    def num_examples(self, split: str) -> int:
        return len(self._source(split)[1])

    def data_checksums(self) -> dict[str, str]:
        return dict(self._checksums)

    def batches(
        self, split: str, batch_size: int, *, shuffle: bool = False, generator: torch.Generator | None = None
    ) -> Iterator[Batch]:
        arrays, rows = self._source(split)
        if batch_size < 1:
            raise UserInputError(f"batch size {batch_size} must be positive")
        order = rows[torch.randperm(len(rows), generator=generator).numpy()] if shuffle else rows
        augment_on = shuffle and split == "train" and self.option_values["augment"]
        for start in range(0, len(order), batch_size):
            chosen = order[start : start + batch_size]
            if shuffle and len(chosen) == 1 and batch_size > 1:
                break  # batch norm of the ASPP pooling branch needs two samples
            read = np.sort(chosen)  # memmaps read in order, returned in the drawn order
            restore = np.argsort(np.argsort(chosen))
            sample = {name: np.asarray(array[read])[restore] for name, array in arrays.items()}
            yield make_batch(sample, self.task_names, generator if augment_on else False)

    def build_model(self, *, dropout: float = 0.0) -> MultiTaskModel:
        values = self.option_values
        if values["model"] != "aspp":
            height, width = self.size or data.MTAN_SIZE
            check_model(self.name, values["model"], height, width, encoder_weights=values["encoder_weights"])
            outputs = {task.name: {"S": data.CLASSES, "D": 1, "N": 3}[task.name] for task in self.tasks}
            return build(
                values["model"],
                outputs,
                (height, width),
                encoder=values["encoder"],
                width=values["width"],
                dropout=dropout,
                encoder_weights=values["encoder_weights"],
            )
        return build_model(self.tasks, values["encoder"], values["width"], values["encoder_weights"], dropout)

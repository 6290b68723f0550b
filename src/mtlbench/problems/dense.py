"""Dense prediction problems of 000 section 3.3: ``cityscapes`` (real, licensed) and ``synthetic_scenes``.

Tasks (Gama & Grassi's ``losses.py``/``metrics.py``; MTL setting of Kendall et al. 2018 and Sener &
Koltun 2018):

- ``S`` semantic segmentation, 7 categories or 19 classes. Loss: cross-entropy with ignore -1, reduced
  as their code does: per image, the sum over labelled pixels divided by all H*W pixels, then the
  batch mean. Metrics ``acc`` (pixel accuracy) and ``miou`` from one confusion matrix over the whole
  split (IoU_c = TP / (TP + FP + FN), mean over classes that occur in the labels or predictions).
- ``D`` disparity (B,1,H,W), 0 = invalid. Loss: L1 over valid pixels, per image mean then batch mean.
  Metrics ``abs_err`` = mean |p - t| and ``rel_err`` = mean |p - t| / t over the valid pixels of the split.
- ``I`` instance offsets: target (B,3,H,W) = (dy, dx, mask), the vector pixel - centroid of its thing
  instance in pixels, (y, x) order, mask 1 on thing pixels. Loss and metric ``l1``: mean |p - t| over the
  masked elements (their ``-1`` marker is replaced by a mask: -1 is a legal offset).

Input images are normalised with the ImageNet mean and std (their pipeline). Training batches
(``split == "train"`` and ``shuffle``) are augmented when ``augment`` is on: rotation by U(-10, 10)
degrees (bilinear image, nearest labels; pixels rotated in from outside are ignored / invalid) and a
horizontal flip with probability 1/2, applied to every target; offsets are recomputed from the
transformed instance map. A last shuffled batch of one image is dropped (the ASPP pooling branch
normalises a 1x1 map, which batch norm cannot do with one sample).

Model: dilated ResNet-18/50 (output stride 8) shared, one DeepLab ASPP head per task (rates 12/24/36).
Protocol: Adam, batch 32, 150 epochs, ExponentialLR(0.95) per epoch (their Cityscapes scripts all pass
``--decay_lr``), grid lr {5e-3, 1e-3, 5e-4, 1e-4} x weight decay {1e-4, 1e-5, 0}, dropout 0.

Presets (000's complexity ladder): R50 = ResNet-50, 256x128, 7 classes, S_D; R18 = ResNet-18; InstSeg
= + I; HR = 512x256; 19C = 19 classes. A preset sets the options that are not given explicitly, and
the tasks when the task list is ``all``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

from mtlbench.data import cityscapes as city
from mtlbench.data import scenes
from mtlbench.data.cache import read_manifest, verify_files
from mtlbench.errors import MissingDataError, UserInputError
from mtlbench.models.architectures import MODEL_HELP, MODELS, build, check_model
from mtlbench.models.base import MultiTaskModel
from mtlbench.models.deeplab import DeepLabHead
from mtlbench.models.resnet import load_encoder_weights, resnet_encoder
from mtlbench.problems import nyuv2 as nyu
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

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
MAX_ROTATION = 10.0
TASK_NAMES = ("S", "D", "I")
AUGMENTATIONS = ("rotate_flip", "scale_crop")
#: output channels of the heads of the tasks other than S (whose count is the ``classes`` option)
HEAD_OUTPUTS = {"D": 1, "I": 2, "N": 3}

#: 000 section 3.3's ladder: options and tasks of each step
PRESETS: dict[str, tuple[dict[str, Any], str]] = {
    "R50": ({"encoder": "resnet50", "resolution": "256x128", "classes": 7}, "S_D"),
    "R18": ({"encoder": "resnet18", "resolution": "256x128", "classes": 7}, "S_D"),
    "InstSeg": ({"encoder": "resnet18", "resolution": "256x128", "classes": 7}, "S_D_I"),
    "HR": ({"encoder": "resnet18", "resolution": "512x256", "classes": 7}, "S_D_I"),
    "19C": ({"encoder": "resnet18", "resolution": "512x256", "classes": 19}, "S_D_I"),
}
#: presets of the generated stand-in only: NYUv2's tasks S (13 classes), D (depth), N (normals) on
#: street scenes at 4:3 like NYUv2's 384x288 (mtlbench.problems.nyuv2's losses, metrics and augmentation)
STANDIN_PRESETS: dict[str, tuple[dict[str, Any], str]] = {
    "NYUv2": ({"encoder": "resnet18", "resolution": "128x96", "classes": nyu.CLASSES}, "S_D_N"),
}

DEFAULTS = TrainingDefaults(
    lr=1e-3,
    batch_size=32,
    epochs=150,
    optimizer="adam",
    scheduler="exponential",
    scheduler_gamma=0.95,
    dropout=0.0,
    weight_decay=1e-4,
    grids={"lr": [5e-3, 1e-3, 5e-4, 1e-4], "weight_decay": [1e-4, 1e-5, 0.0], "dropout": [0.0]},
)


# --------------------------------------------------------------------------------------- option parsing


def resolution(value: str) -> str:
    """Parse ``WxH`` into its canonical spelling (raises ValueError, which the option reports)."""
    width, height = city.parse_resolution(value)
    return city.resolution_name(width, height)


resolution.__name__ = "resolution (WIDTHxHEIGHT, e.g. 256x128)"  # named in the option's error message


def boolean(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(value)


# ------------------------------------------------------------------------------------------- targets


def instance_offsets(instance: Tensor) -> Tensor:
    """(B,H,W) instance ids (0 = none) -> (B,3,H,W): pixel - centroid of its instance as (dy, dx), and mask.

    Centroids are means of the integer pixel indices (row, column) of each instance of each image.
    """
    b, h, w = instance.shape
    device = instance.device
    instance = instance.long()
    mask = instance != 0
    if not bool(mask.any()):
        return torch.zeros(b, 3, h, w, dtype=torch.float32, device=device)
    low, high = int(instance.min()), int(instance.max())
    if (high - low + 1) * b <= 1 << 22:
        keys = (instance - low) + torch.arange(b, device=device).view(b, 1, 1) * (high - low + 1)
    else:  # sparse ids: number them densely first
        keys = torch.unique(
            instance + torch.arange(b, device=device).view(b, 1, 1) * (high - low + 1) - low, return_inverse=True
        )[1]
    keys = keys.flatten()
    rows = torch.arange(h, device=device, dtype=torch.float64).view(1, h, 1).expand(b, h, w).flatten()
    cols = torch.arange(w, device=device, dtype=torch.float64).view(1, 1, w).expand(b, h, w).flatten()
    count = torch.bincount(keys).to(torch.float64).clamp_min(1.0)
    centre_y = (torch.bincount(keys, weights=rows) / count)[keys]
    centre_x = (torch.bincount(keys, weights=cols) / count)[keys]
    valid = mask.flatten().to(torch.float64)
    dy = ((rows - centre_y) * valid).view(b, 1, h, w)
    dx = ((cols - centre_x) * valid).view(b, 1, h, w)
    return torch.cat([dy, dx, valid.view(b, 1, h, w)], 1).to(torch.float32)


def augment(
    image: Tensor, label: Tensor, disparity: Tensor, instance: Tensor, angles: Tensor, flips: Tensor
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Rotate each sample by ``angles`` (degrees, about the image centre) then flip it where ``flips``.

    image (B,3,H,W) bilinear, label (B,H,W) / disparity (B,1,H,W) / instance (B,H,W) nearest, all with
    the same sampling grid; what comes from outside the image becomes label -1, disparity 0, instance 0.
    """
    b, _, h, w = image.shape
    radians = angles.to(image.device, torch.float64) * (math.pi / 180.0)
    cos, sin = torch.cos(radians), torch.sin(radians)
    # a rigid rotation in pixel units, written in the normalised coordinates of affine_grid
    theta = torch.zeros(b, 2, 3, dtype=torch.float64, device=image.device)
    theta[:, 0, 0], theta[:, 0, 1] = cos, -sin * h / w
    theta[:, 1, 0], theta[:, 1, 1] = sin * w / h, cos
    grid = F.affine_grid(theta, [b, 1, h, w], align_corners=False).to(image.dtype)
    image = F.grid_sample(image, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    maps = torch.stack(
        [(label + 1).to(torch.float32), disparity[:, 0].to(torch.float32), instance.to(torch.float32)], 1
    )
    maps = F.grid_sample(maps, grid.to(torch.float32), mode="nearest", padding_mode="zeros", align_corners=False)
    label = maps[:, 0].round().long() - 1
    disparity = maps[:, 1:2]
    instance = maps[:, 2].round().long()
    flip = flips.view(b, 1, 1, 1).to(image.device)
    image = torch.where(flip, image.flip(-1), image)
    disparity = torch.where(flip, disparity.flip(-1), disparity)
    label = torch.where(flip[:, 0], label.flip(-1), label)
    instance = torch.where(flip[:, 0], instance.flip(-1), instance)
    return image, label, disparity, instance


def normalise(image: Tensor) -> Tensor:
    """uint8 (B,H,W,3) -> float (B,3,H,W) normalised with the ImageNet mean and std."""
    x = image.permute(0, 3, 1, 2).to(torch.float32) / 255.0
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=torch.float32).view(1, 3, 1, 1)
    return ((x - mean) / std).contiguous()


# -------------------------------------------------------------------------------------- losses, metrics


def segmentation_loss(output: Tensor, target: Tensor) -> Tensor:
    """Cross-entropy, ignore -1: per image sum over labelled pixels / (H W), mean over the batch."""
    per_pixel = F.cross_entropy(output, target, ignore_index=city.IGNORE, reduction="none")
    return per_pixel.mean()


def disparity_loss(output: Tensor, target: Tensor) -> Tensor:
    """L1 over valid pixels (target != 0): per image mean, then mean over images with valid pixels."""
    mask = (target != 0).to(output.dtype)
    per_image_count = mask.flatten(1).sum(1)
    per_image = ((output - target).abs() * mask).flatten(1).sum(1) / per_image_count.clamp_min(1.0)
    has_valid = (per_image_count > 0).to(output.dtype)
    return (per_image * has_valid).sum() / has_valid.sum().clamp_min(1.0)


def instance_loss(output: Tensor, target: Tensor) -> Tensor:
    """L1 over the masked elements of the 2 offset channels (target = (dy, dx, mask))."""
    mask = target[:, 2:3].to(output.dtype)
    return ((output - target[:, :2]).abs() * mask).sum() / (2.0 * mask.sum()).clamp_min(1.0)


def confusion_metrics(matrix: Tensor | np.ndarray) -> dict[str, float]:
    """Pixel accuracy and mIoU of a confusion matrix (rows = labels, columns = predictions)."""
    m = torch.as_tensor(matrix, dtype=torch.float64)
    total = m.sum()
    diagonal = torch.diagonal(m)
    union = m.sum(0) + m.sum(1) - diagonal
    present = union > 0
    acc = float(diagonal.sum() / total) if total > 0 else math.nan
    miou = float((diagonal[present] / union[present]).mean()) if bool(present.any()) else math.nan
    return {"acc": acc, "miou": miou}


class ConfusionMatrix:
    """Accumulates one confusion matrix over a split (Gama's ``IOUMetric``); labels -1 are skipped."""

    def __init__(self, classes: int) -> None:
        self.classes = classes
        self.matrix = torch.zeros(classes, classes, dtype=torch.int64)

    def update(self, output: Tensor, target: Tensor) -> None:
        prediction = output.argmax(1).flatten()
        target = target.flatten().long()
        valid = (target >= 0) & (target < self.classes)
        index = target[valid] * self.classes + prediction[valid]
        counts = torch.bincount(index, minlength=self.classes**2).view(self.classes, self.classes)
        self.matrix += counts.cpu()

    def compute(self) -> dict[str, float]:
        return confusion_metrics(self.matrix)


def _disparity_abs(output: Tensor, target: Tensor) -> tuple[Tensor, int]:
    mask = target != 0
    return (output - target).abs()[mask].sum(), int(mask.sum())


def _disparity_rel(output: Tensor, target: Tensor) -> tuple[Tensor, int]:
    mask = target != 0
    return ((output - target).abs()[mask] / target[mask].abs()).sum(), int(mask.sum())


def _instance_l1(output: Tensor, target: Tensor) -> tuple[Tensor, int]:
    mask = target[:, 2:3] != 0
    mask2 = mask.expand(-1, 2, -1, -1)
    return (output - target[:, :2]).abs()[mask2].sum(), int(mask2.sum())


def make_tasks(classes: int, size: tuple[int, int], width: int) -> dict[str, Task]:
    """The three tasks with heads producing (H, W) = ``size`` maps; head channels 4 * ``width``."""
    channels = 4 * width

    def head(outputs: int) -> Any:
        return lambda spec: DeepLabHead(spec.in_features, outputs, size, channels=channels, dropout=spec.dropout)

    names = city.CATEGORY_NAMES_7 if classes == 7 else city.CLASS_NAMES_19
    return {
        "S": Task(
            name="S",
            loss=segmentation_loss,
            metrics=(Metric("acc", True), Metric("miou", True)),
            make_head=head(classes),
            make_accumulator=lambda: ConfusionMatrix(classes),
            loss_type="cross_entropy",
            description=f"semantic segmentation, {classes} classes ({', '.join(names[:3])}, ...)",
        ),
        "D": Task(
            name="D",
            loss=disparity_loss,
            metrics=(Metric("abs_err", False), Metric("rel_err", False)),
            make_head=head(1),
            make_accumulator=lambda: MeanMetrics({"abs_err": _disparity_abs, "rel_err": _disparity_rel}),
            loss_type="l1",
            description="disparity (pixels at the input width), L1 on valid pixels",
        ),
        "I": Task(
            name="I",
            loss=instance_loss,
            metrics=(Metric("l1", False),),
            make_head=head(2),
            make_accumulator=lambda: MeanMetrics({"l1": _instance_l1}),
            loss_type="l1",
            description="instance offsets (dy, dx) to the instance centroid, L1 on thing pixels",
        ),
    }


# ------------------------------------------------------------------------------------------ problems


def _common_options(
    resolution_default: str,
    encoder_default: str,
    width_default: int,
    classes_default: int,
    presets: tuple[str, ...] = tuple(PRESETS),
    class_choices: tuple[int, ...] = (7, 19),
) -> tuple[ProblemOption, ...]:
    class_doc = "semantic classes: 7 categories or 19" + (" (13: NYUv2's tasks S, D, N)" if 13 in class_choices else "")
    return (
        ProblemOption(
            "preset", "none", "000's ladder step (sets encoder, resolution, classes, tasks)", choices=("none", *presets)
        ),
        ProblemOption("classes", classes_default, class_doc, parse=int, choices=class_choices),
        ProblemOption("resolution", resolution_default, "input resolution WIDTHxHEIGHT", parse=resolution),
        ProblemOption("model", "aspp", MODEL_HELP, choices=MODELS, keyed_at_default=False),
        ProblemOption(
            "encoder", encoder_default, "shared dilated ResNet of aspp/deeplabv3plus*", choices=("resnet18", "resnet50")
        ),
        ProblemOption("width", width_default, "base channels of the network (64 = the real one)", parse=int),
        ProblemOption("augment", True, "rotation +-10 degrees and horizontal flip of training batches", parse=boolean),
        ProblemOption(
            "augmentation",
            "rotate_flip",
            "rotate_flip (000) or scale_crop (MTAN/CAGrad: scale 1/1.2/1.5 crop, flip; tasks S, D)",
            choices=AUGMENTATIONS,
            keyed_at_default=False,
        ),
        ProblemOption("train_size", 0, "use only the first N training images (0 = all)", parse=int),
        ProblemOption("encoder_weights", "", "torchvision-named state dict to initialise the encoder", parse=str),
    )


class DenseProblem(Problem):
    """Shared machinery of the dense problems: cached arrays, batches, augmentation, model."""

    defaults: ClassVar[TrainingDefaults] = DEFAULTS
    _default_size: ClassVar[tuple[int, int]] = (512, 256)
    presets: ClassVar[dict[str, tuple[dict[str, Any], str]]] = PRESETS

    def __init__(self, tasks: str | Sequence[str] = "all", **options: Any) -> None:
        if options.get("preset", "none") is None:  # the CLI reads "none" as None
            options["preset"] = "none"
        if str(options.get("model", "aspp")).startswith("deeplabv3plus"):
            options.setdefault("encoder", "resnet50")  # 001/LibMTL's backbone, before a preset's
        preset = options.get("preset", "none")
        if preset != "none":
            preset = ProblemOption("preset", "none", "", choices=("none", *self.presets)).coerce(preset, self.name)
            values, preset_tasks = self.presets[preset]
            for key, value in values.items():
                options.setdefault(key, value)
            if tasks == "all":
                tasks = preset_tasks
        if tasks == "all" and "N" in self.available_tasks():  # "all" = the tasks the classes option has
            classes = options.get("classes", next(o.default for o in self.options if o.name == "classes"))
            tasks = "S_D_N" if str(classes) == str(nyu.CLASSES) else "S_D_I"
        super().__init__(tasks, **options)
        width = self.option_values["width"]
        if width < 1:
            raise UserInputError(f"{self.name}: option width={width} must be a positive number of channels")
        if self.option_values["train_size"] < 0:
            raise UserInputError(f"{self.name}: option train_size={self.option_values['train_size']} must be >= 0")
        self.size = city.parse_resolution(self.option_values["resolution"])  # (W, H)
        if self.option_values["augmentation"] == "scale_crop" and "I" in self.task_names:
            raise UserInputError(f"{self.name}: augmentation=scale_crop is for tasks S and D (MTAN's), not I")
        check_model(
            self.name,
            self.option_values["model"],
            self.size[1],
            self.size[0],
            encoder_weights=self.option_values["encoder_weights"],
        )
        classes, size = self.option_values["classes"], (self.size[1], self.size[0])
        nyu_style = classes == nyu.CLASSES
        catalog = nyu.make_tasks(classes, size, width) if nyu_style else make_tasks(classes, size, width)
        for name in self.task_names:
            if name not in catalog:
                needs = "classes=13 (preset NYUv2)" if name == "N" else "classes 7 or 19"
                have = "_".join(catalog)
                raise UserInputError(f"{self.name}: task {name} needs {needs}; classes={classes} has {have}")
        self.tasks = [catalog[name] for name in self.task_names]
        self._data: dict[str, dict[str, np.ndarray]] = {}
        self._checksums: dict[str, str] = {}

    @classmethod
    def available_tasks(cls) -> dict[str, Task]:
        return make_tasks(19, (cls._default_size[1], cls._default_size[0]), 64)

    def reference_config(self) -> dict[str, Any]:
        config = super().reference_config()
        config.pop("preset", None)  # its effect is in the other options
        return config

    # ---------------------------------------------------------------- data

    def _load(self, folder: Path, files: dict[str, str], *, has_instance: bool, extra: Sequence[str] = ()) -> None:
        arrays = [a for a in city.ARRAYS if a != "instance" or has_instance] + list(extra)
        for split in self.splits:
            data = city.load_split(folder, split, arrays)
            if split == "train" and self.option_values["train_size"]:
                n = self.option_values["train_size"]
                available = len(data["image"])
                if n > available:
                    raise UserInputError(f"{self.name}: option train_size={n} exceeds the {available} training images")
                data = {name: array[:n] for name, array in data.items()}
            self._data[split] = data
        self._checksums = files

    def _split(self, split: str) -> dict[str, np.ndarray]:
        if split not in self.splits:
            raise UserInputError(f"{self.name}: unknown split {split!r}; choose one of: {', '.join(self.splits)}")
        if not self._data:
            self.prepare()
        return self._data[split]

    def num_examples(self, split: str) -> int:
        return len(self._split(split)["image"])

    def data_checksums(self) -> dict[str, str]:
        return dict(self._checksums)

    def make_batch(
        self, split: str, indices: np.ndarray, *, augment_with: torch.Generator | bool | None = False
    ) -> Batch:
        """The batch of images ``indices`` of ``split``; ``augment_with`` = False, or the generator to draw
        the augmentation with (None = torch's global one)."""
        data = self._split(split)
        order = np.sort(indices)
        restore = np.argsort(np.argsort(indices))  # read sorted (memmaps), return in the asked order
        if self.option_values["classes"] == nyu.CLASSES:  # NYUv2's tasks: its inputs, targets and augmentation
            label19 = np.asarray(data["label19"][order][restore])
            arrays = {
                "image": np.asarray(data["image"][order][restore]),
                "label": scenes.to_13_classes(label19),
                "depth": scenes.depth_from_disparity(data["disparity"][order][restore], self.size[0]),
                "normal": np.asarray(data["normal"][order][restore]),
            }
            return nyu.make_batch(arrays, self.task_names, augment_with)

        def take(name: str) -> Tensor:
            return torch.from_numpy(np.ascontiguousarray(data[name][order][restore]))

        image = normalise(take("image"))
        classes = self.option_values["classes"]
        label = take("label7" if classes == 7 else "label19").long()
        disparity = take("disparity").unsqueeze(1)
        instance = take("instance").long() if "instance" in data else torch.zeros_like(label)
        if augment_with is not False and self.option_values["augmentation"] == "scale_crop":
            generator = augment_with if isinstance(augment_with, torch.Generator) else None
            # MTAN/CAGrad's RandomScaleCropCityScapes + flip (disparity divided by the scale, as theirs)
            no_normals = torch.zeros(image.shape[0], 3, *image.shape[-2:])
            image, label, disparity, _ = nyu.augment(image, label, disparity, no_normals, generator)
        elif augment_with is not False:
            generator = augment_with if isinstance(augment_with, torch.Generator) else None
            b = image.shape[0]
            angles = (torch.rand(b, generator=generator, dtype=torch.float64) * 2.0 - 1.0) * MAX_ROTATION
            flips = torch.rand(b, generator=generator) < 0.5
            image, label, disparity, instance = augment(image, label, disparity, instance, angles, flips)
        targets: dict[str, Tensor] = {}
        for name in self.task_names:
            if name == "S":
                targets[name] = label
            elif name == "D":
                targets[name] = disparity
            else:
                targets[name] = instance_offsets(instance)
        return Batch(image, targets, int(image.shape[0]))

    def batches(
        self, split: str, batch_size: int, *, shuffle: bool = False, generator: torch.Generator | None = None
    ) -> Iterator[Batch]:
        n = self.num_examples(split)
        if batch_size < 1:
            raise UserInputError(f"batch size {batch_size} must be positive")
        order = torch.randperm(n, generator=generator).numpy() if shuffle else np.arange(n)
        augment_on = shuffle and split == "train" and self.option_values["augment"]
        for start in range(0, n, batch_size):
            indices = order[start : start + batch_size]
            if shuffle and len(indices) == 1 and batch_size > 1:
                break  # a last batch of one: batch norm of the ASPP pooling branch needs two samples
            yield self.make_batch(split, indices, augment_with=generator if augment_on else False)

    # ---------------------------------------------------------------- model

    def head_outputs(self) -> dict[str, int]:
        """Output channels of each task's head (S: classes; D: 1; I: 2 offsets; N: 3 normal components)."""
        return {name: self.option_values["classes"] if name == "S" else HEAD_OUTPUTS[name] for name in self.task_names}

    def build_model(self, *, dropout: float = 0.0) -> MultiTaskModel:
        """The ``model`` option's network (``aspp``: the dilated ResNet and DeepLab heads of 000)."""
        values = self.option_values
        if values["model"] != "aspp":
            return build(
                values["model"],
                self.head_outputs(),
                (self.size[1], self.size[0]),
                encoder=values["encoder"],
                width=values["width"],
                dropout=dropout,
                encoder_weights=values["encoder_weights"],
            )
        encoder = resnet_encoder(self.option_values["encoder"], width=self.option_values["width"])
        if self.option_values["encoder_weights"]:
            load_encoder_weights(encoder, self.option_values["encoder_weights"])
        spec = HeadSpec(in_features=encoder.out_channels, dropout=dropout)
        heads = {task.name: task.make_head(spec) for task in self.tasks}
        built = MultiTaskModel(encoder, heads, representation_size=encoder.out_channels)
        built.architecture = "aspp"
        return built


@register_problem
class CityscapesProblem(DenseProblem):
    """Cityscapes, prepared from the user's licensed copy (``mtlbench data prepare cityscapes``)."""

    name = "cityscapes"
    description = "Cityscapes: segmentation (7/19 classes), disparity, instance offsets (000 section 3.3)"
    options = _common_options("512x256", "resnet18", 64, 19)
    _default_size = (512, 256)

    def prepare(self) -> None:
        if self._data:
            return
        name = self.option_values["resolution"]
        folder = city.cache_folder(name)
        if not city.is_prepared(name):
            raise MissingDataError(city.missing_message(name))
        meta = read_manifest(folder)["meta"]
        has_instance = bool(meta.get("has_instance"))
        if "I" in self.task_names and not has_instance:
            raise MissingDataError(
                f"the Cityscapes cache at {name} came from the MTAN arrays, which have no instances (task I); "
                f"run `{city.PREPARE_COMMAND} --resolution {name} --force` on the raw data"
            )
        arrays = [a for a in city.ARRAYS if a != "instance" or has_instance]
        names = [city.split_file(split, array) for split in self.splits for array in arrays]
        files = verify_files(folder, names, dataset="cityscapes", command=f"{city.PREPARE_COMMAND} --resolution {name}")
        self._load(folder, {f"cityscapes/{name}/{k}": v for k, v in files.items()}, has_instance=has_instance)


@register_problem
class SyntheticScenesProblem(DenseProblem):
    """Generated street scenes with the same tasks (the default stand-in for Cityscapes; CPU-sized)."""

    name = "synthetic_scenes"
    description = "generated street scenes: segmentation (7/19), exact disparity, instance offsets"
    options = (
        *_common_options("128x64", "resnet18", 16, 19, (*PRESETS, *STANDIN_PRESETS), (7, 13, 19)),
        ProblemOption("n_images", 600, "images generated (70/15/15 train/val/test)", parse=int),
        ProblemOption("instances", 8, "thing instances per image", parse=int),
        ProblemOption("seed", 0, "seed of the generator", parse=int),
    )
    _default_size = (128, 64)
    presets: ClassVar[dict[str, tuple[dict[str, Any], str]]] = {**PRESETS, **STANDIN_PRESETS}

    def prepare(self) -> None:
        if self._data:
            return
        width, height = self.size
        normals = self.option_values["classes"] == nyu.CLASSES
        folder, files = scenes.ensure(
            width,
            height,
            n_images=self.option_values["n_images"],
            instances=self.option_values["instances"],
            seed=self.option_values["seed"],
            normals=normals,
        )
        self._load(
            folder,
            {f"synthetic_scenes/{folder.name}/{k}": v for k, v in files.items()},
            has_instance=True,
            extra=("normal",) if normals else (),
        )

    @classmethod
    def available_tasks(cls) -> dict[str, Task]:
        size = (cls._default_size[1], cls._default_size[0])
        return {**make_tasks(19, size, 64), "N": nyu.make_tasks(nyu.CLASSES, size, 64)["N"]}

"""002's dense benchmarks, NYUD-v2 (``nyud``: S 40 classes, D, N, E) and the shared machinery that
``pascal_context`` (:mod:`mtlbench.problems.pascal_context`) builds on.

Data: the user's NYUD_MT / NYUDv2 tree prepared by ``mtlbench data prepare nyud --raw PATH``
(:mod:`mtlbench.data.nyud`), or with ``source=synthetic`` the generated stand-in (preset ``NYUD`` of
:mod:`mtlbench.data.scenes_002`). Splits: ``train`` and ``test`` (NYUD's val list). ``val`` is the test
split: the datasets have no validation split and 002 reports the best checkpoint on test (Table IX notes),
so selecting on ``val`` is selecting on test (docs/fidelity.md).

Tasks, losses (InvPT ``losses/loss_functions.py``, ``utils/common_config.py``) and metrics
(:mod:`mtlbench.problems.dense_metrics_002`, :mod:`mtlbench.problems.edge_eval`):

- ``S`` semantic segmentation: cross-entropy ignoring 255, sum over valid pixels / their count; ``miou`` (%).
- ``D`` depth (metres, 0 = invalid): L1 over valid pixels; ``rmse`` (global).
- ``N`` surface normals (3 channels, zero vector = invalid): L1 between the L2-normalised prediction and
  the label, summed over channels, divided by the valid pixels; ``merr`` (degrees).
- ``E`` edges: weighted BCE with logits, 0.95 on boundary and 0.05 on other pixels (InvPT's
  ``BalancedBinaryCrossEntropyLoss(pos_weight=0.95)``), mean over non-ignored pixels; ``odsf`` (%), SEISM
  protocol with maxDist 0.011 (NYUD) / 0.0075 (PASCAL), ``edge_thresholds`` thresholds (99 = SEISM).

Transforms (``transform`` option):

- ``invpt`` (002, ATRC/InvPT ``data/transforms.py``): training images are scaled by U(0.5, 2.0) (bilinear
  image, nearest targets, depth divided by the scale), cropped at a random place to the resolution (up to
  10 draws until no class covers more than 75% of the labelled pixels), flipped with probability 1/2 (the
  normals' x negated), colour-distorted (brightness +-32, contrast 0.5-1.5, saturation 0.5-1.5, hue +-18 of
  180, each with probability 1/2, contrast first or last), normalised with the ImageNet mean/std and padded
  (centred) to the resolution: image 0, labels 255, depth and normals 0. Test images are only normalised and
  padded (to the batch's largest size if an image exceeds the resolution).
- ``mtinet`` (MTI-Net ``FixedResize``): every image is resized to the resolution (bilinear image, nearest
  targets); training adds the horizontal flip.

Model (``encoder``): dilated ResNet-18/50 (output stride 8) shared, one DeepLab ASPP head per task upsampled
x8 (002's ResNet setup), or 002's HRNet-W18 / ViT / CLIP / DINOv2 / SAM backbones with their heads
(:mod:`mtlbench.models.encoders`); ``encoder_weights`` (a file or ``timm:NAME``), ``normalization`` and
``freeze_encoder`` as :mod:`mtlbench.models.checkpoints`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

from mtlbench.data import nyud as nyud_data
from mtlbench.errors import UserInputError
from mtlbench.models.base import MultiTaskModel
from mtlbench.models.checkpoints import NORMALIZATIONS, freeze, load_into, parse_source
from mtlbench.models.checkpoints import resolve as resolve_weights
from mtlbench.models.deeplab import DeepLabHead
from mtlbench.models.encoders import ENCODER_HELP, ENCODERS, RESNETS
from mtlbench.models.encoders import build_model as build_encoder_model
from mtlbench.models.encoders import divisor as encoder_divisor
from mtlbench.models.resnet import resnet_encoder
from mtlbench.problems import data_variants_002, register_problem
from mtlbench.problems.base import Batch, HeadSpec, Metric, Problem, ProblemOption, Task, TrainingDefaults
from mtlbench.problems.dense_metrics_002 import DepthRMSE, NormalsError, SaliencyMaxF, SegmentationIoU
from mtlbench.problems.edge_eval import MAX_DIST, SEISM_THRESHOLDS, EdgeODS

IGNORE = 255
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
TRANSFORMS = ("invpt", "mtinet")
EDGE_POS_WEIGHT = 0.95
SCALE_RANGE = (0.5, 2.0)
CAT_MAX_RATIO = 0.75


def boolean(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(value)


def resolution(value: str) -> str:
    """``WIDTHxHEIGHT``, both at least 8 (multiples of the encoder's divisor: checked by the problem)."""
    width, height = (int(v) for v in value.lower().split("x"))
    if width < 8 or height < 8:
        raise ValueError(value)
    return f"{width}x{height}"


resolution.__name__ = "resolution (WIDTHxHEIGHT, e.g. 576x448)"


# ----------------------------------------------------------------------------------------------- losses


def segmentation_loss(output: Tensor, target: Tensor) -> Tensor:
    """Cross-entropy ignoring 255: sum over valid pixels / their number (0 when there are none)."""
    target = target.long()
    per_pixel = F.cross_entropy(output, target, ignore_index=IGNORE, reduction="none")
    return per_pixel.sum() / (target != IGNORE).sum().clamp_min(1)


def depth_loss(output: Tensor, target: Tensor) -> Tensor:
    """L1 over valid pixels (target != 0)."""
    mask = target != 0
    return ((output - target).abs() * mask).sum() / mask.sum().clamp_min(1)


def normals_loss(output: Tensor, target: Tensor) -> Tensor:
    """L1 of the L2-normalised prediction over valid pixels (label norm > 0), channels summed."""
    mask = (target.norm(dim=1, keepdim=True) > 0).to(output.dtype)
    prediction = F.normalize(output, p=2, dim=1)
    return ((prediction - target).abs() * mask).sum() / mask.sum().clamp_min(1)


def edge_loss(output: Tensor, target: Tensor) -> Tensor:
    """0.95 y (-log s) + 0.05 (1 - y)(-log(1 - s)), mean over pixels whose label is not 255."""
    valid = target != IGNORE
    label = (target == 1).to(output.dtype)
    positive = F.softplus(-output)  # -log sigmoid
    negative = F.softplus(output)  # -log(1 - sigmoid)
    loss = EDGE_POS_WEIGHT * label * positive + (1 - EDGE_POS_WEIGHT) * (1 - label) * negative
    return (loss * valid).sum() / valid.sum().clamp_min(1)


def saliency_loss(output: Tensor, target: Tensor) -> Tensor:
    """Balanced BCE (InvPT's balanced CrossEntropyLoss on 2 classes, here one logit): positives weighted by
    the fraction of negatives w among the valid pixels of the batch, negatives by 1 - w; / valid pixels."""
    valid = target != IGNORE
    label = (target == 1).to(output.dtype)
    n_valid = valid.sum().clamp_min(1)
    w = ((1 - label) * valid).sum() / n_valid
    loss = w * label * F.softplus(-output) + (1 - w) * (1 - label) * F.softplus(output)
    return (loss * valid).sum() / n_valid


# ---------------------------------------------------------------------------------------------- model


class UpsamplingDeepLabHead(DeepLabHead):
    """DeepLab ASPP head whose output is upsampled to 8x its input (the input image's size)."""

    def __init__(self, in_channels: int, out_channels: int, *, channels: int, dropout: float = 0.0) -> None:
        super().__init__(in_channels, out_channels, (1, 1), channels=channels, dropout=dropout)

    def forward(self, features: Tensor) -> Tensor:
        out = self.classifier(self.refine(self.aspp(features)))
        size = (features.shape[-2] * 8, features.shape[-1] * 8)
        return F.interpolate(out, size=size, mode="bilinear", align_corners=True)


def make_tasks(
    dataset: str, width: int, *, classes: int, edge_thresholds: int, saliency: str = "invpt"
) -> dict[str, Task]:
    channels = 4 * width

    def head(outputs: int) -> Any:
        return lambda spec: UpsamplingDeepLabHead(spec.in_features, outputs, channels=channels, dropout=spec.dropout)

    max_dist = MAX_DIST[dataset]
    tasks = {
        "S": Task(
            "S",
            segmentation_loss,
            (Metric("miou", True),),
            head(classes),
            lambda: SegmentationIoU(classes),
            "cross_entropy",
            f"semantic segmentation, {classes} classes, mIoU in %",
        ),
        "P": Task(
            "P",
            segmentation_loss,
            (Metric("miou", True),),
            head(7),
            lambda: SegmentationIoU(7),
            "cross_entropy",
            "human parts, 6 parts + background (images without people ignored), mIoU in %",
        ),
        "Sal": Task(
            "Sal",
            saliency_loss,
            (Metric("maxf", True),),
            head(1),
            lambda: SaliencyMaxF(saliency, sigmoid_quirk=False),
            "cross_entropy",
            f"saliency, balanced BCE, maxF in % ({saliency} variant)",
        ),
        "D": Task(
            "D", depth_loss, (Metric("rmse", False),), head(1), DepthRMSE, "l1", "depth in metres, L1, global RMSE"
        ),
        "N": Task(
            "N",
            normals_loss,
            (Metric("merr", False),),
            head(3),
            NormalsError,
            "l1",
            "surface normals, L1 on normalised predictions, mean angular error in degrees",
        ),
        "E": Task(
            "E",
            edge_loss,
            (Metric("odsf", True),),
            head(1),
            lambda: EdgeODS(max_dist, edge_thresholds),
            "cross_entropy",
            f"edges, weighted BCE 0.95/0.05, odsF in % (SEISM, maxDist {max_dist}, {edge_thresholds} thresholds)",
        ),
    }
    return tasks


# ------------------------------------------------------------------------------------------ transforms


def _uniform(generator: torch.Generator | None, low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand((), generator=generator, dtype=torch.float64))


def _chance(generator: torch.Generator | None, p: float = 0.5) -> bool:
    return float(torch.rand((), generator=generator, dtype=torch.float64)) < p


def _randint(generator: torch.Generator | None, low: int, high: int) -> int:
    """Uniform integer in [low, high] (inclusive)."""
    return int(torch.randint(low, high + 1, (), generator=generator))


def resize_sample(sample: dict[str, np.ndarray], height: int, width: int) -> dict[str, np.ndarray]:
    """Image bilinear (half-pixel centres, as OpenCV INTER_LINEAR), every target nearest (source index
    floor(i * size / new size), as OpenCV INTER_NEAREST)."""
    out = {}
    h, w = sample["image"].shape[:2]
    rows = np.minimum((np.arange(height) * (h / height)).astype(np.int64), h - 1)
    cols = np.minimum((np.arange(width) * (w / width)).astype(np.int64), w - 1)
    for name, value in sample.items():
        if name == "image":
            x = torch.from_numpy(np.ascontiguousarray(value, dtype=np.float32)).permute(2, 0, 1)[None]
            y = F.interpolate(x, size=(height, width), mode="bilinear", align_corners=False)
            out[name] = y[0].permute(1, 2, 0).numpy()
        else:
            out[name] = value[rows][:, cols]
    return out


def _rgb_to_hsv(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) RGB in 0..255 -> HSV in [0, 1] (hue as a fraction of a turn)."""
    x = torch.from_numpy(np.clip(rgb / 255.0, 0.0, 1.0))
    r, g, b = x.unbind(-1)
    v, _ = x.max(-1)
    c = v - x.min(-1).values
    s = torch.where(v > 0, c / v.clamp_min(1e-12), torch.zeros_like(v))
    safe = c.clamp_min(1e-12)
    h = torch.where(v == r, ((g - b) / safe) % 6, torch.where(v == g, (b - r) / safe + 2, (r - g) / safe + 4))
    h = torch.where(c > 0, h / 6.0, torch.zeros_like(h))
    return torch.stack([h, s, v], -1).numpy()


def _hsv_to_rgb(hsv: np.ndarray) -> np.ndarray:
    """Inverse of :func:`_rgb_to_hsv`, to RGB in 0..255."""
    x = torch.from_numpy(hsv)
    h, s, v = x.unbind(-1)
    k = torch.stack([(5 + h * 6) % 6, (3 + h * 6) % 6, (1 + h * 6) % 6], -1)
    rgb = v[..., None] - v[..., None] * s[..., None] * torch.clamp(torch.minimum(k, 4 - k), 0, 1)
    return (rgb * 255.0).numpy()


def photometric_distortion(image: np.ndarray, generator: torch.Generator | None) -> np.ndarray:
    """InvPT's ``PhotoMetricDistortion`` on a uint8-valued float image (H, W, 3)."""

    def convert(x: np.ndarray, alpha: float = 1.0, beta: float = 0.0) -> np.ndarray:
        return np.floor(np.clip(x * alpha + beta, 0, 255))  # astype(uint8) after clip truncates

    img = np.floor(np.clip(image, 0, 255))
    if _chance(generator):
        img = convert(img, beta=_uniform(generator, -32, 32))
    contrast_first = _chance(generator)

    def contrast(x: np.ndarray) -> np.ndarray:
        return convert(x, alpha=_uniform(generator, 0.5, 1.5)) if _chance(generator) else x

    if contrast_first:
        img = contrast(img)
    if _chance(generator):
        hsv = _rgb_to_hsv(img)
        hsv[..., 1] = convert(hsv[..., 1] * 255.0, alpha=_uniform(generator, 0.5, 1.5)) / 255.0
        img = np.round(_hsv_to_rgb(hsv))
    if _chance(generator):
        hsv = _rgb_to_hsv(img)
        shift = _randint(generator, -18, 17)
        hsv[..., 0] = ((np.round(hsv[..., 0] * 180.0) + shift) % 180) / 180.0
        img = np.round(_hsv_to_rgb(hsv))
    if not contrast_first:
        img = contrast(img)
    return img


FILL = {"image": 0.0, "depth": 0.0, "normals": 0.0}


def pad_sample(sample: dict[str, np.ndarray], height: int, width: int) -> dict[str, np.ndarray]:
    """Centre each array in (height, width): image 0 (after normalisation), depth/normals 0, labels 255."""
    out = {}
    for name, value in sample.items():
        h, w = value.shape[:2]
        if h == height and w == width:
            out[name] = value
            continue
        top, left = (height - h) // 2, (width - w) // 2
        padded = np.full((height, width, *value.shape[2:]), FILL.get(name, IGNORE), dtype=np.float32)
        padded[top : top + h, left : left + w] = value
        out[name] = padded
    return out


def normalise(image: np.ndarray, stats: tuple[Sequence[float], Sequence[float]] | None = None) -> np.ndarray:
    """(image / 255 - mean) / std with ``stats`` = (mean, std) (default ImageNet's; ``normalization`` option)."""
    mean_rgb, std_rgb = stats if stats is not None else (IMAGENET_MEAN, IMAGENET_STD)
    mean = np.array(mean_rgb, dtype=np.float32) * 255.0
    std = np.array(std_rgb, dtype=np.float32) * 255.0
    return (image.astype(np.float32) - mean) / std


def invpt_train_transform(
    sample: dict[str, np.ndarray],
    height: int,
    width: int,
    generator: torch.Generator | None,
    stats: tuple[Sequence[float], Sequence[float]] | None = None,
) -> dict[str, np.ndarray]:
    scale = _uniform(generator, *SCALE_RANGE)
    h, w = sample["image"].shape[:2]
    sample = resize_sample(sample, int(h * scale), int(w * scale))
    if "depth" in sample:
        sample["depth"] = sample["depth"] / scale
    h, w = sample["image"].shape[:2]
    crop = (height, width)
    top = left = 0
    for _ in range(10):
        top, left = _randint(generator, 0, max(h - crop[0], 0)), _randint(generator, 0, max(w - crop[1], 0))
        if "semseg" not in sample:
            break
        labels = sample["semseg"][top : top + crop[0], left : left + crop[1]]
        _, counts = np.unique(labels[labels != IGNORE], return_counts=True)
        if len(counts) > 1 and counts.max() / counts.sum() < CAT_MAX_RATIO:
            break
    sample = {name: value[top : top + crop[0], left : left + crop[1]] for name, value in sample.items()}
    if _chance(generator):
        sample = {name: np.ascontiguousarray(value[:, ::-1]) for name, value in sample.items()}
        if "normals" in sample:
            sample["normals"] = sample["normals"] * np.array([-1.0, 1.0, 1.0], dtype=np.float32)
    sample["image"] = normalise(photometric_distortion(sample["image"], generator), stats)
    return pad_sample(sample, height, width)


# ------------------------------------------------------------------------------------------ problems


def check_encoder_options(problem: str, values: dict[str, Any]) -> None:
    """One-line errors for encoder options that do not go together."""
    if values["encoder_depth"] < 0:
        raise UserInputError(f"{problem}: option encoder_depth={values['encoder_depth']} must be >= 0 (0 = real)")
    named = parse_source(values["encoder_weights"] or "")
    if named is not None and named[1].encoder != values["encoder"]:
        raise UserInputError(
            f"{problem}: encoder_weights={values['encoder_weights']} are weights of encoder {named[1].encoder}, "
            f"not {values['encoder']}"
        )
    if values["freeze_encoder"] and not values["encoder_weights"]:
        raise UserInputError(f"{problem}: freeze_encoder=true needs encoder_weights (a frozen random encoder)")


class Dense002Problem(Problem):
    """Shared machinery of ``nyud`` and ``pascal_context``: ragged native-size data, transforms, model."""

    dataset: ClassVar[str] = "nyud"
    classes: ClassVar[int] = 40
    #: task name -> stored array
    arrays: ClassVar[dict[str, str]] = {"S": "semseg", "D": "depth", "N": "normals", "E": "edge"}
    splits: ClassVar[tuple[str, ...]] = ("train", "val", "test")
    #: ``val`` is the test split: every run is flagged test-selected, and the test-selected rules reuse the
    #: validation evaluation (training/trainer.py)
    #: 002's crop for DINOv2 (supplementary, "Datasets": 448x574 on NYUD (printed 488x574), 518x518 on PASCAL)
    dinov2_resolution: ClassVar[str] = "574x448"
    test_selected: ClassVar[bool] = True
    val_is_test: ClassVar[bool] = True

    def __init__(self, tasks: str | Sequence[str] = "all", **options: Any) -> None:
        named = parse_source(str(options.get("encoder_weights") or ""))
        if named is not None:  # a named source sets its encoder and normalisation unless they are given
            options.setdefault("encoder", named[1].encoder)
            options.setdefault("normalization", named[1].normalization)
        if options.get("encoder") == "vit_b14_reg4":  # 002's DINOv2 crops: multiples of the patch size 14
            options.setdefault("resolution", self.dinov2_resolution)
        super().__init__(tasks, **options)
        values = self.option_values
        check_encoder_options(self.name, values)
        if values["width"] < 1:
            raise UserInputError(f"{self.name}: option width={values['width']} must be a positive number of channels")
        if values["train_size"] < 0:
            raise UserInputError(f"{self.name}: option train_size={values['train_size']} must be >= 0")
        if values["edge_thresholds"] < 1:
            raise UserInputError(f"{self.name}: option edge_thresholds={values['edge_thresholds']} must be >= 1")
        width, height = (int(v) for v in values["resolution"].split("x"))
        self.size = (height, width)
        self._divisor = encoder_divisor(values["encoder"])
        if height % self._divisor or width % self._divisor:
            raise UserInputError(
                f"{self.name}: encoder {values['encoder']} needs a resolution whose width and height are multiples "
                f"of {self._divisor}; got {values['resolution']}"
            )
        self._stats = NORMALIZATIONS[values["normalization"]] or ((0.0, 0.0, 0.0), (1 / 255, 1 / 255, 1 / 255))
        catalog = self._catalog(values)
        self.tasks = [catalog[name] for name in self.task_names]
        self._splits: dict[str, Any] = {}
        self._checksums: dict[str, str] = {}

    @classmethod
    def _catalog(cls, values: dict[str, Any]) -> dict[str, Task]:
        tasks = make_tasks(
            cls.dataset,
            values.get("width", 64),
            classes=cls.classes,
            edge_thresholds=values.get("edge_thresholds", SEISM_THRESHOLDS),
            saliency=values.get("saliency", "invpt"),
        )
        return {name: tasks[name] for name in cls.arrays}

    @classmethod
    def available_tasks(cls) -> dict[str, Task]:
        return cls._catalog({})

    # ---------------------------------------------------------------- data

    def _load_real(self, split: str) -> tuple[Any, dict[str, str]]:
        return nyud_data.load(split)

    def _load_synthetic(self) -> dict[str, Any]:
        from mtlbench.data import scenes_002

        values = self.option_values
        return scenes_002.generate_splits(
            "NYUD" if self.dataset == "nyud" else "PASCAL",
            n_images=values["n_images"],
            width=values["synthetic_size"],
            seed=values["seed"],
        )

    def prepare(self) -> None:
        if self._splits:
            return
        if self.option_values["source"] == "synthetic":
            generated = self._load_synthetic()
            for split in ("train", "test"):
                self._splits[split] = generated[split]
            digest = hashlib.sha256()
            for split in ("train", "test"):
                digest.update(generated[split].digest().encode())
            self._checksums = {f"scenes_002/{self.dataset}/{self.option_values['seed']}": digest.hexdigest()}
        else:
            for split in ("train", "test"):
                data, files = self._load_real(split)
                self._splits[split] = data
                self._checksums.update(files)
        n = self.option_values["train_size"]
        if n:
            available = len(self._splits["train"])
            if n > available:
                raise UserInputError(f"{self.name}: option train_size={n} exceeds the {available} training images")
            self._splits["train"] = self._splits["train"].subset(range(n))
        self._splits["train"] = data_variants_002.apply_train_variants(
            self._splits["train"], self.option_values, classes=self.classes, problem=self.name
        )
        self._splits["val"] = self._splits["test"]  # no validation split: 002 selects on test

    def _split(self, split: str) -> Any:
        if split not in self.splits:
            raise UserInputError(f"{self.name}: unknown split {split!r}; choose one of: {', '.join(self.splits)}")
        self.prepare()
        return self._splits[split]

    def num_examples(self, split: str) -> int:
        return len(self._split(split))

    def data_checksums(self) -> dict[str, str]:
        return dict(self._checksums)

    def scene_ids(self, split: str) -> np.ndarray:
        """Scene id of every image of ``split`` (the generated stand-in only)."""
        data = self._split(split)
        if not hasattr(data, "scenes"):
            raise UserInputError(f"{self.name}: scene ids exist for source=synthetic only")
        return np.asarray(data.scenes)

    def load_sample(self, data: Any, index: int) -> dict[str, np.ndarray]:
        """Image i of a split as float arrays: image (H,W,3) 0..255 and the targets the tasks need."""
        sample = {"image": data.get("image", index).astype(np.float32)}
        for name in self.task_names:
            array = self.arrays[name]
            if array == "normals":
                sample[array] = self._normals(data, index)
            else:
                sample[array] = data.get(array, index).astype(np.float32)
        if isinstance(data, data_variants_002.NoisyLabels):  # 002 Table V: noisy training annotations
            sample = data.perturb(sample, index)
        return sample

    def _normals(self, data: Any, index: int) -> np.ndarray:
        return nyud_data.decode_normals(data.get("normals", index))

    def transform(
        self, sample: dict[str, np.ndarray], *, train: bool, generator: torch.Generator | None
    ) -> dict[str, np.ndarray]:
        height, width = self.size
        if self.option_values["transform"] == "mtinet":
            sample = resize_sample(sample, height, width)
            if train and _chance(generator):
                sample = {name: np.ascontiguousarray(value[:, ::-1]) for name, value in sample.items()}
                if "normals" in sample:
                    sample["normals"] = sample["normals"] * np.array([-1.0, 1.0, 1.0], dtype=np.float32)
            sample["image"] = normalise(sample["image"], self._stats)
            return sample
        if train:
            return invpt_train_transform(sample, height, width, generator, self._stats)
        sample["image"] = normalise(sample["image"], self._stats)
        return sample

    def make_batch(
        self, split: str, indices: Sequence[int], *, augment_with: torch.Generator | bool | None = False
    ) -> Batch:
        data = self._split(split)
        train = augment_with is not False
        generator = augment_with if isinstance(augment_with, torch.Generator) else None
        samples = [self.transform(self.load_sample(data, int(i)), train=train, generator=generator) for i in indices]
        height = max(self.size[0], *(s["image"].shape[0] for s in samples))
        width = max(self.size[1], *(s["image"].shape[1] for s in samples))
        height, width = -(-height // self._divisor) * self._divisor, -(-width // self._divisor) * self._divisor
        samples = [pad_sample(s, height, width) for s in samples]

        def stack(name: str) -> Tensor:
            array = np.stack([s[name] for s in samples]).astype(np.float32)
            tensor = torch.from_numpy(array)
            return tensor.permute(0, 3, 1, 2).contiguous() if tensor.dim() == 4 else tensor.unsqueeze(1)

        inputs = stack("image")
        targets: dict[str, Tensor] = {}
        for name in self.task_names:
            array = self.arrays[name]
            tensor = stack(array)
            targets[name] = tensor[:, 0].long() if name in ("S", "P") else tensor
        return Batch(inputs, targets, len(samples))

    def batches(
        self, split: str, batch_size: int, *, shuffle: bool = False, generator: torch.Generator | None = None
    ) -> Iterator[Batch]:
        if split == "val" and shuffle:  # a method training on validation batches (Auto-Lambda) would see test
            raise UserInputError(
                f"{self.name} has no validation split (val is the test split, as 002 selects on test); "
                "a method that trains on validation batches (auto_lambda) cannot run on it"
            )
        n = self.num_examples(split)
        if batch_size < 1:
            raise UserInputError(f"batch size {batch_size} must be positive")
        order = torch.randperm(n, generator=generator).numpy() if shuffle else np.arange(n)
        augment = shuffle and split == "train" and self.option_values["augment"]
        for start in range(0, n, batch_size):
            indices = order[start : start + batch_size]
            if shuffle and len(indices) == 1 and batch_size > 1:
                break  # batch norm of the ASPP pooling branch needs two samples
            yield self.make_batch(split, indices, augment_with=generator if augment else False)

    def head_outputs(self) -> dict[str, int]:
        """Output channels of each task's head."""
        counts = {"S": self.classes, "P": 7, "Sal": 1, "D": 1, "N": 3, "E": 1}
        return {name: counts[name] for name in self.task_names}

    def build_model(self, *, dropout: float = 0.0) -> MultiTaskModel:
        """The ``encoder`` option's network (:mod:`mtlbench.models.encoders`), initialised from
        ``encoder_weights`` and frozen with ``freeze_encoder``."""
        values = self.option_values
        if values["encoder"] in RESNETS:
            if values["encoder_depth"]:
                raise UserInputError(f"{self.name}: option encoder_depth is for HRNet and ViT encoders, not ResNets")
            encoder = resnet_encoder(values["encoder"], width=values["width"])
            spec = HeadSpec(in_features=encoder.out_channels, dropout=dropout)
            heads = {task.name: task.make_head(spec) for task in self.tasks}
            model = MultiTaskModel(encoder, heads, representation_size=encoder.out_channels)
        else:
            model = build_encoder_model(
                values["encoder"], self.head_outputs(), self.size, width=values["width"], depth=values["encoder_depth"]
            )
        if values["encoder_weights"]:
            path, _ = resolve_weights(values["encoder_weights"])
            load_into(model.encoder, path, label=values["encoder_weights"])
        if values["freeze_encoder"]:
            freeze(model.encoder)
        return model


# --------------------------------------------------------------------------------- published numbers

#: metric columns of 002 Table II per dataset: (task, metric, unit, higher is better)
_TABLE_II_COLUMNS = {
    "nyud": (
        ("S", "miou", "percent", True),
        ("D", "rmse", "metres", False),
        ("N", "merr", "degrees", False),
        ("E", "odsf", "percent", True),
    ),
    "pascal_context": (
        ("S", "miou", "percent", True),
        ("P", "miou", "percent", True),
        ("N", "merr", "degrees", False),
        ("Sal", "maxf", "percent", True),
        ("E", "odsf", "percent", True),
    ),
}
#: 002 Table II, ResNet-18 rows (values copied from the paper; Delta_m of the row in the last entry). Eq. 5
#: recomputed from the rows' numbers gives the printed Delta_m except PASCAL grid search: -2.78, printed -2.64.
_TABLE_II_ROWS = {
    ("nyud", "single_task"): (39.38, 0.6111, 21.94, 72.40, 0.00),
    ("nyud", "uniform"): (39.70, 0.6030, 23.37, 67.10, -2.93),
    ("nyud", "grid_search"): (39.87, 0.5999, 22.74, 72.40, -0.15),
    ("pascal_context", "single_task"): (66.59, 61.29, 13.67, 84.77, 66.90, 0.00),
    ("pascal_context", "uniform"): (66.52, 60.02, 14.99, 83.25, 62.50, -4.04),
    ("pascal_context", "grid_search"): (65.10, 59.28, 14.39, 83.91, 65.50, -2.64),
}
TABLE_II_SOURCE = (
    "Guo et al. (002), Revisit the Imbalance Optimization in Multi-task Learning, Table II (ResNet-18; "
    "best checkpoint on test; edge odsF from SEISM)"
)


def published_002(dataset: str, row: str = "single_task") -> dict[str, Any]:
    """002 Table II's ResNet-18 ``row`` (single_task, uniform, grid_search) of ``nyud`` or ``pascal_context``:
    ``{"source", "delta_m", "values": [PublishedValue...], "metrics": task -> metric -> value}``."""
    from mtlbench.problems.nyuv2 import PublishedValue

    key = (dataset, row)
    if key not in _TABLE_II_ROWS:
        rows = sorted({r for d, r in _TABLE_II_ROWS if d == dataset}) or ["(dataset: nyud, pascal_context)"]
        raise UserInputError(f"no 002 Table II row {row!r} for {dataset!r}; choose one of: {', '.join(rows)}")
    *numbers, delta = _TABLE_II_ROWS[key]
    values = [
        PublishedValue(task, metric, float(value), unit, higher)
        for (task, metric, unit, higher), value in zip(_TABLE_II_COLUMNS[dataset], numbers, strict=True)
    ]
    metrics: dict[str, dict[str, float]] = {}
    for item in values:
        metrics.setdefault(item.task, {})[item.metric] = item.value
    return {"source": TABLE_II_SOURCE, "delta_m": delta, "values": values, "metrics": metrics}


def common_options(resolution_default: str, synthetic_default: int) -> tuple[ProblemOption, ...]:
    return (
        ProblemOption(
            "source",
            "real",
            "real (the prepared cache) or synthetic (the generated stand-in)",
            choices=("real", "synthetic"),
        ),
        ProblemOption("resolution", resolution_default, "training crop / padded size WIDTHxHEIGHT", parse=resolution),
        ProblemOption(
            "transform", "invpt", "invpt (scale 0.5-2, crop/pad, flip, colour) or mtinet (resize)", choices=TRANSFORMS
        ),
        ProblemOption("augment", True, "augment training batches", parse=boolean),
        ProblemOption("encoder", "resnet18", ENCODER_HELP, choices=ENCODERS),
        ProblemOption("width", 64, "channels of the network relative to the real one (64 = the real one)", parse=int),
        ProblemOption(
            "encoder_depth",
            0,
            "blocks of HRNet branches / ViT layers (0 = the real one)",
            parse=int,
            keyed_at_default=False,
        ),
        ProblemOption(
            "encoder_weights", "", "initial encoder weights: PATH (.pth, .safetensors) or timm:NAME", parse=str
        ),
        ProblemOption(
            "normalization",
            "imagenet",
            "image mean/std: imagenet, inception (AugReg ViT), clip or none (set by a timm:NAME source)",
            choices=tuple(NORMALIZATIONS),
            keyed_at_default=False,
        ),
        ProblemOption(
            "freeze_encoder",
            False,
            "train the heads only (encoder fixed, batch norm in eval)",
            parse=boolean,
            keyed_at_default=False,
        ),
        ProblemOption("edge_thresholds", SEISM_THRESHOLDS, "thresholds of the edge odsF (99 = SEISM's)", parse=int),
        ProblemOption("train_size", 0, "use only the first N training images (0 = all)", parse=int),
        ProblemOption(
            "subsample",
            "",
            "002 Table V less data: images|scenes|per_scene:AMOUNT (scenes: stand-in only)",
            parse=data_variants_002.parse_subsample,
            keyed_at_default=False,
        ),
        ProblemOption(
            "label_noise",
            0.0,
            "002 Table V noise: rate of changed segmentation pixels (+ depth/normals noise); 0 = clean",
            parse=float,
            keyed_at_default=False,
        ),
        ProblemOption(
            "noise_sigma",
            "0.1:0.1",
            "with label_noise: DEPTH:NORMALS Gaussian standard deviations (002 gives none)",
            parse=data_variants_002.parse_sigma,
            keyed_at_default=False,
        ),
        ProblemOption("n_images", 120, "stand-in: images generated (75% train, 25% test)", parse=int),
        ProblemOption(
            "synthetic_size", synthetic_default, "stand-in: generated image width (multiple of 8)", parse=int
        ),
        ProblemOption("seed", 0, "stand-in: seed of the generator", parse=int),
    )


DEFAULTS = TrainingDefaults(
    lr=1e-4,
    batch_size=6,
    epochs=100,
    optimizer="adam",
    scheduler="poly",
    scheduler_gamma=1.0,
    weight_decay=1e-4,
    grids={"lr": [1e-4], "weight_decay": [1e-4], "dropout": [0.0]},
)


@register_problem
class NyudProblem(Dense002Problem):
    """NYUD-v2 with 002's four tasks (S 40 classes, D, N, E)."""

    name = "nyud"
    description = "NYUD-v2 (MTI-Net/InvPT): segmentation 40, depth, normals, edges (002)"
    options = common_options("576x448", 64)
    defaults = DEFAULTS
    dataset = "nyud"
    classes = 40
    arrays: ClassVar[dict[str, str]] = {"S": "semseg", "D": "depth", "N": "normals", "E": "edge"}

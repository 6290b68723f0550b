"""Losses and metrics of the NYUv2 tasks as the MTL optimizer codebases compute them.

Sources: MTAN ``im2im_pred/utils.py`` (``model_fit``, ``ConfMatrix``, ``depth_error``, ``normal_error``;
FAMO, CAGrad and nash-mtl copy it) and LibMTL ``examples/nyu/utils.py``; ../shared/REFERENCE-DATA.md 1b.

Valid pixels: depth where the target is not 0; normals where the sum of the three target components
is not 0 (the reference codes' mask; a genuine normal whose components sum to 0 is masked too);
segmentation where 0 <= target < classes (-1 = unlabelled).

Losses (training; means over the valid pixels of the whole batch):

- ``S``: cross-entropy over labelled pixels (MTAN: NLL of log-softmax outputs, ignore -1);
- ``D``: sum |p - t| over valid pixels / their number;
- ``N``: 1 - sum <p, t> over valid pixels / their number, p = the output divided by its L2 norm per
  pixel (LibMTL's loss; MTAN normalises in the network: the same function).

Metrics. mIoU and pixel accuracy always come from one confusion matrix over all pixels of the split
(MTAN's Nov-2020 formula, shared by all). Depth and normal metrics have two reductions:

- ``global`` (LibMTL, 001): a pixel mean over the split (LibMTL weights per-batch values by their
  valid-pixel counts); normal mean, median and fractions over all valid pixels of the split.
- ``per_batch`` (MTAN, FAMO, CAGrad, nash-mtl): each batch's value, then the mean over batches (so the
  "median" is a mean of per-batch medians); it depends on the test batch size (2 in those codes).

mIoU averages IoU over the classes that occur in the labels or predictions of the split; MTAN and
LibMTL average over all 13 (a class absent from both gives 0/0 = NaN there); on NYUv2's test set every
class occurs, so the two agree (docs/fidelity.md).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

REDUCTIONS = ("global", "per_batch")
#: thresholds (degrees) of the "within" normal metrics, and their metric names
ANGLE_THRESHOLDS = ((11.25, "within_11_25"), (22.5, "within_22_5"), (30.0, "within_30"))
NORMAL_METRICS = ("mean_angle", "median_angle", *(name for _, name in ANGLE_THRESHOLDS))
DEPTH_METRICS = ("abs_err", "rel_err")
SEGMENTATION_METRICS = ("miou", "acc")


def _check_reduction(reduction: str) -> str:
    if reduction not in REDUCTIONS:
        raise ValueError(f"metric reduction {reduction!r}; choose one of: {', '.join(REDUCTIONS)}")
    return reduction


# ------------------------------------------------------------------------------------------- masks


def depth_mask(target: Tensor) -> Tensor:
    """(B,1,H,W) or (B,H,W) depth -> (B,H,W) bool: the channel sum is not 0."""
    return (target.sum(1) if target.dim() == 4 else target) != 0


def normal_mask(target: Tensor) -> Tensor:
    """(B,3,H,W) normals -> (B,H,W) bool: the sum of the three components is not 0."""
    return target.sum(1) != 0


# ------------------------------------------------------------------------------------------ losses


def segmentation_loss(output: Tensor, target: Tensor) -> Tensor:
    """Cross-entropy (logits) over the labelled pixels of the batch (ignore -1); 0 if none is labelled."""
    labelled = (target >= 0).sum()
    per_pixel = F.cross_entropy(output, target.long(), ignore_index=-1, reduction="sum")
    return per_pixel / labelled.clamp_min(1).to(per_pixel.dtype)


def depth_loss(output: Tensor, target: Tensor) -> Tensor:
    """Masked L1: sum |p - t| over valid pixels / number of valid pixels of the batch."""
    mask = depth_mask(target).unsqueeze(1).to(output.dtype)
    return ((output - target).abs() * mask).sum() / mask.sum().clamp_min(1.0)


def normal_loss(output: Tensor, target: Tensor) -> Tensor:
    """1 - sum <p/|p|, t> over valid pixels / number of valid pixels of the batch."""
    mask = normal_mask(target).unsqueeze(1).to(output.dtype)
    return 1.0 - (F.normalize(output, dim=1) * target * mask).sum() / mask.sum().clamp_min(1.0)


# ----------------------------------------------------------------------------------------- metrics


class SegmentationMetrics:
    """One confusion matrix over the split (rows = labels, columns = argmax predictions)."""

    def __init__(self, classes: int) -> None:
        self.classes = classes
        self.matrix = torch.zeros(classes, classes, dtype=torch.int64)

    def update(self, output: Tensor, target: Tensor) -> None:
        prediction = output.argmax(1).flatten()
        target = target.flatten().long()
        valid = (target >= 0) & (target < self.classes)
        index = target[valid] * self.classes + prediction[valid]
        self.matrix += torch.bincount(index, minlength=self.classes**2).view(self.classes, self.classes).cpu()

    def compute(self) -> dict[str, float]:
        m = self.matrix.to(torch.float64)
        diagonal = torch.diagonal(m)
        union = m.sum(0) + m.sum(1) - diagonal
        present = union > 0
        total = float(m.sum())
        return {
            "miou": float((diagonal[present] / union[present]).mean()) if bool(present.any()) else math.nan,
            "acc": float(diagonal.sum()) / total if total > 0 else math.nan,
        }


class DepthMetrics:
    """Absolute and relative depth error over valid pixels, reduced ``global`` or ``per_batch``."""

    def __init__(self, reduction: str = "global") -> None:
        self.reduction = _check_reduction(reduction)
        self.sums = np.zeros(2)
        self.count = 0
        self.batch_values: list[tuple[float, float]] = []

    def update(self, output: Tensor, target: Tensor) -> None:
        mask = depth_mask(target)
        t = (target.sum(1) if target.dim() == 4 else target)[mask].double()
        p = (output.sum(1) if output.dim() == 4 else output)[mask].double()
        n = int(mask.sum())
        if n == 0:
            return  # no valid pixel: the reference codes divide by zero here
        error = (p - t).abs()
        sums = np.array([float(error.sum()), float((error / t).sum())])
        self.sums += sums
        self.count += n
        self.batch_values.append((sums[0] / n, sums[1] / n))

    def compute(self) -> dict[str, float]:
        if self.reduction == "global":
            values = self.sums / self.count if self.count else np.full(2, math.nan)
        else:
            values = np.mean(self.batch_values, axis=0) if self.batch_values else np.full(2, math.nan)
        return dict(zip(DEPTH_METRICS, (float(v) for v in values), strict=True))


def angles(output: Tensor, target: Tensor) -> Tensor:
    """Angles in degrees between (normalised) predictions and targets at the valid pixels (float64)."""
    mask = normal_mask(target)
    prediction = F.normalize(output.double(), dim=1)
    cosine = (prediction * target.double()).sum(1)[mask].clamp(-1.0, 1.0)
    return torch.rad2deg(torch.arccos(cosine))


def angle_summary(values: np.ndarray) -> np.ndarray:
    """mean, median and the fractions below 11.25, 22.5, 30 degrees of a set of angles."""
    return np.array(
        [values.mean(), np.median(values), *((values < threshold).mean() for threshold, _ in ANGLE_THRESHOLDS)]
    )


class NormalMetrics:
    """Angular errors over valid pixels: mean, median, fractions within 11.25/22.5/30 degrees."""

    def __init__(self, reduction: str = "global") -> None:
        self.reduction = _check_reduction(reduction)
        self.pieces: list[np.ndarray] = []
        self.batch_values: list[np.ndarray] = []

    def update(self, output: Tensor, target: Tensor) -> None:
        values = angles(output, target).cpu().numpy()
        if values.size == 0:
            return
        if self.reduction == "global":
            self.pieces.append(values.astype(np.float32))  # the median needs every angle of the split
        else:
            self.batch_values.append(angle_summary(values))

    def compute(self) -> dict[str, float]:
        if self.reduction == "global":
            summary = angle_summary(np.concatenate(self.pieces).astype(np.float64)) if self.pieces else None
        else:
            summary = np.mean(self.batch_values, axis=0) if self.batch_values else None
        if summary is None:
            summary = np.full(len(NORMAL_METRICS), math.nan)
        return dict(zip(NORMAL_METRICS, (float(v) for v in summary), strict=True))

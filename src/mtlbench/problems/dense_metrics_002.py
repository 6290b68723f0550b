"""Test metrics of the dense benchmarks of 002 (NYUD-v2 and PASCAL-Context as MTI-Net / ATRC / InvPT use them).

Sources (facts in ../shared/REFERENCE-DATA.md sections 1e and 2):

- ``SegmentationIoU``: InvPT ``evaluation/eval_semseg.py`` (the "macro" ATRC way) and
  ``eval_human_parts.py``: per-class TP/FP/FN summed over the whole split on pixels whose label is not
  255, IoU_c = TP / max(TP + FP + FN, 1e-8), mIoU = mean over *all* classes (a class that never occurs
  counts 0). Reported in percent, as 002's tables.
- ``DepthRMSE``: InvPT ``eval_depth.py``: predictions <= 0 become 1e-9, then sqrt(sum (gt - pred)^2 / n)
  over every valid pixel of the split (global, not per image). Depth 0 = invalid. Metres.
- ``NormalsError``: both codebases' ``eval_normals.py``: prediction and label L2-normalised, angle in
  degrees per valid pixel (label vector of norm 0 = invalid), mean over the split. We use the atan2 form
  of InvPT (2 atan2(|p - g|, |p + g|)), equal to MTI-Net's arccos of the clipped dot product.
- ``SaliencyMaxF``: two variants, named by the ``variant`` argument.
  ``invpt`` (InvPT ``eval_sal.py``): thresholds 0.05, 0.10, ..., 0.95; TP and predicted/actual
  positives summed over the split (pixels with label 255 skipped); F_beta with beta^2 = 0.3; maxF =
  max over thresholds (NaN F counts 0). InvPT's meter applies a sigmoid to predictions that are already
  probabilities; ``sigmoid_quirk=True`` reproduces that (docs/fidelity.md).
  ``mtinet`` (MTI-Net ``eval_sal.py`` + ``jaccard.py``): 15 thresholds linspace(0.2, 0.9), a pixel is
  positive when prob > threshold; precision and recall per image (tp / (tp + fp + 1e-12)), averaged
  over images; F = 2PR / (P + R + 1e-12) with beta = 1; maxF = max over thresholds.
  Both in percent.

The edge metric (SEISM odsF) is in :mod:`mtlbench.problems.edge_eval`.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

IGNORE = 255


class SegmentationIoU:
    """Dataset-level TP/FP/FN per class; ``compute`` -> {"miou": percent}. ``output`` = logits (B,C,H,W)
    or labels (B,H,W); ``target`` (B,H,W) with 255 = ignore."""

    def __init__(self, classes: int, name: str = "miou") -> None:
        self.classes = classes
        self.name = name
        self.matrix = torch.zeros(classes, classes, dtype=torch.int64)

    def update(self, output: Tensor, target: Tensor) -> None:
        prediction = output.argmax(1) if output.dim() == target.dim() + 1 else output
        prediction = prediction.flatten().long()
        target = target.flatten().long()
        valid = target != IGNORE
        label, prediction = target[valid], prediction[valid]
        if label.numel() and (int(label.min()) < 0 or int(label.max()) >= self.classes):
            raise ValueError(f"segmentation labels must be 0..{self.classes - 1} or {IGNORE}")
        index = label * self.classes + prediction.clamp(0, self.classes - 1)
        self.matrix += torch.bincount(index, minlength=self.classes**2).view(self.classes, self.classes).cpu()

    def counts(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        m = self.matrix.numpy()
        tp = np.diagonal(m).astype(np.float64)
        return tp, m.sum(0) - tp, m.sum(1) - tp  # tp, fp, fn

    def compute(self) -> dict[str, float]:
        tp, fp, fn = self.counts()
        iou = tp / np.maximum(tp + fp + fn, 1e-8)
        return {self.name: 100.0 * float(iou.mean())}


class DepthRMSE:
    """Global RMSE over valid pixels (target != 0) of the split; predictions <= 0 become 1e-9."""

    def __init__(self) -> None:
        self.squared = 0.0
        self.count = 0

    def update(self, output: Tensor, target: Tensor) -> None:
        prediction = torch.where(output <= 0, torch.full_like(output, 1e-9), output).double()
        valid = target != 0
        self.squared += float(((prediction - target.double())[valid] ** 2).sum())
        self.count += int(valid.sum())

    def compute(self) -> dict[str, float]:
        return {"rmse": math.sqrt(self.squared / self.count) if self.count else math.nan}


def normal_angles(output: Tensor, target: Tensor) -> Tensor:
    """Angles in degrees between (B,3,H,W) predictions and labels at the valid pixels (label norm > 0)."""
    valid = target.double().norm(dim=1) > 0
    p = torch.nn.functional.normalize(output.double(), dim=1).permute(0, 2, 3, 1)[valid]
    g = torch.nn.functional.normalize(target.double(), dim=1).permute(0, 2, 3, 1)[valid]
    return torch.rad2deg(2.0 * torch.atan2((p - g).norm(dim=1), (p + g).norm(dim=1)))


class NormalsError:
    """Mean angular error in degrees over the valid pixels of the split."""

    def __init__(self) -> None:
        self.total = 0.0
        self.count = 0

    def update(self, output: Tensor, target: Tensor) -> None:
        angles = normal_angles(output, target)
        self.total += float(angles.sum())
        self.count += int(angles.numel())

    def compute(self) -> dict[str, float]:
        return {"merr": self.total / self.count if self.count else math.nan}


SALIENCY_VARIANTS = ("invpt", "mtinet")


def saliency_thresholds(variant: str) -> np.ndarray:
    if variant == "invpt":
        return np.arange(1, 20) * 0.05
    if variant == "mtinet":
        return np.linspace(0.2, 0.9, 15)
    raise ValueError(f"saliency variant {variant!r}; choose one of: {', '.join(SALIENCY_VARIANTS)}")


class SaliencyMaxF:
    """maxF of saliency in InvPT's or MTI-Net's variant (module docstring). ``output`` = logits
    (B,1,H,W) (probability = sigmoid); ``target`` (B,1,H,W) 0/1, 255 = ignore."""

    def __init__(self, variant: str = "invpt", *, sigmoid_quirk: bool = False) -> None:
        self.thresholds = torch.as_tensor(saliency_thresholds(variant), dtype=torch.float64)
        self.variant = variant
        self.sigmoid_quirk = sigmoid_quirk
        k = len(self.thresholds)
        self.tp = torch.zeros(k, dtype=torch.float64)
        self.predicted = torch.zeros(k, dtype=torch.float64)
        self.actual = torch.zeros(k, dtype=torch.float64)
        self.precisions: list[Tensor] = []
        self.recalls: list[Tensor] = []

    def update_probabilities(self, probability: Tensor, target: Tensor) -> None:
        """Accumulate (B,H,W) or (B,1,H,W) probabilities."""
        b = probability.shape[0]
        p = probability.double().reshape(b, 1, -1)
        t = target.reshape(b, 1, -1).cpu()
        p = p.cpu()
        valid = (t != IGNORE).double()
        positive = (t == 1).double() * valid
        thresholds = self.thresholds.view(1, -1, 1)
        if self.variant == "invpt":
            if self.sigmoid_quirk:
                p = torch.sigmoid(p)
            predicted = (p >= thresholds).double() * valid
            self.tp += (predicted * positive).sum((0, 2))
            self.predicted += predicted.sum((0, 2))
            self.actual += positive.sum((0, 2)).expand(len(self.thresholds))
        else:
            predicted = (p > thresholds).double() * valid
            tp = (predicted * positive).sum(2)
            fp = (predicted * (1 - positive)).sum(2)
            fn = ((1 - predicted) * positive).sum(2)
            self.precisions.append(tp / (tp + fp + 1e-12))
            self.recalls.append(tp / (tp + fn + 1e-12))

    def update(self, output: Tensor, target: Tensor) -> None:
        self.update_probabilities(torch.sigmoid(output.double()), target)

    def f_scores(self) -> Tensor:
        if self.variant == "invpt":
            precision = self.tp / self.predicted
            recall = self.tp / self.actual
            beta2 = 0.3
            f = (1 + beta2) * precision * recall / (beta2 * precision + recall)
            return torch.nan_to_num(f, nan=0.0)
        if not self.precisions:
            return torch.full((len(self.thresholds),), math.nan, dtype=torch.float64)
        precision = torch.cat(self.precisions).mean(0)
        recall = torch.cat(self.recalls).mean(0)
        return 2 * precision * recall / (precision + recall + 1e-12)

    def compute(self) -> dict[str, float]:
        return {"maxf": 100.0 * float(self.f_scores().max())}

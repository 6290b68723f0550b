"""NYUv2 losses and metrics against values computed by hand on tiny arrays, both reductions."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mtlbench.problems.dense_metrics import (
    DepthMetrics,
    NormalMetrics,
    SegmentationMetrics,
    depth_loss,
    normal_loss,
    segmentation_loss,
)
from mtlbench.problems.nyuv2 import make_tasks


def _logits(prediction: list[list[int]], classes: int) -> torch.Tensor:
    """(1, classes, H, W) logits whose argmax is ``prediction``."""
    return torch.nn.functional.one_hot(torch.tensor(prediction), classes).permute(2, 0, 1)[None].float()


@pytest.mark.parametrize("split_batches", [False, True])
def test_confusion_miou_and_pixel_accuracy(split_batches: bool) -> None:
    target = torch.tensor([[[0, 0, 1], [2, -1, 1]]])
    output = _logits([[0, 1, 1], [2, 0, 0]], 3)
    metrics = SegmentationMetrics(3)
    if split_batches:  # the matrix is accumulated over the split however it is batched
        metrics.update(output[..., :1, :], target[:, :1])
        metrics.update(output[..., 1:, :], target[:, 1:])
    else:
        metrics.update(output, target)
    # rows = labels: 0 -> (1, 1, 0), 1 -> (1, 1, 0), 2 -> (0, 0, 1); the -1 pixel is skipped
    assert metrics.matrix.tolist() == [[1, 1, 0], [1, 1, 0], [0, 0, 1]]
    values = metrics.compute()
    assert values["acc"] == pytest.approx(3 / 5)
    assert values["miou"] == pytest.approx((1 / 3 + 1 / 3 + 1) / 3)


def test_confusion_skips_labels_out_of_range_and_absent_classes() -> None:
    metrics = SegmentationMetrics(4)
    metrics.update(_logits([[1, 1, 0]], 4), torch.tensor([[[1, 7, 1]]]))
    # label 7 is outside 0 <= t < 4; classes 2 and 3 never occur: mean over classes 0 and 1
    assert metrics.compute() == pytest.approx({"acc": 1 / 2, "miou": (0 + 1 / 2) / 2})


def _depth_batches() -> list[tuple[torch.Tensor, torch.Tensor]]:
    first = (torch.tensor([[[[1.0, 5.0], [5.0, 1.0]]]]), torch.tensor([[[[2.0, 0.0], [4.0, 1.0]]]]))
    second = (torch.tensor([[[[1.5]]]]), torch.tensor([[[[0.5]]]]))
    return [first, second]


@pytest.mark.parametrize(
    ("reduction", "expected"),
    [
        # pixels: |e| = 1, 1, 0 (rel 1/2, 1/4, 0) then 1 (rel 2); the 0-depth pixel is not valid
        ("global", {"abs_err": 3 / 4, "rel_err": (0.75 + 2) / 4}),
        ("per_batch", {"abs_err": (2 / 3 + 1) / 2, "rel_err": (0.75 / 3 + 2) / 2}),
    ],
)
def test_depth_errors(reduction: str, expected: dict[str, float]) -> None:
    metrics = DepthMetrics(reduction)
    for output, target in _depth_batches():
        metrics.update(output, target)
    metrics.update(torch.ones(1, 1, 1, 2), torch.zeros(1, 1, 1, 2))  # a batch without valid pixels is skipped
    assert metrics.compute() == pytest.approx(expected)


def _normal_batches() -> list[tuple[torch.Tensor, torch.Tensor]]:
    r = 1 / math.sqrt(2)
    a = math.radians(20.0)
    # batch 1: angles 0 and 45 degrees; an invalid (all-zero) pixel; a unit normal whose components sum
    # to 0 (masked, the reference codes' quirk)
    pred1 = [[1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 0, 1]]
    gt1 = [[1, 0, 0], [0, 1, 0], [0, 0, 0], [r, -r, 0]]
    # batch 2: angles 20 and 180 degrees
    pred2 = [[0, math.sin(a), math.cos(a)], [0, 0, 1]]
    gt2 = [[0, 0, 1], [0, 0, -1]]

    def image(vectors: list[list[float]]) -> torch.Tensor:  # (1, 3, 1, n)
        return torch.tensor(vectors, dtype=torch.float64).T[None, :, None, :]

    return [(image(pred1), image(gt1)), (image(pred2), image(gt2))]


@pytest.mark.parametrize(
    ("reduction", "expected"),
    [
        # all valid angles: 0, 45, 20, 180
        ("global", (245 / 4, (20 + 45) / 2, 1 / 4, 2 / 4, 2 / 4)),
        # per batch: (0, 45) -> 22.5, 22.5, 1/2, 1/2, 1/2; (20, 180) -> 100, 100, 0, 1/2, 1/2
        ("per_batch", ((22.5 + 100) / 2, (22.5 + 100) / 2, 1 / 4, 1 / 2, 1 / 2)),
    ],
)
def test_normal_angles(reduction: str, expected: tuple[float, ...]) -> None:
    metrics = NormalMetrics(reduction)
    for output, target in _normal_batches():
        metrics.update(output, target)
    values = metrics.compute()
    names = ("mean_angle", "median_angle", "within_11_25", "within_22_5", "within_30")
    assert [values[name] for name in names] == pytest.approx(list(expected), abs=1e-5)


def test_losses_by_hand() -> None:
    # two classes; pixel 1: logits (0, ln 3), label 0 -> log 4; pixel 2: (0, 0), label 1 -> log 2; pixel 3 ignored
    logits = torch.tensor([[[[0.0, 0.0, 9.0]], [[math.log(3.0), 0.0, 0.0]]]])
    assert float(segmentation_loss(logits, torch.tensor([[[0, 1, -1]]]))) == pytest.approx(1.5 * math.log(2.0))
    assert float(segmentation_loss(logits, torch.full((1, 1, 3), -1))) == 0.0  # nothing labelled
    output, target = _depth_batches()[0]
    assert float(depth_loss(output, target)) == pytest.approx(2 / 3)  # over the 3 valid pixels of the batch
    output, target = _normal_batches()[0]
    # valid: (1,0,0).(1,0,0) = 1 and (1,1,0)/sqrt2 . (0,1,0) = 1/sqrt2; the prediction is normalised
    assert float(normal_loss(output, target)) == pytest.approx(1 - (1 + 1 / math.sqrt(2)) / 2)


def test_tasks_use_the_chosen_reduction() -> None:
    tasks = make_tasks(13, (1, 4), 2, "per_batch")
    accumulator = tasks["N"].make_accumulator()
    for output, target in _normal_batches():
        accumulator.update(output, target)
    assert accumulator.compute()["median_angle"] == pytest.approx(61.25, abs=1e-5)
    assert [m.name for m in tasks["N"].metrics] == [
        "mean_angle",
        "median_angle",
        "within_11_25",
        "within_22_5",
        "within_30",
    ]
    assert [m.higher_is_better for m in tasks["S"].metrics + tasks["D"].metrics] == [True, True, False, False]
    with pytest.raises(ValueError, match="metric reduction 'mean'"):
        DepthMetrics("mean")


def _mtan_style(batches: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]) -> dict[str, list[float]]:
    """The reference codes' formulas, written out independently: per batch (MTAN) and pooled (LibMTL)."""
    per_batch, abs_sum, rel_sum, count, pooled = [], 0.0, 0.0, 0, []
    for depth_p, depth_t, normal_p, normal_t in batches:
        mask = depth_t.sum(1, keepdim=True) != 0
        err = (depth_p - depth_t).abs()[mask]
        n = int(mask.sum())
        valid = normal_t.sum(1) != 0
        cos = (normal_p / normal_p.norm(dim=1, keepdim=True) * normal_t).sum(1)[valid].clamp(-1, 1)
        deg = torch.rad2deg(torch.acos(cos)).numpy()
        per_batch.append(
            [
                float(err.sum()) / n,
                float((err / depth_t[mask]).sum()) / n,
                deg.mean(),
                float(np.median(deg)),
                *((deg < x).mean() for x in (11.25, 22.5, 30)),
            ]
        )
        abs_sum, rel_sum, count = abs_sum + float(err.sum()), rel_sum + float((err / depth_t[mask]).sum()), count + n
        pooled.append(deg)
    angles = np.concatenate(pooled)
    summary = [angles.mean(), float(np.median(angles)), *((angles < x).mean() for x in (11.25, 22.5, 30))]
    return {"per_batch": list(np.mean(per_batch, axis=0)), "global": [abs_sum / count, rel_sum / count, *summary]}


@pytest.mark.parametrize("reduction", ["global", "per_batch"])
def test_metrics_agree_with_the_reference_formulas_on_random_batches(reduction: str) -> None:
    g = torch.Generator().manual_seed(0)
    batches = []
    for size in (2, 2, 1):  # a short last batch, as 654 / 2 is not
        depth_t = torch.rand(size, 1, 5, 7, generator=g, dtype=torch.float64) * 4
        depth_t[depth_t < 0.8] = 0.0
        normal_t = torch.nn.functional.normalize(torch.randn(size, 3, 5, 7, generator=g, dtype=torch.float64), dim=1)
        normal_t[:, :, 0, :2] = 0.0
        normal_p = normal_t + 0.5 * torch.randn(size, 3, 5, 7, generator=g, dtype=torch.float64)
        batches.append((depth_t + torch.randn(size, 1, 5, 7, generator=g), depth_t, normal_p, normal_t))
    depth, normal = DepthMetrics(reduction), NormalMetrics(reduction)
    for depth_p, depth_t, normal_p, normal_t in batches:
        depth.update(depth_p, depth_t)
        normal.update(normal_p, normal_t)
    ours = [*depth.compute().values(), *normal.compute().values()]
    assert ours == pytest.approx(_mtan_style(batches)[reduction], rel=1e-5)

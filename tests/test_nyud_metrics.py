"""Hand-computed values of the dense metrics of 002 (mIoU, depth RMSE, normals mErr, saliency maxF)."""

from __future__ import annotations

import math

import pytest
import torch

from mtlbench.problems.dense_metrics_002 import DepthRMSE, NormalsError, SaliencyMaxF, SegmentationIoU


def _labels(values: list[int]) -> torch.Tensor:
    return torch.tensor(values).view(1, 1, -1)


def test_miou_is_dataset_level_over_all_classes() -> None:
    meter = SegmentationIoU(3)
    # labels 0 0 1 1 255, predictions 0 1 1 1 2 (the ignored pixel's prediction does not count)
    meter.update(_labels([0, 1, 1, 1, 2]), _labels([0, 0, 1, 1, 255]))
    # class 0: TP 1 FN 1 -> 1/2; class 1: TP 2 FP 1 -> 2/3; class 2 never occurs -> 0 (InvPT averages it)
    assert meter.compute()["miou"] == pytest.approx(100 * (0.5 + 2 / 3 + 0.0) / 3)
    # a second batch adds to the counts: class 2 TP 1 -> 1, class 0 gains an FP -> 1/3
    meter.update(_labels([2, 0]), _labels([2, 1]))
    # class 1: TP 2, FP 1, FN 1 -> 1/2
    assert meter.compute()["miou"] == pytest.approx(100 * (1 / 3 + 1 / 2 + 1.0) / 3)


def test_miou_takes_logits() -> None:
    logits = torch.zeros(1, 2, 1, 2)
    logits[0, 1, 0, 0] = 1.0  # predicts 1 then 0
    meter = SegmentationIoU(2)
    meter.update(logits, torch.tensor([[[1, 1]]]))
    assert meter.compute()["miou"] == pytest.approx(100 * (0 + 0.5) / 2)


def test_depth_rmse_is_global_over_valid_pixels_with_clamped_predictions() -> None:
    meter = DepthRMSE()
    meter.update(torch.tensor([[[[2.0, 3.0, 9.0]]]]), torch.tensor([[[[1.0, 2.0, 0.0]]]]))  # last invalid
    meter.update(torch.tensor([[[[-1.0]]]]), torch.tensor([[[[3.0]]]]))  # -1 -> 1e-9
    assert meter.compute()["rmse"] == pytest.approx(math.sqrt((1 + 1 + (3 - 1e-9) ** 2) / 3))


def test_normals_mean_angle_in_degrees_over_valid_pixels() -> None:
    output = torch.tensor([[2.0, 1.0, 5.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.0]]).view(1, 3, 1, 3)
    target = torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]).view(1, 3, 1, 3)
    # pixel 1: (2,0,0) vs (0,1,0) -> 90; pixel 2: (1,1,0) vs (1,0,0) -> 45; pixel 3: label 0 -> ignored
    meter = NormalsError()
    meter.update(output, target)
    assert meter.compute()["merr"] == pytest.approx(67.5)


def test_saliency_invpt_variant_dataset_level_beta2_03() -> None:
    meter = SaliencyMaxF("invpt")
    meter.update_probabilities(torch.tensor([[0.93, 0.62]]), torch.tensor([[1, 0]]))
    meter.update_probabilities(torch.tensor([[0.18, 0.08, 0.99]]), torch.tensor([[1, 0, 255]]))

    def f(p: float, r: float) -> float:
        return 1.3 * p * r / (0.3 * p + r)

    expected = [f(0.5, 1)] + [f(2 / 3, 1)] * 2 + [f(0.5, 0.5)] * 9 + [f(1, 0.5)] * 6 + [0.0]  # t = 0.05 ... 0.95
    assert meter.f_scores().tolist() == pytest.approx(expected)
    assert meter.compute()["maxf"] == pytest.approx(100 * f(1, 0.5))  # 81.25


def test_saliency_invpt_sigmoid_quirk() -> None:
    meter = SaliencyMaxF("invpt", sigmoid_quirk=True)
    meter.update_probabilities(torch.tensor([[0.9, 0.0]]), torch.tensor([[1, 0]]))
    # sigmoid(0.9) = 0.711, sigmoid(0) = 0.5: both positive up to t = 0.5, only the first up to 0.7
    f = meter.f_scores()
    assert f[:10].tolist() == pytest.approx([1.3 * 0.5 / (0.15 + 1)] * 10)
    assert f[10:14].tolist() == pytest.approx([1.0] * 4) and f[14:].tolist() == [0.0] * 5


def test_saliency_mtinet_variant_per_image_beta1() -> None:
    meter = SaliencyMaxF("mtinet")
    logits = torch.logit(torch.tensor([[[[0.95, 0.1]]], [[[0.5, 0.5]]]], dtype=torch.float64))
    meter.update(logits, torch.tensor([[[[1, 0]]], [[[1, 0]]]]))
    # t < 0.5: image 1 P = R = 1, image 2 P = 1/2, R = 1 -> P = 3/4, R = 1; t >= 0.5: P = R = 1/2
    f = meter.f_scores()
    assert len(f) == 15
    assert f[:6].tolist() == pytest.approx([2 * 0.75 / 1.75] * 6)
    assert f[6:].tolist() == pytest.approx([0.5] * 9)
    assert meter.compute()["maxf"] == pytest.approx(100 * 2 * 0.75 / 1.75)


def test_table_ii_rows_reproduce_their_delta_m() -> None:
    from mtlbench.metrics import delta_m
    from mtlbench.problems.nyud import published_002

    for dataset in ("nyud", "pascal_context"):
        reference = published_002(dataset)
        directions = {v.task: {v.metric: v.higher_is_better} for v in reference["values"]}
        for row in ("uniform", "grid_search"):
            published = published_002(dataset, row)
            recomputed = delta_m(published["metrics"], reference["metrics"], directions)
            if (dataset, row) == ("pascal_context", "grid_search"):
                # the paper prints -2.64; its own numbers give -2.78 (noted in problems/nyud.py)
                assert recomputed == pytest.approx(-2.78, abs=0.01)
            else:  # 002 Eq. 5 from the table's numbers agrees with its Delta_m column to rounding
                assert recomputed == pytest.approx(published["delta_m"], abs=0.01)
    assert {v.unit for v in published_002("nyud")["values"]} == {"percent", "metres", "degrees"}

"""Edge odsF (our SEISM protocol): thinning, matching within maxDist, dataset-level counts, known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mtlbench.problems.edge_eval import MAX_DIST, EdgeODS, edge_thresholds, match_count, thin


def test_thin_keeps_one_pixel_lines_and_isolated_points() -> None:
    image = np.zeros((9, 12), dtype=bool)
    image[4, 2:8] = True  # a horizontal line
    image[1, 1] = True  # an isolated point
    image[2:8, 10] = True  # a vertical line
    assert np.array_equal(thin(image), image)


def test_thin_reduces_a_thick_bar_to_a_one_pixel_line() -> None:
    image = np.zeros((9, 20), dtype=bool)
    image[3:6, 2:18] = True  # 3 pixels thick
    out = thin(image)
    assert not (out & ~image).any()  # thinning only removes
    assert (out[:, 4:16].sum(0) == 1).all()  # one pixel per column away from the ends
    assert out.sum() < image.sum() / 2


def test_thresholds_are_seisms() -> None:
    t = edge_thresholds()
    assert len(t) == 99 and t[0] == pytest.approx(0.01) and t[-1] == pytest.approx(0.99)
    assert edge_thresholds(4).tolist() == pytest.approx([0.2, 0.4, 0.6, 0.8])


def test_match_count_is_one_to_one_within_max_dist() -> None:
    truth = np.zeros((30, 40), dtype=bool)
    truth[10, 5:25] = True  # 20 pixels; diagonal 50 -> 0.011 * 50 = 0.55 px, 0.05 * 50 = 2.5 px
    shifted = np.roll(truth, 2, axis=0)
    assert match_count(truth, truth, 0.011) == 20
    assert match_count(shifted, truth, 0.05) == 20  # 2 px <= 2.5 px
    assert match_count(shifted, truth, 0.011) == 0  # 2 px > 0.55 px
    double = truth | np.roll(truth, 1, axis=0)  # 40 predicted pixels near 20 truth pixels
    assert match_count(double, truth, 0.05) == 20
    single = np.zeros_like(truth)
    single[11, 10] = True
    assert match_count(single, truth, 0.05) == 1
    assert match_count(np.zeros_like(truth), truth, 0.05) == 0


def _logits(probability: np.ndarray) -> torch.Tensor:
    p = torch.as_tensor(probability, dtype=torch.float64).clamp(1e-6, 1 - 1e-6)
    return torch.log(p / (1 - p)).view(1, 1, *probability.shape)


@pytest.mark.parametrize(
    ("shift", "max_dist", "expected"),
    [(0, MAX_DIST["nyud"], 100.0), (2, 0.05, 100.0), (2, MAX_DIST["pascal_context"], 0.0)],
)
def test_odsf_known_answers(shift: int, max_dist: float, expected: float) -> None:
    truth = np.zeros((30, 40), dtype=np.int64)
    truth[10, 5:25] = 1
    truth[20, 10:35] = 1
    prediction = np.roll(truth, shift, axis=0).astype(np.float64) * 0.9
    meter = EdgeODS(max_dist, thresholds=9)
    meter.update(_logits(prediction), torch.as_tensor(truth).view(1, 1, 30, 40))
    assert meter.compute()["odsf"] == pytest.approx(expected)


def test_odsf_empty_prediction_is_zero_and_nothing_is_nan() -> None:
    truth = np.zeros((20, 20), dtype=np.int64)
    truth[5, 2:15] = 1
    meter = EdgeODS(0.011, thresholds=9)
    meter.update(_logits(np.zeros((20, 20))), torch.as_tensor(truth).view(1, 1, 20, 20))
    assert meter.compute()["odsf"] == 0.0
    assert math.isnan(EdgeODS(0.011).compute()["odsf"])


def test_odsf_picks_the_best_threshold_with_dataset_level_counts() -> None:
    truth = np.zeros((30, 40), dtype=bool)
    truth[10, 5:25] = True  # 20 boundary pixels
    probability = np.zeros((30, 40))
    probability[10, 5:25] = 0.8
    probability[25, 5:25] = 0.35  # 20 false pixels far away
    meter = EdgeODS(0.011, thresholds=9)  # 0.1, ..., 0.9
    meter.update_probabilities(probability, truth)
    f = meter.f_scores()
    # t <= 0.3: P = 20/40, R = 1 -> F = 2/3; 0.3 < t <= 0.8: F = 1; t > 0.8: nothing predicted -> 0
    assert f[:3] == pytest.approx([2 / 3] * 3)
    assert f[3:8] == pytest.approx([1.0] * 5)
    assert f[8] == 0.0
    # a second image where only half the boundary is found at every threshold: counts add up
    other = np.zeros((30, 40))
    other[10, 5:15] = 0.95
    meter.update_probabilities(other, truth)
    recall = (20 + 10) / 40
    assert meter.f_scores()[4] == pytest.approx(2 * 1.0 * recall / (1.0 + recall))
    assert meter.compute()["odsf"] == pytest.approx(100 * 2 * recall / (1 + recall))


def test_quantisation_follows_the_8_bit_png() -> None:
    truth = np.zeros((10, 10), dtype=bool)
    truth[5, 1:9] = True
    probability = truth * 0.4999  # 127.47 -> 127 / 255 = 0.498 < 0.5
    quantised, raw = EdgeODS(0.011, thresholds=1), EdgeODS(0.011, thresholds=1, quantise=False)
    quantised.update_probabilities(probability, truth)
    raw.update_probabilities(probability, truth)
    assert quantised.compute()["odsf"] == 0.0 and raw.compute()["odsf"] == 0.0
    probability = truth * 0.5
    quantised = EdgeODS(0.011, thresholds=1)
    quantised.update_probabilities(probability, truth)  # 127.5 rounds to 128 -> 0.502 >= 0.5
    assert quantised.compute()["odsf"] == pytest.approx(100.0)


def test_matching_is_optimal_not_greedy_and_the_large_component_fallback_agrees() -> None:
    # A (row 10, col 10) is nearest to X (10, 11) but also reaches Y (10, 8); B (10, 13) reaches only X
    prediction = np.zeros((40, 40), dtype=bool)
    truth = np.zeros((40, 40), dtype=bool)
    prediction[10, 10] = prediction[10, 13] = True
    truth[10, 11] = truth[10, 8] = True
    max_dist = 2.1 / math.hypot(40, 40)  # 2.1 px
    assert match_count(prediction, truth, max_dist) == 2
    assert match_count(prediction, truth, max_dist, max_component=1) == 2
    rng = np.random.default_rng(0)
    a, b = rng.random((30, 30)) < 0.2, rng.random((30, 30)) < 0.2
    assert match_count(a, b, 0.05) == match_count(a, b, 0.05, max_component=1)


def test_padding_labelled_255_is_cropped_away_before_matching() -> None:
    truth = np.zeros((20, 20), dtype=np.int64)
    truth[10, 2:18] = 1
    padded = np.full((1, 1, 28, 24), 255, dtype=np.int64)
    padded[0, 0, 4:24, 2:22] = truth
    probability = np.zeros((28, 24))
    probability[4:24, 2:22] = truth * 0.9
    probability[0, :] = 0.9  # predicted edges in the padding do not count
    meter = EdgeODS(0.011, thresholds=3)
    meter.update(_logits(probability), torch.as_tensor(padded))
    assert meter.compute()["odsf"] == pytest.approx(100.0)
    assert meter.sum_r[0] == 16 and meter.sum_p[0] == 16


def test_thin_pixel_list_equals_full_image_subiterations() -> None:
    from scipy import ndimage

    from mtlbench.problems.edge_eval import _NEIGHBOURS, _TABLES

    def full_image_thin(image: np.ndarray) -> np.ndarray:
        out = image.copy()
        while True:
            changed = False
            for table in _TABLES:
                padded = np.pad(out, 1)
                code = np.zeros(out.shape, dtype=np.int64)
                for bit, (dr, dc) in enumerate(_NEIGHBOURS):
                    code |= padded[1 + dr : 1 + dr + out.shape[0], 1 + dc : 1 + dc + out.shape[1]].astype(int) << bit
                delete = out & table[code]
                if delete.any():
                    out[delete] = False
                    changed = True
            if not changed:
                return out

    rng = np.random.default_rng(0)
    for _ in range(4):
        blobs = ndimage.gaussian_filter(rng.random((40, 50)), 2) > 0.5
        thinned = thin(blobs)
        assert np.array_equal(thinned, full_image_thin(blobs)) and thinned.sum() < blobs.sum()


def test_thin_of_a_fortran_ordered_map() -> None:
    block = np.zeros((9, 12), dtype=bool)
    block[2:7, 2:10] = True
    assert np.array_equal(thin(np.asfortranarray(block)), thin(block)) and thin(block).sum() < block.sum()

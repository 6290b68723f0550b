"""Delta_m (000 eq. 1) and mean rank (000 eq. 2)."""

import math

import pytest

from mtlbench.errors import UserInputError
from mtlbench.metrics import delta_m, delta_m_from_changes, mean_ranks, relative_changes


def test_table4_unit_scal_average_from_its_per_metric_row():
    # 000 Table 4, Unit. Scal.: Segmentation (Acc, mIoU), Disparity (abs, rel), Instance (abs) -> avg -5.312
    row = {"S": [-2.120, -16.78], "D": [-8.542, -11.41], "I": [3.492]}
    assert delta_m_from_changes(row) == pytest.approx(-5.312, abs=0.002)


@pytest.mark.parametrize(
    ("row", "average"),
    [
        ({"S": [-0.977, -7.647], "D": [-6.709, -10.06], "I": [3.325]}, -3.124),  # CAGrad
        ({"S": [-0.225, -3.174], "D": [0.990, -1.051], "I": [2.468]}, 0.246),  # EDM
    ],
)
def test_table4_rows_that_check_exactly(row, average):
    assert delta_m_from_changes(row) == pytest.approx(average, abs=5e-4)


def test_delta_m_signs_and_per_task_averaging():
    reference = {"S": {"acc": 0.8, "miou": 0.5}, "D": {"abs": 2.0}}
    directions = {"S": {"acc": True, "miou": True}, "D": {"abs": False}}
    metrics = {"S": {"acc": 0.88, "miou": 0.45}, "D": {"abs": 2.5}}
    changes = relative_changes(metrics, reference, directions)
    assert changes["S"]["acc"] == pytest.approx(10.0)
    assert changes["S"]["miou"] == pytest.approx(-10.0)
    assert changes["D"]["abs"] == pytest.approx(-25.0)  # lower is better: an increase is negative
    # mean within task first: S -> 0, D -> -25; then over tasks -> -12.5 (not the mean of 3 metrics)
    assert delta_m(metrics, reference, directions) == pytest.approx(-12.5)


def test_delta_m_of_the_reference_itself_is_zero():
    reference = {"a": {"m": 3.0}, "b": {"n": 0.2}}
    directions = {"a": {"m": True}, "b": {"n": False}}
    assert delta_m(reference, reference, directions) == 0.0


def test_delta_m_errors_name_the_missing_reference():
    with pytest.raises(UserInputError, match="task 'x'"):
        delta_m({"x": {"m": 1.0}}, {}, {"x": {"m": True}})
    with pytest.raises(UserInputError, match="is 0"):
        delta_m({"x": {"m": 1.0}}, {"x": {"m": 0.0}}, {"x": {"m": True}})


def test_mean_rank_within_task_then_over_tasks():
    directions = {"S": {"acc": True, "miou": True}, "D": {"abs": False}}
    results = {
        "A": {"S": {"acc": 0.9, "miou": 0.5}, "D": {"abs": 3.0}},
        "B": {"S": {"acc": 0.8, "miou": 0.6}, "D": {"abs": 1.0}},
        "C": {"S": {"acc": 0.7, "miou": 0.4}, "D": {"abs": 2.0}},
    }
    ranks = mean_ranks(results, directions)
    # A: S ranks (1, 2) -> 1.5; D rank 3 -> (1.5 + 3) / 2
    assert ranks["A"] == pytest.approx(2.25)
    assert ranks["B"] == pytest.approx((1.5 + 1) / 2)
    assert ranks["C"] == pytest.approx((3 + 2) / 2)
    assert sum(ranks.values()) == pytest.approx(6.0)  # ranks 1..3 per task average to 2


def test_mean_rank_ties_share_the_average_rank():
    directions = {"t": {"m": True}}
    ranks = mean_ranks({"a": {"t": {"m": 1.0}}, "b": {"t": {"m": 1.0}}}, directions)
    assert ranks == {"a": 1.5, "b": 1.5}
    assert not math.isnan(ranks["a"])

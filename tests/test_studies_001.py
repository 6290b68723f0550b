"""001's studies: eq. 6's delta_t by hand, corrupted test images, Pareto counts, gradient similarity, invariance."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mtlbench.studies import p001_common as common
from mtlbench.studies.p001_corruptions import delta_t, test_images


def test_delta_t_by_hand() -> None:
    # accuracy (higher is better): MTL keeps 0.4/0.8 = 0.5, STL 0.6/0.9 = 2/3 -> d = -1/6, delta = +1/6 (STL
    # more robust); error (lower is better): MTL 2/1, STL 1.5/1 -> d = 0.5 = delta
    mtl = {"S.acc": {("fog", 1): 0.4}, "D.abs_err": {("fog", 1): 2.0}}
    stl = {"S.acc": {("fog", 1): 0.6}, "D.abs_err": {("fog", 1): 1.5}}
    out = delta_t(
        mtl,
        stl,
        {"S.acc": 0.8, "D.abs_err": 1.0},
        {"S.acc": 0.9, "D.abs_err": 1.0},
        {"S.acc": True, "D.abs_err": False},
    )
    assert out["S.acc"] == pytest.approx(1 / 6) and out["D.abs_err"] == pytest.approx(0.5)
    # the mean over corruptions and severities; a clean value of 0 leaves delta undefined
    mtl2 = {"S.acc": {("fog", 1): 0.4, ("snow", 5): 0.8}}
    stl2 = {"S.acc": {("fog", 1): 0.9, ("snow", 5): 0.9}}
    two = delta_t(mtl2, stl2, {"S.acc": 0.8}, {"S.acc": 0.9}, {"S.acc": True})
    assert two["S.acc"] == pytest.approx(((1.0 - 0.5) + (1.0 - 1.0)) / 2)
    assert math.isnan(delta_t(mtl2, stl2, {"S.acc": 0.0}, {"S.acc": 0.9}, {"S.acc": True})["S.acc"])


def test_corrupted_test_images_come_back(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("MTLBENCH_DATA", str(tmp_path))
    from mtlbench.problems import create_problem

    s = common.setup("cityscapes", "segnet", "test")
    problem = create_problem(s.problem, s.tasks, **s.options)
    problem.prepare()
    clean = np.asarray(problem._data["test"]["image"]).copy()
    with test_images(problem) as swap:
        swap("gaussian_noise", 5, 0)
        noisy = np.asarray(problem._data["test"]["image"])
        assert noisy.shape == clean.shape and noisy.dtype == np.uint8 and not np.array_equal(noisy, clean)
        swap("gaussian_noise", 5, 0)
        assert np.array_equal(problem._data["test"]["image"], noisy)  # the same images for every model
        batch = next(problem.batches("test", 2))
        assert batch.inputs.shape[0] == 2
    assert np.array_equal(problem._data["test"]["image"], clean)


def test_tables_a3_a6_as_printed() -> None:
    table = common.table_a3_a6()
    assert len(table) == 4 * 13
    row = table[("cityscapes", "segnet", "UW", "adam")]
    assert row.lr == 0.001 and row.metrics == (0.7052, 0.9202, 0.0136, 35.69) and row.delta_m == 5.44
    assert table[("nyuv2", "deeplabv3plus", "STL", "adam")].delta_m is None
    assert common.best_lr("nyuv2", "segnet", "cagrad") == 0.0001
    assert common.best_lr("nyuv2", "deeplabv3plus", "imtl", "sgd") == 0.05


@pytest.mark.parametrize("second", [0.1, 0.01])
def test_free_runs_show_the_invariances(second: float) -> None:
    from mtlbench.studies.p001_uw_optimal import run_free

    def pair(weighting: str, optimizer: str, frozen: bool) -> tuple:
        common = {"frozen_backbone": frozen, "epochs": 1, "n_samples": 64}
        return run_free(weighting, optimizer, **common), run_free(weighting, optimizer, scales=(10.0, second), **common)

    plain, scaled = pair("ew", "adam", True)  # Adam, frozen backbone: the head updates agree
    for group in ("head1", "head2"):
        assert scaled.update_norm[group] == pytest.approx(plain.update_norm[group], rel=1e-6)
        assert scaled.grad_norm[group] != pytest.approx(plain.grad_norm[group], rel=1e-2)  # gradients do not
    assert scaled.weighted[0][0] == pytest.approx(10 * scaled.losses[0][0])  # the loss the optimizer sees
    plain, scaled = pair("ew", "sgd", True)  # SGD: the first head's update grows about 10x
    assert scaled.update_norm["head1"][0] > 3 * plain.update_norm["head1"][0]
    plain, scaled = pair("uw_optimal", "sgd", False)  # UW-O: everything agrees, backbone included
    for group in ("backbone", "head1", "head2"):
        assert scaled.update_norm[group] == pytest.approx(plain.update_norm[group], rel=1e-6)
    assert scaled.weighted[0] == pytest.approx([1.0, 1.0])  # each L_t / L_t


def test_pareto_counts_of_the_optimizer_study(monkeypatch) -> None:
    import pandas as pd

    from mtlbench.studies.p001_optimizers import Optimizers001

    rows = [  # S.miou, S.acc, D.abs_err, D.rel_err
        ("adam", "unit_scal", 0.50, 0.80, 0.10, 0.20),  # A: on the front
        ("adam", "uw", 0.40, 0.70, 0.20, 0.30),  # B: dominated by A and by C
        ("sgd", "unit_scal", 0.45, 0.85, 0.15, 0.25),  # C: on the front (best accuracy)
        ("sgd", "uw", 0.30, 0.60, 0.30, 0.40),  # D: dominated by A
        ("sgd", "imtl", 0.05, 0.99, 0.01, 0.01),  # E: dominates nothing it loses on mIoU; dropped on real data
    ]
    columns = ["optimizer", "method", "S.miou", "S.acc", "D.abs_err", "D.rel_err"]
    study = Optimizers001()
    monkeypatch.setattr(Optimizers001, "_real", staticmethod(lambda dataset: True))
    counts = study._pareto(pd.DataFrame(rows, columns=columns), "cityscapes")
    assert counts["adam"] == {"valid": 2, "po_full": 1, "po_other": 1, "per_method": counts["adam"]["per_method"]}
    assert counts["adam"]["per_method"]["unit_scal"] == 1 and counts["adam"]["per_method"]["uw"] == 0
    assert (counts["sgd"]["valid"], counts["sgd"]["po_full"], counts["sgd"]["po_other"]) == (2, 1, 1)
    monkeypatch.setattr(Optimizers001, "_real", staticmethod(lambda dataset: False))  # stand-ins keep E
    counts = study._pareto(pd.DataFrame(rows, columns=columns), "cityscapes")
    assert (counts["sgd"]["valid"], counts["sgd"]["po_full"]) == (3, 2)  # E is on the front too (best errors)
    assert counts["adam"]["po_other"] == 1  # A survives E (mIoU)


def test_optimizer_study_shows_001_delta_m_in_our_sign() -> None:
    from mtlbench.studies.p001_optimizers import Optimizers001

    cells = {c.key: c for c in Optimizers001().cells()}
    cell = cells["nyuv2-segnet/adam/cagrad/delta_m"]  # Table A5: CAGrad + Adam -0.65 (lower is better)
    assert cell.published.value == -0.65 and cell.published.direction == "lower"
    assert cell.published.converted == 0.65 and cell.direction == "higher"
    assert cells["cityscapes-segnet/sgd/po_full"].published.value == 0
    assert cells["nyuv2-deeplabv3plus/adam/po_other"].published.value == 31


def test_float_images_go_through_uint8_and_only_the_evaluated_rows_change() -> None:
    class FakeNyu:  # nyuv2's layout: float images in [0, 1], test rows read through indices
        name = "nyuv2"

        def __init__(self) -> None:
            rng = np.random.default_rng(0)
            self._arrays = {"test": {"image": rng.random((3, 16, 24, 3)).astype(np.float32)}}
            self._indices = {"test": np.array([0, 2])}

    problem = FakeNyu()
    clean = problem._arrays["test"]["image"].copy()
    with test_images(problem) as swap:
        swap("contrast", 5, 0)
        out = problem._arrays["test"]["image"]
        assert out.dtype == np.float32 and np.allclose(out * 255.0, np.round(out * 255.0), atol=1e-3)
        assert np.array_equal(out[1], np.round(clean[1] * 255.0).astype(np.float32) / 255.0)  # not evaluated
        assert out[0].std() < 0.2 * clean[0].std()  # contrast x0.05 (uint8 truncation aside)
    assert np.array_equal(problem._arrays["test"]["image"], clean)

"""NYUv2: MTAN's RandomScaleCrop, the stand-in's analytic normals, published numbers, end-to-end training."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from mtlbench.data import nyuv2 as nyu_data
from mtlbench.data import scenes
from mtlbench.errors import UserInputError
from mtlbench.problems import create_problem
from mtlbench.problems.nyuv2 import (
    PUBLISHED_STL,
    SCALES,
    draw_augmentation,
    flip,
    published_stl,
    scale_crop,
)
from mtlbench.training.config import RunConfig
from mtlbench.training.trainer import Trainer

H, W = 12, 20


@pytest.fixture(autouse=True)
def data_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MTLBENCH_DATA", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _sample(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    image = torch.rand(3, H, W, generator=g)
    label = torch.randint(-1, 13, (H, W), generator=g)
    depth = torch.rand(1, H, W, generator=g) + 0.5
    normal = torch.nn.functional.normalize(torch.randn(3, H, W, generator=g), dim=0)
    return image, label, depth, normal


# ------------------------------------------------------------------------------------- augmentation


def test_scale_one_is_the_identity_and_flip_negates_normal_x() -> None:
    image, label, depth, normal = _sample()
    out = scale_crop(image, label, depth, normal, 1.0, 0, 0)
    for before, after in zip((image, label, depth, normal), out, strict=True):
        assert torch.equal(before, after)
    f_image, f_label, f_depth, f_normal = flip(image, label, depth, normal)
    assert torch.equal(f_image[:, :, 0], image[:, :, -1]) and torch.equal(f_label[:, 3], label[:, W - 4])
    assert torch.equal(f_depth[..., 5], depth[..., W - 6])
    assert torch.equal(f_normal[0], -normal[0].flip(-1)) and torch.equal(f_normal[1:], normal[1:].flip(-1))


@pytest.mark.parametrize(("scale", "top", "left"), [(1.2, 2, 3), (1.5, 4, 0), (1.5, 0, 7)])
def test_scale_crop_by_hand(scale: float, top: int, left: int) -> None:
    h, w = int(H / scale), int(W / scale)
    rows = torch.arange(H, dtype=torch.float64).view(H, 1)
    cols = torch.arange(W, dtype=torch.float64).view(1, W)
    # a linear ramp: bilinear resampling with align_corners maps output (y, x) to
    # (top + y (h-1)/(H-1), left + x (w-1)/(W-1)) and reproduces the ramp there exactly
    ramp = torch.stack([rows + 0 * cols, 2.0 * cols + 0 * rows, rows - cols]).float()
    _, label, depth, _ = _sample(1)
    image, label_out, depth_out, normal = scale_crop(ramp, label, depth, ramp.clone(), scale, top, left)
    y = top + rows * (h - 1) / (H - 1)
    x = left + cols * (w - 1) / (W - 1)
    expected = torch.stack([y + 0 * x, 2.0 * x + 0 * y, y - x]).float()
    torch.testing.assert_close(image, expected, atol=2e-5, rtol=0)
    torch.testing.assert_close(normal, expected, atol=2e-5, rtol=0)
    # nearest (torch's rule, as MTAN): source index floor(i * float32(in/out)), capped at in - 1
    src_rows = np.minimum(np.floor(np.arange(H, dtype=np.float32) * np.float32(np.float32(h) / np.float32(H))), h - 1)
    src_cols = np.minimum(np.floor(np.arange(W, dtype=np.float32) * np.float32(np.float32(w) / np.float32(W))), w - 1)
    src_rows, src_cols = top + src_rows.astype(int), left + src_cols.astype(int)
    np.testing.assert_array_equal(label_out.numpy(), label.numpy()[src_rows[:, None], src_cols[None, :]])
    np.testing.assert_array_equal(
        depth_out[0].numpy(), depth[0].numpy()[src_rows[:, None], src_cols[None, :]] / np.float32(scale)
    )
    assert (
        label_out.dtype == torch.int64
        and (label_out == -1).any() == (label[top : top + h, left : left + w] == -1).any()
    )


def test_draws_cover_mtans_distribution() -> None:
    generator = torch.Generator().manual_seed(0)
    draws = [draw_augmentation(288, 384, generator) for _ in range(600)]
    assert {d[0] for d in draws} == set(SCALES)
    for scale, top, left, _ in draws:
        assert 0 <= top <= 288 - int(288 / scale) and 0 <= left <= 384 - int(384 / scale)
    assert max(d[1] for d in draws if d[0] == 1.5) == 96 and min(d[1] for d in draws if d[0] == 1.5) == 0
    assert all(d[1] == d[2] == 0 for d in draws if d[0] == 1.0)
    assert 0.4 < np.mean([d[3] for d in draws]) < 0.6
    assert [int(288 / s) for s in SCALES] == [288, 240, 192] and [int(384 / s) for s in SCALES] == [384, 320, 256]


def test_training_batches_are_augmented_only_when_asked() -> None:
    problem = create_problem("synthetic_scenes", preset="NYUv2", resolution="32x24", n_images=8, width=2)
    plain = create_problem("synthetic_scenes", preset="NYUv2", resolution="32x24", n_images=8, width=2, augment=False)
    batches = [
        next(p.batches("train", 4, shuffle=True, generator=torch.Generator().manual_seed(3))) for p in (problem, plain)
    ]
    assert not torch.equal(batches[0].inputs, batches[1].inputs)
    for name in ("S", "D", "N"):
        assert batches[0].targets[name].shape == batches[1].targets[name].shape
    test = [next(p.batches("test", 4)) for p in (problem, plain)]
    assert torch.equal(test[0].inputs, test[1].inputs)
    assert float(test[0].inputs.min()) >= 0.0 and float(test[0].inputs.max()) <= 1.0  # [0, 1], no normalisation


# -------------------------------------------------------------------------------- stand-in normals


def _scene() -> scenes.Scene:
    scene = scenes.Scene(horizon=0.45, camera_height=1.3, road_center=0.0, road_half_width=4.0, sidewalk_width=2.0)
    scene.add(scenes.BOX, (-1.0, 1.5, 0.0, 1.3, 9.0), scenes.CAR, 1, (1, 0, 0))
    scene.add(scenes.SIDE, (6.0, 2.0, 400.0, -20.0, 1.3), scenes.BUILDING, 0, (0.5, 0.5, 0.5))
    scene.add(scenes.SIDE, (-5.0, 3.0, 400.0, -20.0, 1.3), scenes.WALL, 0, (0.5, 0.5, 0.5))
    return scene


def test_standin_normals_are_unit_face_the_camera_and_fit_the_depth_of_planes() -> None:
    width, height = 96, 72
    scene = _scene()
    out = scenes.render([scene], width, height)
    normal = out["normal"][0].astype(np.float64)
    label = out["label19"][0]
    length = np.linalg.norm(normal, axis=-1)
    sky = label == scenes.SKY
    np.testing.assert_array_equal(length[sky], 0.0)
    np.testing.assert_allclose(length[~sky], 1.0)
    assert {tuple(v) for v in normal[~sky].reshape(-1, 3)} == {(0, -1, 0), (0, 0, -1), (-1, 0, 0), (1, 0, 0)}
    # back-project every pixel centre with its depth
    f = scenes.FOCAL_PER_WIDTH * width
    z = scenes.depth_from_disparity(out["disparity"][0], width).astype(np.float64)
    ys, xs = np.mgrid[0:height, 0:width] + 0.5
    points = np.stack([(xs - width / 2) * z / f, (ys - scene.horizon * height) * z / f, z], -1)
    assert (np.einsum("hwc,hwc->hw", normal, points)[~sky] < 0).all()  # facing the camera
    ground = np.isin(label, [scenes.ROAD, scenes.SIDEWALK, scenes.TERRAIN])
    checked = 0
    for axis in (0, 1):  # neighbours on the same plane: their difference is orthogonal to the normal
        a = [slice(None), slice(None)]
        b = [slice(None), slice(None)]
        a[axis], b[axis] = slice(0, -1), slice(1, None)
        same = (label[tuple(a)] == label[tuple(b)]) & ~sky[tuple(a)] & ~sky[tuple(b)]
        same &= (normal[tuple(a)] == normal[tuple(b)]).all(-1) | (ground[tuple(a)] & ground[tuple(b)])
        delta = points[tuple(b)] - points[tuple(a)]
        dot = np.einsum("hwc,hwc->hw", normal[tuple(a)], delta)[same]
        scale = np.linalg.norm(delta, axis=-1)[same]
        assert (np.abs(dot) <= 1e-5 * scale + 1e-9).all()
        checked += int(same.sum())
    assert checked > width * height  # most neighbour pairs were checked
    # the ground plane Y = h_c: back-projected ground points lie on it
    np.testing.assert_allclose(points[..., 1][ground], scene.camera_height, rtol=1e-5)


def test_standin_preset_and_caches() -> None:
    problem = create_problem("synthetic_scenes", preset="NYUv2", n_images=6, width=2)
    assert problem.task_names == ["S", "D", "N"] and problem.option_values["resolution"] == "128x96"
    assert 128 / 96 == 384 / 288
    assert create_problem("synthetic_scenes", classes=13, resolution="32x24").task_names == ["S", "D", "N"]
    assert create_problem("synthetic_scenes").task_names == ["S", "D", "I"]
    with pytest.raises(UserInputError, match="task N needs classes=13"):
        create_problem("synthetic_scenes", "S_N")
    with pytest.raises(UserInputError, match="task I needs classes 7 or 19"):
        create_problem("synthetic_scenes", "S_I", classes=13)
    with pytest.raises(UserInputError, match="preset"):
        create_problem("cityscapes", preset="NYUv2")
    small = create_problem("synthetic_scenes", preset="NYUv2", resolution="32x24", n_images=6, width=2)
    batch = next(small.batches("val", 4))
    label19 = scenes.generate(32, 24, [4], seed=0, instances=8)["label19"][0]
    np.testing.assert_array_equal(batch.targets["S"][0].numpy(), scenes.to_13_classes(label19))
    assert set(np.unique(scenes.TRAIN_TO_13)) == set(range(13))
    assert small.data_checksums() and all("-normals" in key for key in small.data_checksums())


# ------------------------------------------------------------------------------------ published STL


def test_published_single_task_numbers() -> None:
    assert published_stl("cagrad")["S"] == {"miou": 0.3830, "acc": 0.6376}
    assert published_stl("001_segnet_adam")["N"]["median_angle"] == 18.49
    assert published_stl("001_deeplab_adam")["D"] == {"abs_err": 0.3650, "rel_err": 0.1524}
    tasks = create_problem("nyuv2").tasks
    directions = {(t.name, m.name): m.higher_is_better for t in tasks for m in t.metrics}
    for _, (citation, values) in PUBLISHED_STL.items():
        assert citation and len(values) == 9
        assert {(v.task, v.metric): v.higher_is_better for v in values} == directions
        assert all(v.unit == "degrees" for v in values if v.metric.endswith("_angle"))
    with pytest.raises(UserInputError, match="choose one of: cagrad"):
        published_stl("mtan")


# ---------------------------------------------------------------------------------- training


def _fake_nyu(root: Path, counts: dict[str, int], size: tuple[int, int] = (H, W)) -> None:
    rng = np.random.default_rng(0)
    for split, n in counts.items():
        for i in range(n):
            normal = rng.normal(size=(*size, 3))
            arrays = {
                "image": rng.integers(0, 256, (*size, 3)) / 255.0,
                "label": rng.integers(-1, 13, size).astype(np.float64),
                "depth": rng.uniform(0.0, 5.0, (*size, 1)),
                "normal": normal / np.linalg.norm(normal, axis=-1, keepdims=True),
            }
            for name, array in arrays.items():
                (root / split / name).mkdir(parents=True, exist_ok=True)
                np.save(root / split / name / f"{i}.npy", array)


METHODS = ["uw", "cagrad", "imtl", "rotograd"]  # loss weighting, gradient, representation, model-changing


@pytest.mark.parametrize("problem", ["nyuv2", "synthetic_scenes"])
@pytest.mark.parametrize("method", METHODS)
def test_methods_train_end_to_end(tmp_path: Path, problem: str, method: str) -> None:
    if problem == "nyuv2":
        _fake_nyu(tmp_path / "raw", {"train": 4, "val": 2})
        nyu_data.prepare(tmp_path / "raw")
        options = {"val_split": "none", "encoder": "resnet18", "width": 2, "metric_reduction": "per_batch"}
    else:
        options = {"preset": "NYUv2", "resolution": "32x24", "n_images": 6, "width": 2}
    config = RunConfig(
        problem=problem,
        tasks="S_D_N",
        method=method,
        problem_options=options,
        epochs=1,
        batch_size=2,
        eval_batch_size=2,
        threads=1,
        device="cpu",
    )
    result = Trainer(config, require_reference=False).run()
    assert result.status == "completed", result.error
    assert set(result.test_metrics["N"]) == {"mean_angle", "median_angle", "within_11_25", "within_22_5", "within_30"}
    values = [v for task in result.test_metrics.values() for v in task.values()]
    assert all(math.isfinite(v) for v in values)
    assert 0.0 <= result.test_metrics["N"]["mean_angle"] <= 180.0


def test_runs_selected_on_a_validation_split_that_is_the_test_split_are_flagged(tmp_path: Path) -> None:
    _fake_nyu(tmp_path / "raw", {"train": 4, "val": 2})
    nyu_data.prepare(tmp_path / "raw")
    options = {"val_split": "none", "encoder": "resnet18", "width": 2}
    base = {"problem": "nyuv2", "problem_options": options, "epochs": 1, "batch_size": 2, "threads": 1, "device": "cpu"}
    run = Trainer(RunConfig(tasks="S_D_N", method="unit_scal", **base), require_reference=False).run()
    reference = Trainer(RunConfig(tasks="D", kind="reference", **base), require_reference=False).run()
    assert run.status == reference.status == "completed"
    assert run.test_selected and reference.test_selected  # val = test: the default delta_m rule saw test
    synthetic = RunConfig(
        problem="synthetic_scenes",
        tasks="S_D_N",
        problem_options={"preset": "NYUv2", "resolution": "32x24", "n_images": 6, "width": 2},
        epochs=1,
        batch_size=2,
        threads=1,
        device="cpu",
    )
    assert not Trainer(synthetic, require_reference=False).run().test_selected


@pytest.mark.parametrize(
    ("model", "method", "params"),
    [("segnet_mtan", "imtl", {"space": "parameters"}), ("segnet", "uw", {"form": "libmtl"})],
)
def test_the_specs_networks_train_on_nyuv2(tmp_path: Path, model: str, method: str, params: dict) -> None:
    _fake_nyu(tmp_path / "raw", {"train": 4, "val": 2}, size=(32, 64))  # SegNet: multiples of 32
    nyu_data.prepare(tmp_path / "raw")
    config = RunConfig(
        problem="nyuv2",
        tasks="S_D_N",
        method=method,
        method_params=params,
        problem_options={"val_split": "none", "model": model, "width": 2},
        epochs=1,
        batch_size=2,
        threads=1,
        device="cpu",
        selection="last_test_epochs:1",
    )
    result = Trainer(config, require_reference=False).run()
    assert result.status == "completed", result.error
    assert result.test_selected and all(math.isfinite(v) for t in result.test_metrics.values() for v in t.values())
    _fake_nyu(tmp_path / "small", {"train": 2, "val": 1})  # 12 x 20
    nyu_data.prepare(tmp_path / "small", force=True)
    problem = create_problem("nyuv2", val_split="none", model=model, width=2)
    problem.prepare()
    with pytest.raises(UserInputError, match="multiples of 32"):
        problem.build_model()

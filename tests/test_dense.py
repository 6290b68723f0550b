"""Dense problems: generated scenes, targets, augmentation, losses/metrics, models and problem options."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from mtlbench.data import scenes
from mtlbench.errors import UserInputError
from mtlbench.models.deeplab import DeepLabHead
from mtlbench.models.resnet import DilatedResNet, load_encoder_weights
from mtlbench.problems import create_problem
from mtlbench.problems.dense import (
    ConfusionMatrix,
    augment,
    confusion_metrics,
    disparity_loss,
    instance_loss,
    instance_offsets,
    segmentation_loss,
)

THING_IDS = list(range(11, 19))


@pytest.fixture(autouse=True)
def data_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MTLBENCH_DATA", str(tmp_path / "cache"))
    return tmp_path / "cache"


# ------------------------------------------------------------------------------------ generated scenes


def _empty_scene(**kw) -> scenes.Scene:
    base = {"horizon": 0.5, "camera_height": 1.2, "road_center": 0.0, "road_half_width": 4.0, "sidewalk_width": 2.0}
    return scenes.Scene(**(base | kw))


def test_scenes_are_deterministic_per_image() -> None:
    a = scenes.generate(32, 16, [0, 1, 2], seed=3, instances=4)
    b = scenes.generate(32, 16, [1], seed=3, instances=4, chunk_pixels=1)
    c = scenes.generate(32, 16, [0, 1, 2], seed=4, instances=4)
    for name in ("image", "label19", "label7", "disparity", "instance"):
        np.testing.assert_array_equal(a[name][1:2], b[name])
    assert not np.array_equal(a["label19"], c["label19"])


def test_ground_and_sky_are_exact() -> None:
    width, height = 40, 20
    out = scenes.render([_empty_scene()], width, height)
    cx, yh, hc, b = width / 2, 10.0, 1.2, scenes.BASELINE
    for row in range(height):
        y = row + 0.5
        if y < yh:
            assert (out["label19"][0, row] == scenes.SKY).all() and (out["disparity"][0, row] == 0).all()
            continue
        # Z = f h_c / (y - y_h), d = f b / Z = b (y - y_h) / h_c
        np.testing.assert_allclose(out["disparity"][0, row], b * (y - yh) / hc, rtol=1e-6)
        lateral = np.abs((np.arange(width) + 0.5 - cx) * hc / (y - yh))
        expected = np.where(lateral < 4.0, scenes.ROAD, np.where(lateral < 6.0, scenes.SIDEWALK, scenes.TERRAIN))
        np.testing.assert_array_equal(out["label19"][0, row], expected)
    assert (out["instance"] == 0).all()


def test_occlusion_follows_depth_not_drawing_order() -> None:
    width, height = 64, 32
    f, hc = scenes.FOCAL_PER_WIDTH * width, 1.2
    results = []
    for near_first in (True, False):
        scene = _empty_scene(camera_height=hc)
        near = (scenes.BOX, (-1.0, 1.0, hc - 1.5, hc, 10.0), scenes.CAR, 1, (1, 0, 0))
        far = (scenes.BOX, (-0.5, 3.0, hc - 3.0, hc, 20.0), scenes.BUS, 2, (0, 0, 1))
        for kind, geometry, label, instance, color in (near, far) if near_first else (far, near):
            scene.add(kind, geometry, label, instance, color)
        results.append(scenes.render([scene], width, height))
    for out in results:
        np.testing.assert_array_equal(out["label19"], results[0]["label19"])
        # a pixel covered by both boxes: world X = 0.5, Y = hc - 1 on the near box
        col, row = int(64 / 2 + f * 0.5 / 10.0), int(32 / 2 + f * (hc - 1.0) / 10.0)
        assert out["label19"][0, row, col] == scenes.CAR and out["instance"][0, row, col] == 1
        np.testing.assert_allclose(out["disparity"][0, row, col], f * scenes.BASELINE / 10.0, rtol=1e-6)
        # only the far box: X = 2.5 > 1, on the plane Z = 20
        col, row = int(64 / 2 + f * 2.5 / 20.0), int(32 / 2 + f * (hc - 2.5) / 20.0)
        assert out["label19"][0, row, col] == scenes.BUS and out["instance"][0, row, col] == 2
        np.testing.assert_allclose(out["disparity"][0, row, col], f * scenes.BASELINE / 20.0, rtol=1e-6)


def test_side_plane_disparity_is_linear_in_x() -> None:
    width, height, hc = 64, 32, 1.2
    scene = _empty_scene(camera_height=hc)
    scene.add(scenes.SIDE, (5.0, 1.0, 500.0, -30.0, hc), scenes.BUILDING, 0, (0.5, 0.5, 0.5))
    out = scenes.render([scene], width, height)
    row = 14  # just above the horizon: only the facade or sky
    cols = np.arange(width)
    x = cols + 0.5 - width / 2
    facade = out["label19"][0, row] == scenes.BUILDING
    assert facade[x > 1].all() and not facade[x < 0].any()
    np.testing.assert_allclose(out["disparity"][0, row, facade], scenes.BASELINE * x[facade] / 5.0, rtol=1e-6)


def test_generated_labels_cover_19_classes_and_instances_are_things() -> None:
    out = scenes.generate(96, 48, range(24), seed=0, instances=10)
    assert set(np.unique(out["label19"])) == set(range(19))
    category = np.array([0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 4, 5, 5, 6, 6, 6, 6, 6, 6])
    np.testing.assert_array_equal(out["label7"], category[out["label19"]])
    np.testing.assert_array_equal(out["instance"] > 0, np.isin(out["label19"], THING_IDS))
    assert ((out["disparity"] > 0) == (out["label19"] != scenes.SKY)).all()


# ---------------------------------------------------------------------------------- targets, augment


def test_instance_offsets_are_pixel_minus_centroid() -> None:
    rng = np.random.default_rng(0)
    instance = rng.integers(0, 4, (2, 6, 9)) * np.array([1, 1000]).reshape(2, 1, 1)
    out = instance_offsets(torch.from_numpy(instance)).numpy()
    for b in range(2):
        np.testing.assert_array_equal(out[b, 2], (instance[b] != 0).astype(np.float32))
        assert (out[b, :2][:, instance[b] == 0] == 0).all()
        for value in np.unique(instance[b][instance[b] != 0]):
            rows, cols = np.nonzero(instance[b] == value)
            np.testing.assert_array_equal(out[b, 0][instance[b] == value], (rows - rows.mean()).astype(np.float32))
            np.testing.assert_array_equal(out[b, 1][instance[b] == value], (cols - cols.mean()).astype(np.float32))
            assert abs(out[b, 0][instance[b] == value].sum()) < 1e-4  # offsets to a centroid sum to zero


def _random_maps(size: int = 12, batch: int = 2):
    generator = torch.Generator().manual_seed(0)
    image = torch.randn(batch, 3, size, size + 4, generator=generator)
    label = torch.randint(-1, 19, (batch, size, size + 4), generator=generator)
    disparity = torch.rand(batch, 1, size, size + 4, generator=generator)
    instance = torch.randint(0, 3, (batch, size, size + 4), generator=generator) * 1000
    return image, label, disparity, instance


def test_augment_identity_and_flip() -> None:
    image, label, disparity, instance = _random_maps()
    b = image.shape[0]
    same = augment(image, label, disparity, instance, torch.zeros(b), torch.zeros(b, dtype=torch.bool))
    for got, want in zip(same, (image, label, disparity, instance), strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-6)
    flips = torch.tensor([True, False])
    img, lab, disp, inst = augment(image, label, disparity, instance, torch.zeros(b), flips)
    torch.testing.assert_close(img[0], image[0].flip(-1), rtol=0, atol=1e-6)
    assert torch.equal(lab[0], label[0].flip(-1)) and torch.equal(lab[1], label[1])
    assert torch.equal(disp[0], disparity[0].flip(-1)) and torch.equal(inst[0], instance[0].flip(-1))
    before, after = instance_offsets(instance), instance_offsets(inst)
    assert torch.equal(after[0, 0], before[0, 0].flip(-1))  # y unchanged
    assert torch.equal(after[0, 1], -before[0, 1].flip(-1))  # x negated
    assert torch.equal(after[1], before[1])


def test_augment_quarter_turn_rotates_every_target_consistently() -> None:
    image, label, disparity, instance = _random_maps()
    image, label, disparity, instance = image[..., :12], label[..., :12], disparity[..., :12], instance[..., :12]
    b = image.shape[0]
    img, lab, disp, inst = augment(
        image, label, disparity, instance, torch.full((b,), 90.0), torch.zeros(b, dtype=torch.bool)
    )
    torch.testing.assert_close(img, torch.rot90(image, 1, (2, 3)), rtol=0, atol=1e-5)
    assert torch.equal(lab, torch.rot90(label, 1, (1, 2)))
    assert torch.equal(disp, torch.rot90(disparity, 1, (2, 3)))
    assert torch.equal(inst, torch.rot90(instance, 1, (1, 2)))
    before, after = instance_offsets(instance), instance_offsets(inst)
    # a quarter turn maps the offset (dy, dx) to (-dx, dy)
    torch.testing.assert_close(after[:, 0], torch.rot90(-before[:, 1], 1, (1, 2)), rtol=0, atol=1e-5)
    torch.testing.assert_close(after[:, 1], torch.rot90(before[:, 0], 1, (1, 2)), rtol=0, atol=1e-5)


def test_small_rotation_marks_pixels_from_outside() -> None:
    image, label, disparity, instance = _random_maps(size=32)
    label = label.clamp_min(0)
    disparity = disparity + 1.0
    b = image.shape[0]
    _, lab, disp, inst = augment(
        image, label, disparity, instance, torch.full((b,), 10.0), torch.zeros(b, dtype=torch.bool)
    )
    for corner in ((0, 0), (0, -1), (-1, 0), (-1, -1)):
        assert (lab[:, corner[0], corner[1]] == -1).all() and (disp[:, 0, corner[0], corner[1]] == 0).all()
        assert (inst[:, corner[0], corner[1]] == 0).all()
    assert (lab[:, 15:17, 17:19] >= 0).all()  # the centre stays inside


def test_augmented_batches_keep_targets_consistent() -> None:
    problem = create_problem("synthetic_scenes", "S_D_I", resolution="48x24", width=4, n_images=20)
    generator = torch.Generator().manual_seed(0)
    batch = next(problem.batches("train", 8, shuffle=True, generator=generator))
    label, disparity, target = batch.targets["S"], batch.targets["D"], batch.targets["I"]
    assert torch.equal(target[:, 2] > 0, torch.isin(label, torch.tensor(THING_IDS)))
    assert torch.equal(disparity[:, 0] > 0, (label >= 0) & (label != scenes.SKY))
    assert (label == -1).any()  # some rotation brought outside pixels in
    plain = next(problem.batches("val", 100))
    assert plain.size == problem.num_examples("val") and (plain.targets["S"] >= 0).all()


# ---------------------------------------------------------------------------------- losses, metrics


def test_confusion_metrics_by_hand() -> None:
    matrix = torch.tensor([[3, 1, 0], [2, 4, 0], [0, 0, 0]])
    metrics = confusion_metrics(matrix)
    assert metrics["acc"] == pytest.approx(7 / 10)
    assert metrics["miou"] == pytest.approx((3 / 6 + 4 / 7) / 2)  # class 2 never occurs: left out
    accumulator = ConfusionMatrix(3)
    labels = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1, 1, 1, -1, -1])
    predictions = torch.tensor([0, 0, 0, 1, 0, 0, 1, 1, 1, 1, 2, 2])
    logits = torch.nn.functional.one_hot(predictions, 3).float().T.reshape(1, 3, 3, 4)
    accumulator.update(logits[:, :, :2], labels.reshape(1, 3, 4)[:, :2])  # two batches, one matrix
    accumulator.update(logits[:, :, 2:], labels.reshape(1, 3, 4)[:, 2:])
    assert torch.equal(accumulator.matrix, matrix)


def test_losses_follow_the_reference_reductions() -> None:
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 4, 3, 5, generator=generator)
    label = torch.randint(-1, 4, (2, 3, 5), generator=generator)
    expected = 0.0
    for b in range(2):
        log_p = torch.log_softmax(logits[b], 0)
        valid = label[b] >= 0
        expected += -log_p.gather(0, label[b].clamp_min(0)[None])[0][valid].sum() / 15 / 2
    torch.testing.assert_close(segmentation_loss(logits, label), expected)
    output = torch.randn(2, 1, 3, 5, generator=generator)
    target = torch.rand(2, 1, 3, 5, generator=generator) * (torch.rand(2, 1, 3, 5, generator=generator) > 0.3)
    per_image = [(output[b] - target[b]).abs()[target[b] != 0].mean() for b in range(2)]
    torch.testing.assert_close(disparity_loss(output, target), (per_image[0] + per_image[1]) / 2)
    offsets = torch.randn(2, 2, 3, 5, generator=generator)
    mask = (torch.rand(2, 1, 3, 5, generator=generator) > 0.5).float()
    target = torch.cat([torch.randn(2, 2, 3, 5, generator=generator) * mask, mask], 1)
    m = mask.expand(-1, 2, -1, -1).bool()
    torch.testing.assert_close(instance_loss(offsets, target), (offsets - target[:, :2]).abs()[m].mean())


def test_disparity_metrics() -> None:
    problem = create_problem("synthetic_scenes", "D_I", resolution="16x8", width=4, n_images=3)
    accumulator = problem.tasks[0].make_accumulator()
    target = torch.tensor([[[[2.0, 0.0], [4.0, 1.0]]]])
    output = torch.tensor([[[[1.0, 9.0], [5.0, 1.5]]]])
    accumulator.update(output, target)
    metrics = accumulator.compute()
    assert metrics["abs_err"] == pytest.approx((1 + 1 + 0.5) / 3)
    assert metrics["rel_err"] == pytest.approx((1 / 2 + 1 / 4 + 0.5 / 1) / 3)
    instance = problem.tasks[1].make_accumulator()
    instance.update(torch.ones(1, 2, 1, 2), torch.tensor([[[[3.0, 0.0]], [[-1.0, 0.0]], [[1.0, 0.0]]]]))
    assert instance.compute()["l1"] == pytest.approx((2 + 2) / 2)


# ------------------------------------------------------------------------------------------ models


def torchvision_keys(blocks: tuple[int, ...], bottleneck: bool) -> list[str]:
    """State-dict keys of torchvision's resnet18/50 without fc, from its architecture description."""
    bn = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
    keys = ["conv1.weight", *(f"bn1.{p}" for p in bn)]
    for layer, count in enumerate(blocks, start=1):
        for block in range(count):
            prefix = f"layer{layer}.{block}"
            for i in (1, 2, 3) if bottleneck else (1, 2):
                keys += [f"{prefix}.conv{i}.weight", *(f"{prefix}.bn{i}.{p}" for p in bn)]
            if block == 0 and (layer > 1 or bottleneck):
                keys += [f"{prefix}.downsample.0.weight", *(f"{prefix}.downsample.1.{p}" for p in bn)]
    return keys


def test_torchvision_names_and_shapes() -> None:
    r18 = DilatedResNet("resnet18", width=64).state_dict()
    assert list(r18) == torchvision_keys((2, 2, 2, 2), False) and len(r18) == 122 - 2
    assert r18["conv1.weight"].shape == (64, 3, 7, 7)
    assert r18["layer4.1.conv2.weight"].shape == (512, 512, 3, 3)
    assert r18["layer2.0.downsample.0.weight"].shape == (128, 64, 1, 1)
    r50 = DilatedResNet("resnet50", width=64).state_dict()
    assert list(r50) == torchvision_keys((3, 4, 6, 3), True) and len(r50) == 320 - 2
    assert r50["layer1.0.downsample.0.weight"].shape == (256, 64, 1, 1)
    assert r50["layer4.2.conv3.weight"].shape == (2048, 512, 1, 1)


def test_dilation_gives_output_stride_8() -> None:
    encoder = DilatedResNet("resnet18", width=8)
    assert encoder(torch.randn(2, 3, 32, 64)).shape == (2, 64, 4, 8)
    # layer3: the formerly strided conv keeps dilation 1, the others 2; layer4: 2 and 4
    assert encoder.layer3[0].conv1.dilation == (1, 1) and encoder.layer3[0].conv1.stride == (1, 1)
    assert encoder.layer3[0].conv2.dilation == (2, 2) and encoder.layer3[1].conv1.dilation == (2, 2)
    assert encoder.layer4[0].conv1.dilation == (2, 2) and encoder.layer4[1].conv2.dilation == (4, 4)
    r50 = DilatedResNet("resnet50", width=8)
    assert r50(torch.randn(2, 3, 32, 64)).shape == (2, 256, 4, 8)
    assert r50.layer4[0].conv2.dilation == (2, 2) and r50.layer4[2].conv2.dilation == (4, 4)


def test_model_output_shapes() -> None:
    for encoder, channels in (("resnet18", 64), ("resnet50", 256)):
        problem = create_problem("synthetic_scenes", "S_D_I", resolution="64x32", width=8, encoder=encoder)
        model = problem.build_model()
        outputs = model(torch.randn(2, 3, 32, 64))
        assert {k: tuple(v.shape) for k, v in outputs.items()} == {
            "S": (2, 19, 32, 64),
            "D": (2, 1, 32, 64),
            "I": (2, 2, 32, 64),
        }
        assert model.encode(torch.randn(2, 3, 32, 64)).shape == (2, channels, 4, 8)
        assert model.representation_size == channels
    head = DeepLabHead(16, 7, (20, 30), channels=8)
    assert [conv[0].dilation for conv in head.aspp.convs[1:4]] == [(12, 12), (24, 24), (36, 36)]
    assert head(torch.randn(2, 16, 3, 4)).shape == (2, 7, 20, 30)


def test_encoder_weights_load(tmp_path: Path) -> None:
    source = DilatedResNet("resnet18", width=8)
    state = {**source.state_dict(), "fc.weight": torch.zeros(10, 64), "fc.bias": torch.zeros(10)}
    torch.save(state, tmp_path / "r18.pth")
    problem = create_problem(
        "synthetic_scenes", "S", resolution="32x16", width=8, encoder_weights=str(tmp_path / "r18.pth")
    )
    encoder = problem.build_model().encoder
    for key, value in source.state_dict().items():
        assert torch.equal(encoder.state_dict()[key], value)
    with pytest.raises(UserInputError, match=r"conv1.weight has shape \(8, 3, 7, 7\)"):
        load_encoder_weights(DilatedResNet("resnet18", width=16), tmp_path / "r18.pth")
    with pytest.raises(UserInputError, match="missing"):
        load_encoder_weights(DilatedResNet("resnet50", width=8), tmp_path / "r18.pth")


# ------------------------------------------------------------------------------------------ problems


def test_presets_options_and_errors() -> None:
    problem = create_problem("synthetic_scenes", preset="R50")
    assert problem.task_names == ["S", "D"]
    assert (problem.option_values["encoder"], problem.option_values["resolution"]) == ("resnet50", "256x128")
    assert problem.option_values["classes"] == 7
    explicit = create_problem("cityscapes", "S_D_I", preset="19C", resolution="256x128")
    assert explicit.option_values["resolution"] == "256x128" and explicit.option_values["classes"] == 19
    assert "preset" not in explicit.reference_config()
    assert explicit.with_tasks(["S"]).option_values == explicit.option_values
    assert create_problem("cityscapes", preset=None).option_values["preset"] == "none"
    with pytest.raises(UserInputError, match="choose one of: none, R50, R18, InstSeg, HR, 19C"):
        create_problem("cityscapes", preset="R101")
    with pytest.raises(UserInputError, match="WIDTHxHEIGHT"):
        create_problem("cityscapes", resolution="big")
    with pytest.raises(UserInputError, match="choose one of: 7, 19"):
        create_problem("cityscapes", classes=13)
    with pytest.raises(UserInputError, match="unknown task"):
        create_problem("cityscapes", "S_N")
    defaults = problem.defaults
    assert (defaults.lr, defaults.batch_size, defaults.epochs, defaults.scheduler) == (1e-3, 32, 150, "exponential")
    assert defaults.grids["lr"] == [5e-3, 1e-3, 5e-4, 1e-4] and defaults.grids["weight_decay"] == [1e-4, 1e-5, 0.0]


def test_train_size_and_batches() -> None:
    problem = create_problem("synthetic_scenes", "S", resolution="16x8", width=4, n_images=20, classes=7, train_size=5)
    assert problem.num_examples("train") == 5
    sizes = [b.size for b in problem.batches("train", 4, shuffle=True, generator=torch.Generator().manual_seed(1))]
    assert sizes == [4]  # the last batch of one is dropped for batch norm
    assert [b.size for b in problem.batches("train", 4)] == [4, 1]
    assert int(next(problem.batches("train", 5)).targets["S"].max()) <= 6
    with pytest.raises(UserInputError, match="train_size=50 exceeds"):
        create_problem("synthetic_scenes", "S", resolution="16x8", n_images=20, train_size=50).prepare()
    assert math.isclose(sum(1 for _ in problem.batches("test", 1)), problem.num_examples("test"))


def test_scene_cache_is_reused_and_rebuilt_identically(data_root: Path) -> None:
    folder, first = scenes.ensure(16, 8, n_images=10, instances=3, seed=5)
    assert scenes.split_indices(10) == {"train": range(0, 6), "val": range(6, 8), "test": range(8, 10)}
    stamp = (folder / "train_image.npy").stat().st_mtime_ns
    assert scenes.ensure(16, 8, n_images=10, instances=3, seed=5)[1] == first
    assert (folder / "train_image.npy").stat().st_mtime_ns == stamp  # not regenerated
    array = np.load(folder / "val_label19.npy")
    array[0, 0, 0] = 3 - array[0, 0, 0]
    np.save(folder / "val_label19.npy", array)
    assert scenes.ensure(16, 8, n_images=10, instances=3, seed=5)[1] == first  # corrupted: rebuilt, same bytes
    with pytest.raises(UserInputError, match="n_images=2"):
        scenes.ensure(16, 8, n_images=2, instances=3, seed=5)

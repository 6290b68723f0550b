"""Cityscapes preparation: a tiny fake raw tree (and MTAN arrays) converted and checked target by target."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mtlbench.data import DATASETS
from mtlbench.data import cityscapes as city
from mtlbench.data.cache import CorruptDataError
from mtlbench.errors import MissingDataError, UserInputError
from mtlbench.problems import create_problem

# The official tables (cityscapesScripts labels.py), written out independently of the module under test.
OFFICIAL_TRAIN_ID = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11, 25: 12}
OFFICIAL_TRAIN_ID |= {26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18}
OFFICIAL_CATEGORY = [0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 4, 5, 5, 6, 6, 6, 6, 6, 6]
THINGS = {24, 25, 26, 27, 28, 31, 32, 33}  # labelIds with instances and a trainId (not caravan 29, trailer 30)

RAW_W, RAW_H = 64, 32  # the fake "full resolution"
LOW_W, LOW_H = 16, 8  # the content is constant on 4x4 blocks of the raw images
CITIES = {"train": {"aachen": 3, "bremen": 2}, "val": {"lindau": 2}}


def _block(low: np.ndarray) -> np.ndarray:
    return np.kron(low, np.ones((RAW_H // LOW_H, RAW_W // LOW_W), dtype=low.dtype))


def _write_png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def make_raw_tree(root: Path) -> dict[str, dict[str, np.ndarray]]:
    """Write leftImg8bit/gtFine/disparity PNGs; return the low-resolution truth of each image by stem."""
    rng = np.random.default_rng(0)
    truth: dict[str, dict[str, np.ndarray]] = {}
    for split, cities in CITIES.items():
        for city_name, count in cities.items():
            for k in range(count):
                stem = f"{city_name}_{k:06d}_000019"
                label = rng.integers(0, 34, (LOW_H, LOW_W)).astype(np.uint8)
                label[0, :4] = 26  # a car instance
                label[1, :2] = 26  # a car "group" region (instanceIds value = labelId)
                label[2, 2:4] = 29  # caravan: has instances but no trainId
                instance = label.astype(np.uint16)  # stuff pixels carry their labelId
                things = np.isin(label, list(THINGS)) | (label == 29)
                instance[things] = label[things].astype(np.uint16) * 1000 + rng.integers(0, 3, things.sum())
                instance[0, :4] = 26000 + 7
                instance[1, :2] = 26
                disparity = rng.integers(0, 30000, (LOW_H, LOW_W)).astype(np.uint16)
                disparity[0, 5], disparity[0, 6] = 0, 1
                image = rng.integers(0, 256, (RAW_H, RAW_W, 3)).astype(np.uint8)
                _write_png(root / "leftImg8bit" / split / city_name / f"{stem}_leftImg8bit.png", image)
                _write_png(root / "gtFine" / split / city_name / f"{stem}_gtFine_labelIds.png", _block(label))
                _write_png(root / "gtFine" / split / city_name / f"{stem}_gtFine_instanceIds.png", _block(instance))
                _write_png(root / "disparity" / split / city_name / f"{stem}_disparity.png", _block(disparity))
                truth[f"{split}/{city_name}/{stem}"] = {
                    "image": image,
                    "label": label,
                    "instance": instance,
                    "disparity": disparity,
                }
    return truth


@pytest.fixture
def data_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv("MTLBENCH_DATA", str(root))
    return root


@pytest.fixture
def raw_tree(tmp_path: Path) -> tuple[Path, dict[str, dict[str, np.ndarray]]]:
    root = tmp_path / "raw"
    return root, make_raw_tree(root)


def _expected(truth: dict[str, np.ndarray], width: int, height: int) -> dict[str, np.ndarray]:
    factor = (height // LOW_H, width // LOW_W)
    up = np.ones(factor, dtype=np.int64)
    label = np.kron(truth["label"].astype(np.int64), up)
    train = np.array([[OFFICIAL_TRAIN_ID.get(int(v), -1) for v in row] for row in label])
    category = np.where(train >= 0, np.array(OFFICIAL_CATEGORY)[np.clip(train, 0, 18)], -1)
    instance = np.kron(truth["instance"].astype(np.int64), up)
    instance = np.where(np.isin(label, list(THINGS)), instance, 0)
    raw = np.kron(truth["disparity"].astype(np.float64), up)
    disparity = np.where(raw > 0, (raw - 1.0) / (256.0 * 2048.0 / width), 0.0)
    image = np.asarray(Image.fromarray(truth["image"]).resize((width, height), Image.Resampling.BILINEAR))
    return {"label19": train, "label7": category, "instance": instance, "disparity": disparity, "image": image}


def test_raw_preparation_targets_are_exact(data_root: Path, raw_tree) -> None:
    raw, truth = raw_tree
    summary = city.prepare_raw(raw, ["16x8", "32x16"], workers=1)
    assert "16x8" in summary and "32x16" in summary
    for width, height in ((16, 8), (32, 16)):
        folder = data_root / "cityscapes" / f"{width}x{height}"
        splits = json.loads((folder / "splits.json").read_text())
        for split in ("train", "val", "test"):
            arrays = city.load_split(folder, split, city.ARRAYS, mmap=False)
            assert len(arrays["image"]) == len(splits[split])
            for row, name in enumerate(splits[split]):
                source_split, city_name, file_name = name.split("/")
                stem = file_name[: -len("_leftImg8bit.png")]
                expected = _expected(truth[f"{source_split}/{city_name}/{stem}"], width, height)
                np.testing.assert_array_equal(arrays["label19"][row], expected["label19"])
                np.testing.assert_array_equal(arrays["label7"][row], expected["label7"])
                np.testing.assert_array_equal(arrays["instance"][row], expected["instance"])
                np.testing.assert_array_equal(arrays["image"][row], expected["image"])
                np.testing.assert_allclose(arrays["disparity"][row], expected["disparity"], rtol=1e-6, atol=0)
                assert arrays["disparity"].dtype == np.float32


def test_splits_follow_gamas_rule(data_root: Path, raw_tree) -> None:
    raw, _ = raw_tree
    city.prepare_raw(raw, ["16x8"], workers=1)
    splits = json.loads((data_root / "cityscapes" / "16x8" / "splits.json").read_text())
    official_train = sorted(
        str(p.relative_to(raw / "leftImg8bit")) for p in (raw / "leftImg8bit" / "train").rglob("*.png")
    )
    official_val = sorted(str(p.relative_to(raw / "leftImg8bit")) for p in (raw / "leftImg8bit" / "val").rglob("*.png"))
    np.random.seed(0)  # Gama's city_preprocess.py: choice over the sorted path list
    chosen = sorted(np.random.choice(official_train, int(0.8 * len(official_train)), replace=False))
    assert splits["train"] == list(chosen)
    assert splits["val"] == [p for p in official_train if p not in chosen]
    assert splits["test"] == official_val
    manifest = json.loads((data_root / "cityscapes" / "16x8" / "manifest.json").read_text())
    assert manifest["meta"]["counts"] == {"train": 4, "val": 1, "test": 2}


def test_problem_batches_from_prepared_cache(data_root: Path, raw_tree) -> None:
    raw, _ = raw_tree
    city.prepare_raw(raw, ["16x8"], workers=1)
    problem = create_problem("cityscapes", "S_D_I", resolution="16x8", classes=7, width=8)
    problem.prepare()
    assert {s: problem.num_examples(s) for s in problem.splits} == {"train": 4, "val": 1, "test": 2}
    folder = data_root / "cityscapes" / "16x8"
    arrays = city.load_split(folder, "test", city.ARRAYS, mmap=False)
    batch = next(problem.batches("test", 2))
    np.testing.assert_array_equal(batch.targets["S"].numpy(), arrays["label7"].astype(np.int64))
    np.testing.assert_array_equal(batch.targets["D"][:, 0].numpy(), arrays["disparity"])
    offsets, mask = batch.targets["I"][:, :2].numpy(), batch.targets["I"][:, 2].numpy()
    for b in range(2):
        inst = arrays["instance"][b]
        np.testing.assert_array_equal(mask[b], (inst != 0).astype(np.float32))
        for value in np.unique(inst[inst != 0]):
            rows, cols = np.nonzero(inst == value)
            np.testing.assert_allclose(offsets[b, 0][inst == value], rows - rows.mean(), atol=1e-6)
            np.testing.assert_allclose(offsets[b, 1][inst == value], cols - cols.mean(), atol=1e-6)
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    restored = batch.inputs * std.view(1, 3, 1, 1) + mean.view(1, 3, 1, 1)
    np.testing.assert_allclose(restored.permute(0, 2, 3, 1).numpy() * 255.0, arrays["image"], atol=1e-3)
    assert len(problem.data_checksums()) == 15


def test_mtan_layout(data_root: Path, tmp_path: Path) -> None:
    root = tmp_path / "mtan"
    rng = np.random.default_rng(1)
    truth = {}
    for split, n in (("train", 5), ("val", 2)):
        for i in range(n):
            image = rng.integers(0, 256, (8, 16, 3)) / 255.0
            label7 = rng.integers(-1, 7, (8, 16)).astype(np.float32)
            label19 = rng.integers(-1, 19, (8, 16)).astype(np.float32)
            depth = rng.uniform(0, 5, (8, 16, 1)).astype(np.float32)
            for folder, array in (("image", image), ("label_7", label7), ("label_19", label19), ("depth", depth)):
                (root / split / folder).mkdir(parents=True, exist_ok=True)
                np.save(root / split / folder / f"{i}.npy", array)
            truth[(split, i)] = (image, label7, label19, depth)
    assert "MTAN" in city.prepare(root)
    folder = data_root / "cityscapes" / "16x8"
    train_idx, val_idx = np.sort(np.random.RandomState(0).choice(5, 4, replace=False)), None
    val_idx = [i for i in range(5) if i not in train_idx]
    for split, sources in (("train", [("train", i) for i in train_idx]), ("val", [("train", i) for i in val_idx])):
        arrays = city.load_split(folder, split, city.ARRAYS[:4], mmap=False)
        for row, key in enumerate(sources):
            image, label7, label19, depth = truth[key]
            np.testing.assert_array_equal(arrays["image"][row], np.rint(image * 255).astype(np.uint8))
            np.testing.assert_array_equal(arrays["label7"][row], label7.astype(np.int8))
            np.testing.assert_array_equal(arrays["label19"][row], label19.astype(np.int8))
            np.testing.assert_array_equal(arrays["disparity"][row], depth[..., 0])
    problem = create_problem("cityscapes", "S_D", resolution="16x8", width=8)
    problem.prepare()
    assert problem.num_examples("test") == 2
    with pytest.raises(MissingDataError, match="no instances"):
        create_problem("cityscapes", "S_D_I", resolution="16x8", width=8).prepare()


def test_errors_name_what_is_wrong(data_root: Path, raw_tree, tmp_path: Path) -> None:
    raw, _ = raw_tree
    with pytest.raises(MissingDataError, match=r"data prepare cityscapes --raw PATH --resolution 16x8"):
        create_problem("cityscapes", resolution="16x8").prepare()
    with pytest.raises(MissingDataError, match="licensed"):
        DATASETS["cityscapes"].fetch(None)
    missing = raw / "disparity" / "val" / "lindau" / "lindau_000001_000019_disparity.png"
    missing.rename(tmp_path / "moved.png")
    with pytest.raises(UserInputError, match=re.escape("lindau_000001_000019_disparity.png")):
        city.prepare_raw(raw, ["16x8"], workers=1)
    (tmp_path / "moved.png").rename(missing)
    label = raw / "gtFine" / "train" / "bremen" / "bremen_000000_000019_gtFine_labelIds.png"
    Image.fromarray(np.zeros((RAW_H, RAW_W + 4), np.uint8)).save(label)
    with pytest.raises(UserInputError, match=re.escape("bremen_000000_000019_gtFine_labelIds.png is 68x32")):
        city.prepare_raw(raw, ["16x8"], workers=1)
    (raw / "gtFine").rename(tmp_path / "gtFine")
    with pytest.raises(UserInputError, match="no gtFine/ folder"):
        city.prepare_raw(raw, ["16x8"], workers=1)
    with pytest.raises(UserInputError, match="WIDTHxHEIGHT"):
        city.parse_resolution("256by128")


def test_corrupted_cache_is_detected(data_root: Path, raw_tree) -> None:
    raw, _ = raw_tree
    city.prepare_raw(raw, ["16x8"], workers=1)
    path = data_root / "cityscapes" / "16x8" / "val_disparity.npy"
    array = np.load(path)
    array[0, 0, 0] += 1.0
    np.save(path, array)
    with pytest.raises(CorruptDataError, match=re.escape("val_disparity.npy corrupted")):
        create_problem("cityscapes", "S_D", resolution="16x8", width=8).prepare()
    info = DATASETS["cityscapes"].info()
    assert info["16x8"]["counts"] == {"train": 4, "val": 1, "test": 2}


def test_cli_prepare(data_root: Path, raw_tree, capsys: pytest.CaptureFixture[str]) -> None:
    from mtlbench.cli.main import main

    raw, _ = raw_tree
    argv = ["data", "prepare", "cityscapes", "--raw", str(raw), "--resolution", "16x8", "--workers", "1"]
    assert main(argv) == 0
    assert city.is_prepared("16x8")
    assert main(["data", "prepare", "kitti", "--raw", str(raw)]) == 2
    assert "choose one of: cityscapes" in capsys.readouterr().err

"""NYUv2 preparation: fake MTAN-layout trees converted and checked array by array; broken trees refused."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from mtlbench.data import DATASETS, nyuv2
from mtlbench.data.cache import CorruptDataError
from mtlbench.errors import MissingDataError, UserInputError
from mtlbench.problems import create_problem

H, W = 6, 8
COUNTS = {"train": 5, "val": 3}
SHARED_SPLIT = Path(__file__).resolve().parents[2] / "shared" / "data" / "libmtl" / "nyuv2_data_split.json"


def make_tree(root: Path, counts: dict[str, int] = COUNTS, seed: int = 0) -> dict[str, list[dict[str, np.ndarray]]]:
    """Write ``{train,val}/{image,label,depth,normal}/{i}.npy`` as MTAN stores them (float64); return them."""
    rng = np.random.default_rng(seed)
    truth: dict[str, list[dict[str, np.ndarray]]] = {}
    for split, n in counts.items():
        truth[split] = []
        for i in range(n):
            normal = rng.normal(size=(H, W, 3))
            normal /= np.linalg.norm(normal, axis=-1, keepdims=True)
            normal[0, :2] = 0.0  # invalid pixels
            depth = rng.uniform(0.5, 9.0, (H, W, 1))
            depth[1, :3] = 0.0  # missing depth
            sample = {
                "image": rng.integers(0, 256, (H, W, 3)) / 255.0,
                "label": rng.integers(-1, 13, (H, W)).astype(np.float64),
                "depth": depth,
                "normal": normal,
            }
            for name, array in sample.items():
                folder = root / split / name
                folder.mkdir(parents=True, exist_ok=True)
                np.save(folder / f"{i}.npy", array)
            truth[split].append(sample)
    return truth


@pytest.fixture(autouse=True)
def data_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MTLBENCH_DATA", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_prepare_caches_every_target_exactly(tmp_path: Path, data_root: Path) -> None:
    truth = make_tree(tmp_path / "raw")
    summary = nyuv2.prepare(tmp_path / "raw")
    assert "5 train, 3 test images at 8x6" in summary
    for source, split in (("train", "train"), ("val", "test")):
        arrays = nyuv2.load(split, mmap=False)
        assert arrays["image"].dtype == np.uint8 and arrays["label"].dtype == np.int8
        assert arrays["depth"].dtype == np.float32 and arrays["normal"].dtype == np.float32
        for i, sample in enumerate(truth[source]):
            np.testing.assert_array_equal(arrays["image"][i].astype(np.float64) / 255.0, sample["image"])
            np.testing.assert_array_equal(arrays["label"][i], sample["label"].astype(np.int64))
            np.testing.assert_array_equal(arrays["depth"][i], sample["depth"][..., 0].astype(np.float32))
            np.testing.assert_array_equal(arrays["normal"][i], sample["normal"].astype(np.float32))
    manifest = json.loads((data_root / "nyuv2" / "manifest.json").read_text())
    assert sorted(manifest["files"]) == sorted(nyuv2.cached_names())
    for name, digest in manifest["files"].items():
        assert hashlib.sha256((data_root / "nyuv2" / name).read_bytes()).hexdigest() == digest
    assert "already prepared" in nyuv2.prepare(tmp_path / "raw")
    assert not list((data_root / "nyuv2").glob(".*.tmp"))


def test_problem_reads_the_cache_and_splits(tmp_path: Path) -> None:
    truth = make_tree(tmp_path / "raw", {"train": 4, "val": 3})
    nyuv2.prepare(tmp_path / "raw")
    problem = create_problem("nyuv2", val_split="none", width=4, augment=False)
    assert problem.num_examples("train") == 4 and problem.num_examples("test") == 3
    assert problem.num_examples("val") == 3 and problem.test_selected  # MTAN: the test set every epoch
    batch = next(problem.batches("test", 2))
    # the float32 input equals MTAN's float32 cast of the stored float64 k/255, bit for bit
    images = np.stack([s["image"] for s in truth["val"][:2]]).transpose(0, 3, 1, 2).astype(np.float32)
    np.testing.assert_array_equal(batch.inputs.numpy(), images)
    np.testing.assert_array_equal(
        batch.targets["N"].numpy(),
        np.stack([s["normal"] for s in truth["val"][:2]]).astype(np.float32).transpose(0, 3, 1, 2),
    )
    assert batch.targets["S"].dtype.is_floating_point is False and tuple(batch.targets["D"].shape) == (2, 1, H, W)
    assert set(problem.data_checksums()) == {f"nyuv2/{name}" for name in nyuv2.cached_names()}
    assert create_problem("nyuv2", val_split=None).test_selected  # the CLI reads "none" as None
    with pytest.raises(UserInputError, match="val_split=libmtl needs the 795 official training images"):
        create_problem("nyuv2", width=4).prepare()
    with pytest.raises(UserInputError, match="train_size=5 exceeds the 4"):
        create_problem("nyuv2", val_split="none", train_size=5).prepare()


def test_cache_corruption_and_absence_are_reported(tmp_path: Path, data_root: Path) -> None:
    with pytest.raises(MissingDataError, match="data prepare nyuv2 --raw PATH"):
        create_problem("nyuv2").prepare()
    with pytest.raises(MissingDataError, match="dropbox"):
        DATASETS["nyuv2"].fetch()
    make_tree(tmp_path / "raw")
    nyuv2.prepare(tmp_path / "raw")
    path = data_root / "nyuv2" / "test_depth.npy"
    path.write_bytes(path.read_bytes()[:-4] + b"\x00\x00\x80\x3f")
    with pytest.raises(CorruptDataError, match=r"test_depth\.npy corrupted"):
        create_problem("nyuv2", val_split="none").prepare()
    assert "prepared in" in nyuv2.prepare(tmp_path / "raw")  # a damaged cache is rebuilt without --force
    create_problem("nyuv2", val_split="none").prepare()
    assert DATASETS["nyuv2"].info()["mtan"]["counts"] == {"train": 5, "test": 3}


def _break(root: Path, split: str, name: str, index: int, array: np.ndarray | None) -> Path:
    path = root / split / name / f"{index}.npy"
    if array is None:
        path.unlink()
    else:
        np.save(path, array)
    return path


BROKEN = {
    "missing": ("val", "depth", 2, None, "is missing"),
    "shape": ("train", "normal", 3, np.zeros((H, W + 1, 3)), r"has shape \(6, 9, 3\); expected \(6, 8, 3\)"),
    "image range": ("train", "image", 1, np.full((H, W, 3), 1.5), r"values in \[1.5, 1.5\]"),
    "not 8-bit": ("val", "image", 0, np.full((H, W, 3), 0.5), "not 8-bit values / 255"),
    "label": ("train", "label", 4, np.full((H, W), 13.0), "holds the label 13"),
    "fractional label": ("train", "label", 0, np.full((H, W), 2.5), "holds the label 2.5"),
    "negative depth": ("val", "depth", 1, np.full((H, W, 1), -0.25), "negative depth -0.25"),
    "nan": ("train", "depth", 2, np.full((H, W, 1), np.nan), "NaN or infinite"),
    "normal range": ("val", "normal", 0, np.full((H, W, 3), 1.2), r"component 1.2 outside \[-1, 1\]"),
    "pickle": ("train", "label", 1, np.array([{"a": 1}], dtype=object), "not a readable .npy array"),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_a_broken_tree_is_refused_in_one_line_naming_the_file(tmp_path: Path, data_root: Path, case: str) -> None:
    raw = tmp_path / "raw"
    make_tree(raw)
    split, name, index, array, message = BROKEN[case]
    if case == "pickle":
        path = raw / split / name / f"{index}.npy"
        np.save(path, array, allow_pickle=True)
    else:
        path = _break(raw, split, name, index, array)
    with pytest.raises(UserInputError, match=message) as error:
        nyuv2.prepare(raw)
    text = str(error.value)
    assert "\n" not in text and str(path) in text
    assert not (data_root / "nyuv2").exists() or not list((data_root / "nyuv2").glob("*.npy"))


def test_layout_errors(tmp_path: Path) -> None:
    with pytest.raises(UserInputError, match="is not a folder"):
        nyuv2.prepare(tmp_path / "nowhere")
    raw = tmp_path / "raw"
    make_tree(raw)
    np.save(raw / "train" / "depth" / "7.npy", np.zeros((H, W, 1)))
    with pytest.raises(UserInputError, match=r"7.npy is beyond the 5 images of train/image"):
        nyuv2.prepare(raw)


def test_libmtl_split_ships_with_the_package() -> None:
    split = nyuv2.libmtl_split()
    assert len(split["train"]) == 636 and len(split["val"]) == 159
    assert sorted(split["train"] + split["val"]) == list(range(795))
    packaged = Path(nyuv2.__file__).with_name(nyuv2.SPLIT_FILE).read_bytes()
    assert hashlib.sha256(packaged).hexdigest() == nyuv2.SPLIT_SHA256
    if SHARED_SPLIT.is_file():  # the copy kept with the reference data
        assert SHARED_SPLIT.read_bytes() == packaged
        shared = json.loads(SHARED_SPLIT.read_text())
        assert list(split["train"]) == shared["train"] and list(split["val"]) == shared["val"]


def test_cli_prepare(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from mtlbench.cli.main import main

    raw = tmp_path / "raw"
    make_tree(raw)
    assert main(["data", "prepare", "nyuv2", "--raw", str(raw), "--resolution", "16x8"]) == 2
    assert "--resolution 16x8 is not used by nyuv2" in capsys.readouterr().err
    assert main(["data", "prepare", "nyuv2"]) == 2
    assert "needs --raw PATH" in capsys.readouterr().err
    assert main(["data", "prepare", "nyuv2", "--raw", str(raw)]) == 0
    assert "5 train, 3 test images" in capsys.readouterr().out
    np.save(raw / "val" / "label" / "1.npy", np.full((H, W), -2.0))
    assert main(["data", "prepare", "nyuv2", "--raw", str(raw), "--force"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "val/label/1.npy holds the label -2" in err


def test_libmtl_split_selects_the_published_indices(tmp_path: Path) -> None:
    truth = make_tree(tmp_path / "raw", {"train": 795, "val": 4})
    nyuv2.prepare(tmp_path / "raw")
    split = nyuv2.libmtl_split()
    problem = create_problem("nyuv2", width=2, augment=False)
    assert [problem.num_examples(s) for s in ("train", "val", "test")] == [636, 159, 4]
    assert not problem.test_selected
    val = np.concatenate([b.targets["S"].numpy() for b in problem.batches("val", 64)])
    expected = np.stack([truth["train"][i]["label"] for i in split["val"]]).astype(np.int64)
    np.testing.assert_array_equal(val, expected)
    first = next(problem.batches("train", 3)).targets["D"][:, 0].numpy()
    np.testing.assert_array_equal(
        first, np.stack([truth["train"][i]["depth"][..., 0] for i in split["train"][:3]]).astype(np.float32)
    )
    small = create_problem("nyuv2", train_size=10, val_size=5, test_size=2)
    assert [small.num_examples(s) for s in ("train", "val", "test")] == [10, 5, 2]
    mtan = create_problem("nyuv2", val_split="none", test_size=3)
    assert [mtan.num_examples(s) for s in ("train", "val", "test")] == [795, 3, 3]
    with pytest.raises(UserInputError, match="val_size=200 exceeds the 159 val images"):
        create_problem("nyuv2", val_size=200).prepare()


def test_images_that_are_not_8_bit_are_cached_as_float32(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    truth = make_tree(raw, {"train": 2, "val": 2})
    rng = np.random.default_rng(1)
    for split in ("train", "val"):
        for i, sample in enumerate(truth[split]):
            sample["image"] = rng.uniform(0.0, 1.0, (H, W, 3))  # e.g. resized after the division by 255
            np.save(raw / split / "image" / f"{i}.npy", sample["image"])
    assert "cached as float32" in nyuv2.prepare(raw)
    arrays = nyuv2.load("test", mmap=False)
    assert arrays["image"].dtype == np.float32
    batch = next(create_problem("nyuv2", val_split="none", augment=False).batches("test", 2))
    expected = np.stack([s["image"] for s in truth["val"]]).transpose(0, 3, 1, 2).astype(np.float32)
    np.testing.assert_array_equal(batch.inputs.numpy(), expected)

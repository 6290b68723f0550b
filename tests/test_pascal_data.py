"""PASCAL-Context preparation from a generated PASCAL_MT tree (PASCAL-Part .mat structs written with
scipy.io.savemat): every cached target is checked exactly; broken trees are refused in one line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.io
from PIL import Image
from scipy import ndimage

from mtlbench.data import pascal_context as pc
from mtlbench.data.cache import ENV_VAR
from mtlbench.errors import UserInputError
from mtlbench.problems.edge_eval import thin

IDS = {"train": ["2008_000001", "2008_000002", "2008_000003"], "val": ["2008_000004", "2008_000005"]}
SHAPES = {"2008_000001": (10, 14), "2008_000002": (12, 9), "2008_000003": (10, 14), "2008_000004": (11, 13)}
SHAPES["2008_000005"] = (9, 10)


def _objects(records: list[tuple[str, int, np.ndarray, list[tuple[str, np.ndarray]]]]) -> np.ndarray:
    objects = np.zeros((1, len(records)), dtype=[("class", "O"), ("class_ind", "O"), ("mask", "O"), ("parts", "O")])
    for k, (name, class_ind, mask, parts) in enumerate(records):
        if parts:
            part_array = np.zeros((1, len(parts)), dtype=[("part_name", "O"), ("mask", "O")])
            for j, (part_name, part_mask) in enumerate(parts):
                part_array[0, j] = (part_name, part_mask.astype(np.uint8))
        else:
            part_array = np.zeros((0, 0))
        objects[0, k] = (name, np.array([[class_ind]], dtype=np.uint8), mask.astype(np.uint8), part_array)
    return objects


def make_pascal_tree(root: Path, seed: int = 0) -> dict[str, dict[str, np.ndarray]]:
    """Write a PASCAL_MT tree; return per image id the targets the cache must hold (computed here)."""
    rng = np.random.default_rng(seed)
    for folder in ("JPEGImages", "ImageSets/Context", "semseg/VOC12", "semseg/pascal-context", "human_parts"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    for folder in ("sal_distill", "normals_distill", "pascal-context/trainval"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    expected: dict[str, dict[str, np.ndarray]] = {}
    valid_ids = sorted(pc.NORMALS_VALID_CLASSES)
    for n, (image_id, (h, w)) in enumerate(SHAPES.items()):
        image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        Image.fromarray(image).save(root / "JPEGImages" / f"{image_id}.jpg", quality=95)
        image = np.array(Image.open(root / "JPEGImages" / f"{image_id}.jpg").convert("RGB"))
        semseg = rng.integers(0, 21, (h, w), dtype=np.uint8)
        semseg[0, 0] = 255
        folder = "VOC12" if n % 2 == 0 else "pascal-context"
        Image.fromarray(semseg).save(root / "semseg" / folder / f"{image_id}.png")
        # parts: image 0 has a person with parts and a dog; image 1 a person without parts; others nothing
        parts_target = np.full((h, w), 255, dtype=np.uint8)
        records = []
        if n == 0:
            head = np.zeros((h, w), bool)
            head[1:3, 1:4] = True
            torso = np.zeros((h, w), bool)
            torso[3:7, 1:4] = True
            lhand = np.zeros((h, w), bool)
            lhand[6:8, 4:6] = True
            records = [
                ("dog", 12, np.ones((h, w)), []),
                ("person", 15, head | torso | lhand, [("head", head), ("torso", torso), ("lhand", lhand)]),
            ]
            parts_target = np.zeros((h, w), np.uint8)
            parts_target[head], parts_target[torso], parts_target[lhand] = 1, 2, 4
        elif n == 1:
            records = [("person", 15, np.ones((h, w)), [])]
        anno = {"imname": image_id, "objects": _objects(records) if records else _objects([])}
        scipy.io.savemat(root / "human_parts" / f"{image_id}.mat", {"anno": anno})
        sal_raw = rng.integers(0, 256, (h, w), dtype=np.uint8)
        Image.fromarray(sal_raw).save(root / "sal_distill" / f"{image_id}.png")
        normals = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        Image.fromarray(normals).save(root / "normals_distill" / f"{image_id}.png")
        labels = rng.choice([1, 2, *valid_ids[:5]], size=(h // 3 + 1, w // 3 + 1))  # 1, 2 are not NYU classes
        label_map = np.kron(labels, np.ones((3, 3), dtype=np.int64))[:h, :w].astype(np.uint16)
        scipy.io.savemat(root / "pascal-context/trainval" / f"{image_id}.mat", {"LabelMap": label_map})
        laplacian = ndimage.convolve(label_map.astype(float), [[0, 1, 0], [1, -4, 1], [0, 1, 0]], mode="mirror")
        valid = np.isin(label_map, valid_ids)
        expected[image_id] = {
            "image": image,
            "semseg": semseg,
            "parts": parts_target,
            "sal": (sal_raw > 127).astype(np.uint8),  # v / 255 > 0.5 <=> v >= 128
            "normals": np.where(valid[..., None], 2.0 * normals.astype(np.float32) / 255 - 1, 0.0),
            "edge": thin(laplacian != 0).astype(np.uint8),
        }
    for split, ids in IDS.items():
        (root / "ImageSets/Context" / f"{split}.txt").write_text("\n".join(ids) + "\n")
    return expected


@pytest.fixture
def data_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv(ENV_VAR, str(root))
    return root


def decoded_normals(split: pc.RaggedSplit, index: int) -> np.ndarray:
    valid = split.get("normals_valid", index).astype(bool)
    return np.where(valid[..., None], 2.0 * split.get("normals", index).astype(np.float32) / 255 - 1, 0.0)


def test_prepare_reproduces_every_target(tmp_path: Path, data_root: Path) -> None:
    expected = make_pascal_tree(tmp_path / "PASCAL_MT")
    assert "3 train, 2 test" in pc.prepare(tmp_path)
    for split, ids in (("train", IDS["train"]), ("test", IDS["val"])):
        cached, _ = pc.load(split)
        assert cached.ids == ids
        for index, image_id in enumerate(ids):
            want = expected[image_id]
            for name in ("image", "semseg", "parts", "sal", "edge"):
                assert np.array_equal(cached.get(name, index), want[name]), (image_id, name)
            assert np.array_equal(decoded_normals(cached, index), want["normals"])
    train, _ = pc.load("train")
    assert pc.has_people([train.get("parts", i) for i in range(3)]).tolist() == [True, False, False]
    assert train.get("edge", 0).any() and set(np.unique(train.get("parts", 0))) == {0, 1, 2, 4}


def test_laplacian_edges_follow_the_sum_not_any_difference() -> None:
    label_map = np.array([[2, 1, 2], [3, 2, 3], [2, 3, 2]])
    # centre: 1 + 3 + 3 + 3 - 8 != 0 -> edge; a 4-neighbour sum that cancels is no edge
    assert pc.laplacian_edges(label_map)[1, 1] == 1
    flat = np.array([[2, 1, 2], [1, 2, 3], [2, 3, 2]])  # 1 + 1 + 3 + 3 - 8 = 0
    assert pc.laplacian_edges(flat)[1, 1] == 0


def _break(root: Path, how: str) -> Path:
    if how == "missing_normals":
        path = root / "normals_distill" / "2008_000004.png"
        path.unlink()
    elif how == "bad_semseg":
        path = root / "semseg" / "pascal-context" / "2008_000002.png"
        Image.fromarray(np.full((12, 9), 30, np.uint8)).save(path)
    elif how == "bad_part":
        path = root / "human_parts" / "2008_000001.mat"
        mask = np.ones((10, 14))
        scipy.io.savemat(path, {"anno": {"imname": "x", "objects": _objects([("person", 15, mask, [("tail", mask)])])}})
    elif how == "no_labelmap":
        path = root / "pascal-context/trainval" / "2008_000003.mat"
        scipy.io.savemat(path, {"Other": np.zeros((10, 14))})
    else:
        path = root / "sal_distill" / "2008_000005.png"
        Image.fromarray(np.zeros((4, 4), np.uint8)).save(path)
    return path


@pytest.mark.parametrize("how", ["missing_normals", "bad_semseg", "bad_part", "no_labelmap", "bad_sal_shape"])
def test_broken_tree_is_refused_in_one_line_naming_the_file(tmp_path: Path, data_root: Path, how: str) -> None:
    make_pascal_tree(tmp_path / "PASCAL_MT")
    path = _break(tmp_path / "PASCAL_MT", how)
    with pytest.raises(UserInputError) as caught:
        pc.prepare(tmp_path / "PASCAL_MT")
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)
    assert not (data_root / "pascal_context").exists()

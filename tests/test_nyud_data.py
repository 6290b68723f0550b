"""NYUD-v2 preparation from generated trees in both official layouts (MTI-Net NYUD_MT, ATRC/InvPT NYUDv2):
every cached target is checked exactly against the raw files, and broken trees are refused in one line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mtlbench.data import nyud
from mtlbench.data.cache import ENV_VAR, MANIFEST_NAME
from mtlbench.errors import MissingDataError, UserInputError

SHAPES = {"0001": (12, 16), "0002": (12, 16), "0003": (12, 16), "0004": (12, 16), "0005": (12, 16)}
SPLITS = {"train": ["0001", "0002", "0003"], "val": ["0004", "0005"]}


def make_nyud_tree(root: Path, variant: str, seed: int = 0) -> dict[str, dict[str, np.ndarray]]:
    """Write a NYUD tree; return the raw arrays written per image id (what the cache must reproduce)."""
    rng = np.random.default_rng(seed)
    for folder in ("images", "segmentation", "depth", "normals", "edge", "gt_sets"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    written: dict[str, dict[str, np.ndarray]] = {}
    for image_id, (h, w) in SHAPES.items():
        image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        semseg = rng.integers(0, 41, (h, w), dtype=np.uint8)
        depth = rng.uniform(0.5, 9.0, (h, w)).astype(np.float32)
        depth[0, :3] = 0.0  # invalid
        edge = (rng.random((h, w)) < 0.2).astype(np.uint8)
        if variant == "NYUD_MT":
            Image.fromarray(image).save(root / "images" / f"{image_id}.jpg", quality=95)
            image = np.array(Image.open(root / "images" / f"{image_id}.jpg").convert("RGB"))  # lossy: what it reads
            normals = rng.normal(size=(h, w, 3)).astype(np.float32)
            normals[1, 1] = 0.0  # invalid (norm 0)
            np.save(root / "normals" / f"{image_id}.npy", normals)
            np.save(root / "edge" / f"{image_id}.npy", edge.astype(np.float32))
        else:
            Image.fromarray(image).save(root / "images" / f"{image_id}.png")
            normals = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
            Image.fromarray(normals).save(root / "normals" / f"{image_id}.png")
            Image.fromarray(edge * 255).save(root / "edge" / f"{image_id}.png")
        Image.fromarray(semseg).save(root / "segmentation" / f"{image_id}.png")
        np.save(root / "depth" / f"{image_id}.npy", depth)
        written[image_id] = {"image": image, "semseg": semseg, "depth": depth, "normals": normals, "edge": edge}
    for split, ids in SPLITS.items():
        (root / "gt_sets" / f"{split}.txt").write_text("\n".join(ids) + "\n")
    return written


@pytest.fixture
def data_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv(ENV_VAR, str(root))
    return root


@pytest.mark.parametrize("variant", ["NYUD_MT", "NYUDv2"])
def test_prepare_reproduces_every_target(tmp_path: Path, data_root: Path, variant: str) -> None:
    written = make_nyud_tree(tmp_path / "raw" / variant, variant)
    summary = nyud.prepare(tmp_path / "raw")  # the tree is found one level below
    assert variant in summary and "3 train, 2 test" in summary
    for split, ids in (("train", SPLITS["train"]), ("test", SPLITS["val"])):
        cached, checksums = nyud.load(split)
        assert cached.ids == ids and len(checksums) == len(nyud.ragged_files(split, nyud.nyud_spec(variant)))
        for index, image_id in enumerate(ids):
            raw = written[image_id]
            assert np.array_equal(cached.get("image", index), raw["image"])
            semseg = cached.get("semseg", index)
            assert np.array_equal(semseg[raw["semseg"] == 0], np.full((raw["semseg"] == 0).sum(), 255))
            assert np.array_equal(semseg[raw["semseg"] > 0], raw["semseg"][raw["semseg"] > 0] - 1)
            assert semseg[raw["semseg"] > 0].max() <= 39
            assert np.array_equal(cached.get("depth", index), raw["depth"])
            assert np.array_equal(cached.get("edge", index), raw["edge"])
            normals = nyud.decode_normals(cached.get("normals", index))
            expected = raw["normals"] if variant == "NYUD_MT" else 2.0 * raw["normals"].astype(np.float32) / 255 - 1
            assert np.array_equal(normals, expected)


def test_cache_is_checksummed(tmp_path: Path, data_root: Path) -> None:
    make_nyud_tree(tmp_path / "raw", "NYUDv2")
    nyud.prepare(tmp_path / "raw")
    with pytest.raises(UserInputError, match="already prepared"):
        nyud.prepare(tmp_path / "raw")
    target = data_root / "nyud" / "train_depth.npy"
    data = bytearray(target.read_bytes())
    data[-1] ^= 1
    target.write_bytes(bytes(data))
    with pytest.raises(MissingDataError, match="corrupted"):
        nyud.load("train")
    nyud.prepare(tmp_path / "raw", force=True)
    assert nyud.load("train")[0].ids == SPLITS["train"]
    assert (data_root / "nyud" / MANIFEST_NAME).is_file()
    assert not [p for p in (data_root).iterdir() if p.name.startswith(".")]  # no staging folder left


def test_missing_cache_names_the_command(data_root: Path) -> None:
    with pytest.raises(MissingDataError, match="data prepare nyud --raw PATH"):
        nyud.load("train")


def _break(root: Path, how: str) -> Path:
    if how == "missing_depth":
        path = root / "depth" / "0004.npy"
        path.unlink()
    elif how == "bad_semseg":
        path = root / "segmentation" / "0002.png"
        Image.fromarray(np.full((12, 16), 41, dtype=np.uint8)).save(path)
    elif how == "bad_shape":
        path = root / "depth" / "0003.npy"
        np.save(path, np.ones((5, 5), dtype=np.float32))
    elif how == "bad_edge":
        path = root / "edge" / "0001.npy"
        np.save(path, np.full((12, 16), 0.5, dtype=np.float32))
    else:
        path = root / "images" / "0002.jpg"
        path.write_bytes(b"not a jpeg")
    return path


@pytest.mark.parametrize("how", ["missing_depth", "bad_semseg", "bad_shape", "bad_edge", "bad_image"])
def test_broken_tree_is_refused_in_one_line_naming_the_file(tmp_path: Path, data_root: Path, how: str) -> None:
    make_nyud_tree(tmp_path / "raw", "NYUD_MT")
    path = _break(tmp_path / "raw", how)
    with pytest.raises(UserInputError) as caught:
        nyud.prepare(tmp_path / "raw")
    message = str(caught.value)
    assert str(path) in message and "\n" not in message
    assert not (data_root / "nyud").exists()  # nothing half-written


def test_not_a_tree(tmp_path: Path, data_root: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserInputError, match="is not a NYUD tree"):
        nyud.prepare(tmp_path / "empty")


def test_cli_prepare(tmp_path: Path, data_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from mtlbench.cli.main import main

    make_nyud_tree(tmp_path / "raw", "NYUDv2")
    assert main(["data", "prepare", "nyud", "--raw", str(tmp_path / "raw")]) == 0
    assert "nyud (NYUDv2) prepared" in capsys.readouterr().out
    assert main(["data", "prepare", "nyud"]) != 0
    assert "needs --raw PATH" in capsys.readouterr().err

"""NYUv2 (Silberman et al., ECCV 2012) in the MTAN preprocessed release (Liu, Johns & Davison, CVPR 2019).

The release every MTL optimizer paper uses (MTAN, LibMTL, CAGrad, Nash-MTL, FAMO, 001) is a Dropbox folder
of ``.npy`` files, not downloadable here; users convert their copy with ``mtlbench data prepare nyuv2 --raw
PATH``. Layout (MTAN ``im2im_pred/create_dataset.py``; ../shared/REFERENCE-DATA.md section 1a)::

    PATH/train/{image,label,depth,normal}/{i}.npy    795 training images, i = 0..794
    PATH/val/{image,label,depth,normal}/{i}.npy      the official 654 *test* images

with ``image`` H x W x 3 RGB in [0, 1] (8-bit values / 255), ``label`` H x W in -1..12 (-1 unlabelled),
``depth`` H x W x 1 (0 = missing) and ``normal`` H x W x 3 (components in [-1, 1], all-zero = invalid),
H x W = 288 x 384. A split's length is the number of ``*.npy`` files in its ``image/`` folder.

Every file is checked (presence, shape, value range); the first bad one is named in a one-line error
and nothing is cached. What is cached (``data_root()/nyuv2/``, sha256 in ``manifest.json``, each file
written to a temporary name, fsynced and renamed):

- ``{train,test}_image.npy`` uint8 (N,H,W,3) = round(255 x) once x is checked to be k/255 (as MTAN's
  images are, lorenmt/mtan issue 50; should the first training image not be, every image is cached as
  float32 x: the k/255 form is an unverified fact, REFERENCE-DATA 1a);
- ``{train,test}_label.npy`` int8 (N,H,W); ``{train,test}_depth.npy`` float32 (N,H,W);
- ``{train,test}_normal.npy`` float32 (N,H,W,3).

``train`` is MTAN's ``train/`` (795), ``test`` is MTAN's ``val/`` (654). The validation split of 001
(LibMTL's ``examples/nyu/data_split.json`` at a6a84e4: 636 train / 159 val indices of the 795) ships
with mtlbench as ``nyuv2_libmtl_split.json``, an unchanged copy of that file.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from collections.abc import Callable, Mapping
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from mtlbench.data import register_dataset
from mtlbench.data.cache import check_files, dataset_dir, folder_size, locked, read_manifest, write_manifest
from mtlbench.errors import MissingDataError, UserInputError

NAME = "nyuv2"
CLASSES = 13
IGNORE = -1
#: the shape of the MTAN release (H, W)
MTAN_SIZE = (288, 384)
ARRAYS = ("image", "label", "depth", "normal")
#: MTAN folder -> cached split
SOURCE_SPLITS = {"train": "train", "val": "test"}
COUNTS = {"train": 795, "val": 654}
PREPARE_COMMAND = "mtlbench data prepare nyuv2 --raw PATH"
DOWNLOAD_URL = "https://www.dropbox.com/sh/86nssgwm6hm3vkb/AACrnUQ4GxpdrBbLjb6n-mWNa?dl=0"
SPLIT_FILE = "nyuv2_libmtl_split.json"
#: sha256 of LibMTL's data_split.json (a6a84e4), as recorded in ../shared/REFERENCE-DATA.md 1a
SPLIT_SHA256 = "fab3307e9c9bef1f338a96c3741c1b27111956dd9db6843627426a95bb5eb248"
#: class names (SceneNet/ankurhanda 13-class order shifted by -1; inferred, REFERENCE-DATA 1a caveat)
CLASS_NAMES = (
    "bed",
    "books",
    "ceiling",
    "chair",
    "floor",
    "furniture",
    "objects",
    "picture",
    "sofa",
    "table",
    "tv",
    "wall",
    "window",
)
#: largest |255 x - round(255 x)| accepted for an image value x (float32 storage rounds at ~1.5e-5)
IMAGE_TOLERANCE = 1e-3
#: slack on the [-1, 1] range of normal components
NORMAL_TOLERANCE = 1e-3

Progress = Callable[[str], None]


# ------------------------------------------------------------------------------------- LibMTL split


@cache
def libmtl_split() -> dict[str, tuple[int, ...]]:
    """LibMTL's 636/159 split of the 795 training indices (``train`` and ``val``, in the file's order)."""
    text = resources.files("mtlbench.data").joinpath(SPLIT_FILE).read_text(encoding="utf-8")
    data = json.loads(text)
    return {"train": tuple(int(i) for i in data["train"]), "val": tuple(int(i) for i in data["val"])}


# ------------------------------------------------------------------------------------- raw checking


def _listing(folder: Path, where: str) -> dict[int, Path]:
    if not folder.is_dir():
        raise UserInputError(f"NYUv2 raw data: {folder} is missing (expected {where})")
    files: dict[int, Path] = {}
    for path in folder.iterdir():
        match = re.fullmatch(r"(\d+)\.npy", path.name)
        if match is not None:
            files[int(match.group(1))] = path
    return files


def raw_files(root: Path | str) -> dict[str, dict[str, list[Path]]]:
    """``{train, val} -> array -> [path of image i]``; raises naming the first missing file or folder."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise UserInputError(f"NYUv2 raw path {root} is not a folder; it needs MTAN's train/ and val/")
    out: dict[str, dict[str, list[Path]]] = {}
    for split in SOURCE_SPLITS:
        images = _listing(root / split / "image", "MTAN's {train,val}/{image,label,depth,normal}/{i}.npy")
        n = len(images)
        if n == 0:
            raise UserInputError(f"NYUv2 raw data: {root / split / 'image'} holds no {{i}}.npy files")
        out[split] = {}
        for array in ARRAYS:
            present = images if array == "image" else _listing(root / split / array, f"{array} arrays of {split}")
            for index in range(n):
                if index not in present:
                    raise UserInputError(
                        f"NYUv2 raw data: {root / split / array / f'{index}.npy'} is missing "
                        f"({split}/image holds {n} files, numbered from 0)"
                    )
            extra = sorted(set(present) - set(range(n)))
            if extra:
                raise UserInputError(
                    f"NYUv2 raw data: {present[extra[0]]} is beyond the {n} images of {split}/image "
                    "(files must be numbered 0..N-1)"
                )
            out[split][array] = [present[index] for index in range(n)]
    return out


def _load(path: Path) -> np.ndarray:
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as error:
        raise UserInputError(f"NYUv2 raw data: {path} is not a readable .npy array ({error})") from None
    if not isinstance(array, np.ndarray) or not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise UserInputError(f"NYUv2 raw data: {path} does not hold a numeric array")
    return array


def eight_bit(image: np.ndarray) -> bool:
    """Whether every value x of an image in [0, 1] is k/255 (255 x within IMAGE_TOLERANCE of an integer)."""
    scaled = np.asarray(image, dtype=np.float64) * 255.0
    return bool(np.abs(scaled - np.rint(scaled)).max(initial=0.0) <= IMAGE_TOLERANCE)


def check_sample(
    paths: Mapping[str, Path], size: tuple[int, int] | None, *, uint8_images: bool = True
) -> dict[str, np.ndarray]:
    """Read and check one sample; return its cached arrays. ``size`` (H, W) is the expected size, if known;
    ``uint8_images``: images must be k/255 and are cached as uint8 k (else as float32)."""
    raw = {name: _load(paths[name]) for name in ARRAYS}
    image = raw["image"]
    if image.ndim != 3 or image.shape[2] != 3:
        raise UserInputError(f"NYUv2 raw data: {paths['image']} has shape {image.shape}; an image is H x W x 3")
    height, width = size if size is not None else image.shape[:2]
    expected = {
        "image": (height, width, 3),
        "label": (height, width),
        "depth": (height, width, 1),
        "normal": (height, width, 3),
    }
    for name in ARRAYS:
        array = raw[name]
        shape = expected[name]
        if name == "depth" and array.shape == (height, width):
            array = raw[name] = array[..., None]  # also accept depth without its channel axis
        if array.shape != shape:
            raise UserInputError(
                f"NYUv2 raw data: {paths[name]} has shape {array.shape}; expected {shape} "
                f"({'as the first image' if size is not None else 'as its image'})"
            )
        values = array.astype(np.float64)
        if not np.isfinite(values).all():
            raise UserInputError(f"NYUv2 raw data: {paths[name]} holds NaN or infinite values")
    image = raw["image"].astype(np.float64)
    if image.min() < 0.0 or image.max() > 1.0:
        raise UserInputError(
            f"NYUv2 raw data: {paths['image']} has values in [{image.min():g}, {image.max():g}]; images are in [0, 1]"
        )
    scaled = image * 255.0
    levels = np.rint(scaled)
    worst = float(np.abs(scaled - levels).max())
    if uint8_images and worst > IMAGE_TOLERANCE:
        raise UserInputError(
            f"NYUv2 raw data: {paths['image']} is not 8-bit values / 255 (255 x is {worst:.3g} from an integer), "
            "unlike the first training image"
        )
    label = raw["label"].astype(np.float64)
    if not (np.rint(label) == label).all() or label.min() < IGNORE or label.max() > CLASSES - 1:
        bad = label[(np.rint(label) != label) | (label < IGNORE) | (label > CLASSES - 1)][0]
        raise UserInputError(
            f"NYUv2 raw data: {paths['label']} holds the label {bad:g}; labels are integers -1..{CLASSES - 1}"
        )
    depth = raw["depth"].astype(np.float64)
    if depth.min() < 0.0:
        raise UserInputError(f"NYUv2 raw data: {paths['depth']} holds the negative depth {depth.min():g}")
    normal = raw["normal"].astype(np.float64)
    if np.abs(normal).max() > 1.0 + NORMAL_TOLERANCE:
        raise UserInputError(
            f"NYUv2 raw data: {paths['normal']} has a component {np.abs(normal).max():g} outside [-1, 1]"
        )
    return {
        "image": levels.astype(np.uint8) if uint8_images else raw["image"].astype(np.float32),
        "label": label.astype(np.int8),
        "depth": raw["depth"][..., 0].astype(np.float32),
        "normal": raw["normal"].astype(np.float32),
    }


# ---------------------------------------------------------------------------------------- the cache


def split_file(split: str, array: str) -> str:
    return f"{split}_{array}.npy"


def _dtypes(n: int, height: int, width: int, uint8_images: bool) -> dict[str, tuple[tuple[int, ...], Any]]:
    return {
        "image": ((n, height, width, 3), np.uint8 if uint8_images else np.float32),
        "label": ((n, height, width), np.int8),
        "depth": ((n, height, width), np.float32),
        "normal": ((n, height, width, 3), np.float32),
    }


class _Writer:
    """Temporary ``.npy`` memmaps of one split; ``commit`` fsyncs and renames them into place."""

    def __init__(self, folder: Path, split: str, n: int, height: int, width: int, uint8_images: bool) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder, self.split = folder, split
        self.temp: dict[str, Path] = {}
        self.arrays: dict[str, np.ndarray] = {}
        for name, (shape, dtype) in _dtypes(n, height, width, uint8_images).items():
            fd, temp = tempfile.mkstemp(prefix=f".{split_file(split, name)}.", suffix=".tmp", dir=folder)
            os.close(fd)
            self.temp[name] = Path(temp)
            self.arrays[name] = np.lib.format.open_memmap(temp, mode="w+", dtype=dtype, shape=shape)

    def commit(self) -> list[str]:
        names = []
        for name, array in self.arrays.items():
            array.flush()
            with open(self.temp[name], "rb+") as handle:
                os.fsync(handle.fileno())
            target = self.folder / split_file(self.split, name)
            os.replace(self.temp[name], target)
            names.append(target.name)
        self.arrays.clear()
        return names

    def abort(self) -> None:
        self.arrays.clear()
        for path in self.temp.values():
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


def cache_folder() -> Path:
    return dataset_dir(NAME)


def cached_names() -> list[str]:
    return [split_file(split, array) for split in SOURCE_SPLITS.values() for array in ARRAYS]


def is_prepared() -> bool:
    manifest = read_manifest(cache_folder())
    return all(name in manifest["files"] for name in cached_names())


def prepare(path: Path | str, *, force: bool = False, progress: Progress | None = None) -> str:
    """Check every file of the MTAN tree at ``path`` and cache it (see the module docstring)."""
    root = Path(path).expanduser()
    files = raw_files(root)
    folder = cache_folder()
    if not force and is_prepared():
        status = check_files(folder, cached_names())
        if all(state == "ok" for state in status.values()):
            return f"nyuv2 is already prepared in {folder} (use --force to redo)"
        # a file was altered or lost since: rebuild
    first_paths = {name: files["train"][name][0] for name in ARRAYS}
    first = check_sample(first_paths, None, uint8_images=False)
    height, width = first["image"].shape[:2]
    # MTAN's images are 8-bit values / 255 (lorenmt/mtan issue 50): cached as uint8 when the first one is
    uint8_images = eight_bit(first["image"])
    names: list[str] = []
    counts: dict[str, int] = {}
    writers: list[_Writer] = []
    with locked(folder):
        try:
            for source, split in SOURCE_SPLITS.items():
                n = len(files[source]["image"])
                counts[split] = n
                writer = _Writer(folder, split, n, height, width, uint8_images)
                writers.append(writer)
                for index in range(n):
                    paths = {name: files[source][name][index] for name in ARRAYS}
                    sample = check_sample(paths, (height, width), uint8_images=uint8_images)
                    for name, array in writer.arrays.items():
                        array[index] = sample[name]
                    if progress is not None and (index + 1) % 200 == 0:
                        progress(f"{source}: {index + 1}/{n}")
            for writer in writers:  # only once every file of both splits passed its checks
                names += writer.commit()
        except BaseException:
            for writer in writers:
                writer.abort()
            raise
        write_manifest(
            folder,
            names,
            {
                "source": "mtan",
                "raw_path": str(root.resolve()),
                "resolution": f"{width}x{height}",
                "counts": counts,
                "arrays": list(ARRAYS),
                "image_dtype": "uint8" if uint8_images else "float32",
                "splits": "train = MTAN train/, test = MTAN val/ (the official test images)",
            },
        )
    note = "" if (height, width) == MTAN_SIZE else f" (not MTAN's {MTAN_SIZE[1]}x{MTAN_SIZE[0]})"
    official = "" if counts == {"train": COUNTS["train"], "test": COUNTS["val"]} else " (not the official 795/654)"
    images = "" if uint8_images else " (images are not k/255: cached as float32)"
    return (
        f"nyuv2 prepared in {folder}: {counts['train']} train, {counts['test']} test images at "
        f"{width}x{height}{note}{official}{images}"
    )


def missing_message() -> str:
    return (
        "NYUv2 is not prepared; download MTAN's preprocessed NYUv2 (train/ and val/ .npy folders) from "
        f"{DOWNLOAD_URL}, then run `{PREPARE_COMMAND}`"
    )


def load(split: str, *, mmap: bool = True) -> dict[str, np.ndarray]:
    """The cached arrays of ``train`` (MTAN train/) or ``test`` (MTAN val/), memory-mapped read-only."""
    folder = cache_folder()
    return {
        name: np.load(folder / split_file(split, name), mmap_mode="r" if mmap else None, allow_pickle=False)
        for name in ARRAYS
    }


class NYUv2Source:
    """The ``nyuv2`` entry of ``mtlbench data``: the user's copy of MTAN's release, converted by ``prepare``."""

    name = NAME
    description = "NYUv2 (MTAN's preprocessed 288x384 release; convert your copy with `mtlbench data prepare nyuv2`)"

    def fetch(self, source: Path | None = None, *, force: bool = False) -> str:
        if source is None:
            raise MissingDataError(missing_message())
        return prepare(source, force=force)

    def info(self) -> dict[str, Any]:
        if not is_prepared():
            return {}
        folder = cache_folder()
        manifest = read_manifest(folder)
        return {
            "mtan": {
                "path": str(folder),
                "bytes": folder_size(folder),
                "resolution": manifest["meta"].get("resolution"),
                "counts": manifest["meta"].get("counts"),
                "sha256": manifest["files"],
            }
        }


SOURCE = register_dataset(NYUv2Source())

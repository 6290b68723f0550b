"""NYUD-v2 as MTI-Net / ATRC / InvPT prepare it (002's 4-task benchmark), and the ragged cache both of 002's
dense datasets use.

Two on-disk variants (../shared/REFERENCE-DATA.md section 1e), detected from the files:

- MTI-Net ``NYUD_MT`` (MTL-PyTorch ``data/nyud.py``): ``images/{id}.jpg``, ``segmentation/{id}.png``,
  ``depth/{id}.npy``, ``normals/{id}.npy`` (float vectors), ``edge/{id}.npy`` (binary);
- ATRC / InvPT ``NYUDv2`` (InvPT ``data/nyud.py``): ``images/{id}.png``, ``normals/{id}.png``
  (decoded 2 v / 255 - 1), ``edge/{id}.png`` (/255, binary); segmentation and depth as above.

Both list their splits in ``gt_sets/train.txt`` (795) and ``gt_sets/val.txt`` (654); the val list is the
test split (NYUD has no validation split; 002 reports the best checkpoint on it). Segmentation PNG values
0..40: 0 (background) becomes 255 = ignore and v becomes v - 1 (40 classes). Depth 0 = invalid.

Cache (``mtlbench data prepare nyud --raw PATH``): images and targets at their native size, concatenated
per split into flat ``.npy`` arrays with per-image shapes and offsets (``RaggedWriter``), every file
written atomically and listed with its sha256 in ``manifest.json`` (written last).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from mtlbench.data import register_dataset
from mtlbench.data.cache import (
    atomic_write_bytes,
    dataset_dir,
    folder_size,
    read_manifest,
    verify_files,
    write_manifest,
)
from mtlbench.errors import MissingDataError, UserInputError

NAME = "nyud"
PREPARE_COMMAND = "mtlbench data prepare nyud --raw PATH"
#: our split -> list file of both variants
SPLIT_LISTS = {"train": "train.txt", "test": "val.txt"}
IGNORE = 255
CLASSES = 40

Progress = Callable[[str], None]


class BadTreeError(UserInputError):
    """A raw dataset tree with a missing or malformed file (the message names the first one)."""


# ------------------------------------------------------------------------------------------ ragged cache

#: array name -> (dtype, channels)
RaggedSpec = Mapping[str, tuple[str, int]]


def ragged_files(split: str, arrays: Iterable[str]) -> list[str]:
    return [f"{split}_shapes.npy", f"{split}_ids.json", *(f"{split}_{name}.npy" for name in arrays)]


class RaggedWriter:
    """Writes one split: per array a flat ``.npy`` memmap (sum over images of H W channels), filled image by
    image; ``commit`` fsyncs and renames every file into place (readers never see partial files)."""

    def __init__(self, folder: Path, split: str, spec: RaggedSpec, ids: Sequence[str], shapes: np.ndarray) -> None:
        self.folder = folder
        self.split = split
        self.spec = dict(spec)
        self.ids = list(ids)
        self.shapes = np.asarray(shapes, dtype=np.int64).reshape(-1, 2)
        pixels = self.shapes[:, 0] * self.shapes[:, 1]
        self.offsets = np.concatenate([[0], np.cumsum(pixels)])
        folder.mkdir(parents=True, exist_ok=True)
        self.temp: dict[str, Path] = {}
        self.arrays: dict[str, np.ndarray] = {}
        for name, (dtype, channels) in self.spec.items():
            fd, temp_name = tempfile.mkstemp(prefix=f".{split}_{name}.", suffix=".tmp", dir=folder)
            os.close(fd)
            self.temp[name] = Path(temp_name)
            self.arrays[name] = np.lib.format.open_memmap(
                temp_name, mode="w+", dtype=np.dtype(dtype), shape=(int(self.offsets[-1]) * channels,)
            )

    def put(self, index: int, sample: Mapping[str, np.ndarray]) -> None:
        h, w = self.shapes[index]
        for name, (_, channels) in self.spec.items():
            value = np.asarray(sample[name])
            if value.size != h * w * channels:
                raise ValueError(
                    f"{name} of image {self.ids[index]} has {value.size} values, expected {h}x{w}x{channels}"
                )
            start, end = self.offsets[index] * channels, self.offsets[index + 1] * channels
            self.arrays[name][start:end] = value.reshape(-1)

    def commit(self) -> list[str]:
        names = []
        for name, array in self.arrays.items():
            array.flush()
            with open(self.temp[name], "rb+") as handle:
                os.fsync(handle.fileno())
            target = self.folder / f"{self.split}_{name}.npy"
            os.replace(self.temp[name], target)
            names.append(target.name)
        self.arrays.clear()
        shapes = self.folder / f"{self.split}_shapes.npy"
        from mtlbench.data.cache import atomic_save_npy

        atomic_save_npy(shapes, self.shapes)
        atomic_write_bytes(self.folder / f"{self.split}_ids.json", json.dumps(self.ids).encode())
        return [shapes.name, f"{self.split}_ids.json", *names]

    def abort(self) -> None:
        self.arrays.clear()
        for path in self.temp.values():
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


@dataclass
class RaggedSplit:
    """A cached split: ``get(name, i)`` returns image i's (H, W[, C]) array (memory-mapped). ``index`` maps
    positions to stored images (a subset shares the arrays)."""

    ids: list[str]
    shapes: np.ndarray
    offsets: np.ndarray
    arrays: dict[str, np.ndarray]
    channels: dict[str, int]
    index: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.ids)

    def get(self, name: str, position: int) -> np.ndarray:
        i = int(self.index[position]) if self.index is not None else int(position)
        c = self.channels[name]
        h, w = (int(v) for v in self.shapes[i])
        flat = self.arrays[name][self.offsets[i] * c : self.offsets[i + 1] * c]
        return np.asarray(flat).reshape((h, w, c) if c > 1 else (h, w))

    def subset(self, positions: Sequence[int]) -> RaggedSplit:
        """The images at ``positions``, in that order (the arrays are shared)."""
        chosen = np.asarray(list(positions), dtype=np.int64)
        base = self.index if self.index is not None else np.arange(len(self.ids))
        return dataclasses.replace(self, ids=[self.ids[k] for k in chosen], index=base[chosen])


def load_ragged(folder: Path, split: str, spec: RaggedSpec) -> RaggedSplit:
    shapes = np.load(folder / f"{split}_shapes.npy", allow_pickle=False)
    ids = json.loads((folder / f"{split}_ids.json").read_text())
    offsets = np.concatenate([[0], np.cumsum(shapes[:, 0] * shapes[:, 1])]).astype(np.int64)
    arrays = {name: np.load(folder / f"{split}_{name}.npy", mmap_mode="r", allow_pickle=False) for name in spec}
    return RaggedSplit(ids, shapes, offsets, arrays, {name: c for name, (_, c) in spec.items()})


def write_ragged_split(
    folder: Path,
    split: str,
    spec: RaggedSpec,
    ids: Sequence[str],
    shapes: np.ndarray,
    read: Callable[[str], Mapping[str, np.ndarray]],
    progress: Progress | None = None,
) -> list[str]:
    """Fill one split image by image with ``read(id)``; on any error nothing of the split is left behind."""
    writer = RaggedWriter(folder, split, spec, ids, shapes)
    try:
        for index, image_id in enumerate(ids):
            writer.put(index, read(image_id))
            if progress and (index + 1) % 200 == 0:
                progress(f"{split}: {index + 1}/{len(ids)} images")
        return writer.commit()
    except BaseException:
        writer.abort()
        raise


def prepare_into(
    name: str,
    build: Callable[[Path], tuple[list[str], dict[str, Any]]],
    *,
    force: bool,
) -> Path:
    """Build a cache folder in a temporary sibling, write its manifest, then swap it into place."""
    target = dataset_dir(name)
    if read_manifest(target)["files"] and not force:
        raise UserInputError(f"{name} is already prepared in {target}; pass --force to rebuild it")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=target.parent))
    try:
        files, meta = build(staging)
        write_manifest(staging, files, meta)
        old = None
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{name}.old.", dir=target.parent))
            os.replace(target, old / "data")
        os.replace(staging, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


# ------------------------------------------------------------------------------------------ raw reading


def read_list(path: Path) -> list[str]:
    if not path.is_file():
        raise BadTreeError(f"missing split list {path}")
    ids = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if not ids:
        raise BadTreeError(f"split list {path} is empty")
    return ids


def image_size(path: Path) -> tuple[int, int]:
    """(H, W) of an image file without decoding it."""
    if not path.is_file():
        raise BadTreeError(f"missing file {path}")
    try:
        with Image.open(path) as image:
            width, height = image.size
    except (OSError, ValueError) as error:
        raise BadTreeError(f"unreadable image {path}: {error}") from None
    return height, width


def read_png(path: Path) -> np.ndarray:
    if not path.is_file():
        raise BadTreeError(f"missing file {path}")
    try:
        with Image.open(path) as image:
            return np.array(image)
    except (OSError, ValueError) as error:
        raise BadTreeError(f"unreadable image {path}: {error}") from None


def read_rgb(path: Path) -> np.ndarray:
    if not path.is_file():
        raise BadTreeError(f"missing file {path}")
    try:
        with Image.open(path) as image:
            return np.array(image.convert("RGB"))
    except (OSError, ValueError) as error:
        raise BadTreeError(f"unreadable image {path}: {error}") from None


def read_npy(path: Path) -> np.ndarray:
    if not path.is_file():
        raise BadTreeError(f"missing file {path}")
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise BadTreeError(f"unreadable array {path}: {error}") from None


def expect_shape(path: Path, array: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    squeezed = array.reshape(array.shape[:2]) if array.ndim == 3 and array.shape[2] == 1 and len(shape) == 2 else array
    if squeezed.shape != shape:
        raise BadTreeError(f"{path} has shape {array.shape}, expected {shape} (the image's size)")
    return squeezed


# ------------------------------------------------------------------------------------------ NYUD


@dataclass(frozen=True)
class NyudLayout:
    root: Path
    variant: str  # "NYUD_MT" or "NYUDv2"

    @property
    def image_ext(self) -> str:
        return ".jpg" if self.variant == "NYUD_MT" else ".png"

    @property
    def target_ext(self) -> str:  # normals and edges
        return ".npy" if self.variant == "NYUD_MT" else ".png"


FOLDERS = ("images", "segmentation", "depth", "normals", "edge", "gt_sets")


def locate(root: Path | str) -> NyudLayout:
    """Find the NYUD tree at ``root`` (or one folder below) and tell its variant."""
    root = Path(root).expanduser()
    candidates = [root, *(sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else [])]
    for folder in candidates:
        if (folder / "gt_sets").is_dir() and (folder / "images").is_dir():
            for name in FOLDERS:
                if not (folder / name).is_dir():
                    raise BadTreeError(f"missing folder {folder / name} (NYUD needs {', '.join(FOLDERS)})")
            first = read_list(folder / "gt_sets" / SPLIT_LISTS["train"])[0]
            if (folder / "images" / f"{first}.jpg").is_file():
                return NyudLayout(folder, "NYUD_MT")
            if (folder / "images" / f"{first}.png").is_file():
                return NyudLayout(folder, "NYUDv2")
            raise BadTreeError(f"missing file {folder / 'images' / first}.jpg (or .png)")
    raise BadTreeError(
        f"{root} is not a NYUD tree: expected {', '.join(FOLDERS)} (MTI-Net NYUD_MT or ATRC/InvPT NYUDv2)"
    )


def nyud_spec(variant: str) -> dict[str, tuple[str, int]]:
    normals = ("float32", 3) if variant == "NYUD_MT" else ("uint8", 3)
    return {
        "image": ("uint8", 3),
        "semseg": ("uint8", 1),
        "depth": ("float32", 1),
        "normals": normals,
        "edge": ("uint8", 1),
    }


def semseg_from_png(path: Path, values: np.ndarray) -> np.ndarray:
    """NYU 0..40 -> 0 (background) = 255 ignore, v -> v - 1 (MTL-PyTorch ``_load_semseg``)."""
    if values.ndim != 2 or (values.size and int(values.max()) > CLASSES):
        raise BadTreeError(f"{path}: segmentation values must be 0..{CLASSES} in a one-channel PNG")
    out = values.astype(np.int64) - 1
    out[values == 0] = IGNORE
    return out.astype(np.uint8)


def binary_edges(path: Path, values: np.ndarray) -> np.ndarray:
    unique = np.unique(values)
    if not np.isin(unique, (0, 1)).all():
        raise BadTreeError(f"{path}: edge map must be binary (found values {unique[:5].tolist()})")
    return values.astype(np.uint8)


def read_nyud_sample(layout: NyudLayout, image_id: str, shape: tuple[int, int]) -> dict[str, np.ndarray]:
    root = layout.root
    image = read_rgb(root / "images" / f"{image_id}{layout.image_ext}")
    expect_shape(root / "images" / f"{image_id}{layout.image_ext}", image, (*shape, 3))
    path = root / "segmentation" / f"{image_id}.png"
    semseg = semseg_from_png(path, expect_shape(path, read_png(path), shape))
    path = root / "depth" / f"{image_id}.npy"
    depth = expect_shape(path, read_npy(path), shape).astype(np.float32)
    if not np.isfinite(depth).all() or (depth < 0).any():
        raise BadTreeError(f"{path}: depth must be finite and >= 0 (0 = invalid)")
    path = root / "normals" / f"{image_id}{layout.target_ext}"
    if layout.variant == "NYUD_MT":
        normals = expect_shape(path, read_npy(path), (*shape, 3)).astype(np.float32)
        if not np.isfinite(normals).all():
            raise BadTreeError(f"{path}: normals must be finite")
    else:
        normals = expect_shape(path, read_png(path), (*shape, 3)).astype(np.uint8)
    path = root / "edge" / f"{image_id}{layout.target_ext}"
    if layout.variant == "NYUD_MT":
        edge = binary_edges(path, expect_shape(path, read_npy(path), shape))
    else:
        raw = expect_shape(path, read_png(path), shape)
        if not np.isin(np.unique(raw), (0, 255)).all():
            raise BadTreeError(f"{path}: edge PNG must hold 0 and 255 only")
        edge = (raw // 255).astype(np.uint8)
    return {"image": image, "semseg": semseg, "depth": depth, "normals": normals, "edge": edge}


def decode_normals(values: np.ndarray) -> np.ndarray:
    """Stored normals -> float vectors: uint8 PNG values decode as 2 v / 255 - 1 (InvPT ``_load_normals``)."""
    if values.dtype == np.uint8:
        return 2.0 * values.astype(np.float32) / 255.0 - 1.0
    return values.astype(np.float32)


def scan(layout_root: Path, ids: Sequence[str], path_of: Callable[[str], Path]) -> np.ndarray:
    """Check every image exists and read its size (the first bad file raises)."""
    return np.array([image_size(path_of(i)) for i in ids], dtype=np.int64).reshape(-1, 2)


def prepare(raw: Path | str, *, force: bool = False, limit: int | None = None, progress: Progress | None = None) -> str:
    """Validate a NYUD tree and cache it (``mtlbench data prepare nyud --raw PATH``)."""
    layout = locate(raw)
    spec = nyud_spec(layout.variant)
    lists = {split: read_list(layout.root / "gt_sets" / name) for split, name in SPLIT_LISTS.items()}
    if limit:
        lists = {split: ids[:limit] for split, ids in lists.items()}
    shapes = {
        split: scan(layout.root, ids, lambda i: layout.root / "images" / f"{i}{layout.image_ext}")
        for split, ids in lists.items()
    }
    for split, ids in lists.items():  # every companion exists before anything is written
        for image_id in ids:
            for folder, ext in (
                ("segmentation", ".png"),
                ("depth", ".npy"),
                ("normals", layout.target_ext),
                ("edge", layout.target_ext),
            ):
                if not (layout.root / folder / f"{image_id}{ext}").is_file():
                    raise BadTreeError(f"missing file {layout.root / folder / image_id}{ext} (listed in {split})")

    def build(folder: Path) -> tuple[list[str], dict[str, Any]]:
        files: list[str] = []
        for split, ids in lists.items():
            files += write_ragged_split(
                folder,
                split,
                spec,
                ids,
                shapes[split],
                lambda i, s=split: read_nyud_sample(layout, i, _shape(s, i)),
                progress,
            )
        meta = {"variant": layout.variant, "source": str(layout.root), "counts": {s: len(v) for s, v in lists.items()}}
        return files, meta

    index = {split: {image_id: k for k, image_id in enumerate(ids)} for split, ids in lists.items()}

    def _shape(split: str, image_id: str) -> tuple[int, int]:
        h, w = shapes[split][index[split][image_id]]
        return int(h), int(w)

    target = prepare_into(NAME, build, force=force)
    counts = ", ".join(f"{len(ids)} {split}" for split, ids in lists.items())
    return f"nyud ({layout.variant}) prepared in {target}: {counts} images"


def is_prepared() -> bool:
    return bool(read_manifest(dataset_dir(NAME))["files"])


def load(split: str) -> tuple[RaggedSplit, dict[str, str]]:
    """A cached split, checked against the manifest; and the checksums of the files read."""
    folder = dataset_dir(NAME)
    manifest = read_manifest(folder)
    if not manifest["files"]:
        raise MissingDataError(
            f"NYUD-v2 is not prepared in {folder}; download MTI-Net's NYUD_MT or ATRC/InvPT's NYUDv2 yourself, "
            f"then run `{PREPARE_COMMAND}`"
        )
    spec = nyud_spec(manifest["meta"].get("variant", "NYUD_MT"))
    files = verify_files(folder, ragged_files(split, spec), dataset=NAME, command=f"{PREPARE_COMMAND} --force")
    return load_ragged(folder, split, spec), {f"{NAME}/{k}": v for k, v in files.items()}


class NyudSource:
    """The ``nyud`` entry of ``mtlbench data``: converted from the user's copy with ``data prepare``."""

    name = NAME
    description = "NYUD-v2 (MTI-Net NYUD_MT or ATRC/InvPT NYUDv2; convert your copy with `mtlbench data prepare nyud`)"

    def fetch(self, source: Path | None = None, *, force: bool = False) -> str:
        if source is None:
            raise MissingDataError(f"NYUD-v2 cannot be downloaded by mtlbench; run `{PREPARE_COMMAND}` on your copy")
        return prepare(source, force=force)

    def info(self) -> dict[str, Any]:
        folder = dataset_dir(NAME)
        manifest = read_manifest(folder)
        if not manifest["files"]:
            return {}
        return {"path": str(folder), "bytes": folder_size(folder), **manifest["meta"], "sha256": manifest["files"]}


SOURCE = register_dataset(NyudSource())

"""CelebA (Liu et al. 2015): the official release converted into a compact, checksummed cache.

``mtlbench data prepare celeba --raw PATH`` reads a user's copy (the images cannot be downloaded
by mtlbench: Google Drive, non-commercial licence). Accepted layouts (``../shared/REFERENCE-DATA.md``
section 3):

- the official folders: ``Img/img_align_celeba/`` (JPG, 178x218) or ``Img/img_align_celeba_png/``
  (the PNG variant MGDA-UB and 003 used), ``Anno/list_attr_celeba.txt``,
  ``Eval/list_eval_partition.txt``;
- torchvision's flat ``celeba/`` folder (``img_align_celeba/`` and the two text files side by side),
  also with Kaggle's doubled ``img_align_celeba/img_align_celeba/``.

``list_attr_celeba.txt``: line 1 the image count, line 2 the 40 attribute names, then one line per
image, ``NAME v_1 ... v_40`` with v in {-1, 1} (mapped to {0, 1}, as 003's ``celeba_loader.py``).
``list_eval_partition.txt``: ``NAME s`` with s = 0 train, 1 val, 2 test. Both are checked strictly
(one-line errors naming the file, line and value); every image listed must exist and decode.

Preprocessing (003's and MGDA-UB's ``transform_img``): RGB -> BGR, resize to 64x64 with nearest
neighbour sampling, subtract the mean [73.16, 82.91, 72.39] (in BGR channel order), divide by 255,
CHW. The cache keeps the 64x64 BGR images as uint8 (N, 3, 64, 64) and the attributes as int8
(N, 40) per split; the mean and the division are applied per batch (:func:`normalize`), so the
cache is 12 KiB per image (2.5 GB for the 202,599 images). Files are written atomically and listed
with their sha256 in ``manifest.json`` (written last: a cache without one is never used).
"""

from __future__ import annotations

import contextlib
import os
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from mtlbench.data import register_dataset
from mtlbench.data.cache import (
    MANIFEST_NAME,
    atomic_save_npy,
    dataset_dir,
    folder_size,
    load_npy,
    locked,
    read_manifest,
    verify_files,
    write_manifest,
)
from mtlbench.errors import MissingDataError, UserInputError

NAME = "celeba"
SIZE = 64
SPLITS = ("train", "val", "test")
PARTITION_CODES = {"0": "train", "1": "val", "2": "test"}
#: the official counts (001 section A3.1; torchvision's documentation)
OFFICIAL_COUNTS = {"train": 162_770, "val": 19_867, "test": 19_962}
#: mean subtracted from the BGR image (MGDA-UB's and 003's ``celeba_loader.py``)
MEAN_BGR = (73.15835921, 82.90891754, 72.39239876)
ATTRIBUTES = (
    "5_o_Clock_Shadow",
    "Arched_Eyebrows",
    "Attractive",
    "Bags_Under_Eyes",
    "Bald",
    "Bangs",
    "Big_Lips",
    "Big_Nose",
    "Black_Hair",
    "Blond_Hair",
    "Blurry",
    "Brown_Hair",
    "Bushy_Eyebrows",
    "Chubby",
    "Double_Chin",
    "Eyeglasses",
    "Goatee",
    "Gray_Hair",
    "Heavy_Makeup",
    "High_Cheekbones",
    "Male",
    "Mouth_Slightly_Open",
    "Mustache",
    "Narrow_Eyes",
    "No_Beard",
    "Oval_Face",
    "Pale_Skin",
    "Pointy_Nose",
    "Receding_Hairline",
    "Rosy_Cheeks",
    "Sideburns",
    "Smiling",
    "Straight_Hair",
    "Wavy_Hair",
    "Wearing_Earrings",
    "Wearing_Hat",
    "Wearing_Lipstick",
    "Wearing_Necklace",
    "Wearing_Necktie",
    "Young",
)
IMAGE_FOLDERS = {"jpg": "img_align_celeba", "png": "img_align_celeba_png"}
PREPARE_COMMAND = "mtlbench data prepare celeba --raw PATH"
Progress = Callable[[str], None]


def split_file(split: str, array: str) -> str:
    return f"{split}_{array}.npy"


CACHE_FILES = tuple(split_file(s, a) for s in SPLITS for a in ("images", "attributes", "names"))


# ------------------------------------------------------------------------------------ the raw tree


@dataclass(frozen=True)
class RawLayout:
    """Where the parts of a user's CelebA copy are."""

    images: Path
    variant: str  # 'jpg' or 'png'
    attributes: Path
    partition: Path


def _first_existing(candidates: Sequence[Path]) -> Path | None:
    return next((path for path in candidates if path.exists()), None)


def locate_raw(root: Path | str) -> RawLayout:
    """Find the image folder and the two text files under ``root`` (official or torchvision layout)."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise UserInputError(f"celeba: --raw {root} is not a folder")
    bases = [root, root / "celeba", root / "CelebA"]
    images, variant = None, ""
    for base in bases:
        for kind in ("png", "jpg"):  # the PNG variant first: it is what 003 and MGDA-UB used
            folder = IMAGE_FOLDERS[kind]
            # Kaggle's copy doubles the folder; official: Img/<folder>; torchvision: <folder> beside the lists
            candidates = [base / folder / folder, base / "Img" / folder, base / folder]
            found = next((path for path in candidates if path.is_dir()), None)
            if found is not None:
                images, variant = found, kind
                break
        if images is not None:
            break
    attributes = _first_existing([b / sub / "list_attr_celeba.txt" for b in bases for sub in ("Anno", ".")])
    partition = _first_existing([b / sub / "list_eval_partition.txt" for b in bases for sub in ("Eval", ".")])
    missing = [
        name
        for name, value in (
            ("Img/img_align_celeba/ (or img_align_celeba_png/)", images),
            ("Anno/list_attr_celeba.txt", attributes),
            ("Eval/list_eval_partition.txt", partition),
        )
        if value is None
    ]
    if missing:
        raise UserInputError(f"celeba: {root} is not a CelebA release: {missing[0]} not found")
    assert images is not None and attributes is not None and partition is not None
    return RawLayout(images, variant, attributes, partition)


def _lines(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise UserInputError(f"celeba: {path} is not a text file") from None
    return text.splitlines()


def parse_attributes(path: Path | str) -> tuple[list[str], np.ndarray]:
    """Image names and the (N, 40) int8 attributes in {0, 1} of ``list_attr_celeba.txt`` (checked strictly)."""
    path = Path(path)
    lines = _lines(path)
    if len(lines) < 2:
        raise UserInputError(f"celeba: {path} is truncated: it needs a count line and the attribute names")
    try:
        count = int(lines[0].strip())
    except ValueError:
        raise UserInputError(f"celeba: {path} line 1 should be the image count, not {lines[0].strip()!r}") from None
    header = lines[1].split()
    if tuple(header) != ATTRIBUTES:
        bad = next((i for i, (a, b) in enumerate(zip(header, ATTRIBUTES, strict=False)) if a != b), None)
        if bad is None:
            detail = f"{len(header)} names instead of {len(ATTRIBUTES)}"
        else:
            detail = f"attribute {bad + 1} is {header[bad]!r}, expected {ATTRIBUTES[bad]!r}"
        raise UserInputError(f"celeba: {path} line 2 is not the 40 attribute names: {detail}")
    rows = [line for line in lines[2:] if line.strip()]
    if len(rows) != count:
        raise UserInputError(f"celeba: {path} announces {count} images but lists {len(rows)}")
    names: list[str] = []
    values = np.empty((count, len(ATTRIBUTES)), dtype=np.int8)
    for index, line in enumerate(rows):
        fields = line.split()
        number = index + 3
        if len(fields) != len(ATTRIBUTES) + 1:
            raise UserInputError(
                f"celeba: {path} line {number} has {len(fields) - 1} values instead of {len(ATTRIBUTES)}"
            )
        bad = next((v for v in fields[1:] if v not in ("1", "-1")), None)
        if bad is not None:
            raise UserInputError(f"celeba: {path} line {number} has the value {bad!r}; attributes are -1 or 1")
        names.append(fields[0])
        values[index] = [1 if v == "1" else 0 for v in fields[1:]]
    if len(set(names)) != len(names):
        twice = next(name for name, times in Counter(names).items() if times > 1)
        raise UserInputError(f"celeba: {path} lists {twice} twice")
    return names, values


def parse_partition(path: Path | str) -> dict[str, str]:
    """``{image name: split}`` from ``list_eval_partition.txt`` (0 train, 1 val, 2 test)."""
    path = Path(path)
    partition: dict[str, str] = {}
    for number, line in enumerate(_lines(path), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2 or fields[1] not in PARTITION_CODES:
            raise UserInputError(
                f"celeba: {path} line {number} is {line.strip()!r}; expected 'NAME 0|1|2' (train, val, test)"
            )
        if fields[0] in partition:
            raise UserInputError(f"celeba: {path} lists {fields[0]} twice")
        partition[fields[0]] = PARTITION_CODES[fields[1]]
    return partition


def image_path(layout: RawLayout, name: str) -> Path:
    """The file of image ``name`` (the lists say ``000001.jpg``; the PNG variant has ``000001.png``)."""
    return layout.images / (Path(name).stem + ".png" if layout.variant == "png" else name)


# ------------------------------------------------------------------------------------ preprocessing


def nearest_indices(source: int, target: int) -> np.ndarray:
    """Source index sampled by target pixel i: floor((i + 0.5) * source / target), PIL's NEAREST."""
    return np.minimum(((np.arange(target) + 0.5) * source / target).astype(np.int64), source - 1)


def preprocess(rgb: np.ndarray, size: int = SIZE) -> np.ndarray:
    """An (H, W, 3) uint8 RGB image -> the cached (3, size, size) uint8 BGR image (nearest resize)."""
    rows = nearest_indices(rgb.shape[0], size)
    cols = nearest_indices(rgb.shape[1], size)
    small = rgb[rows[:, None], cols[None, :], :]
    return np.ascontiguousarray(small[:, :, ::-1].transpose(2, 0, 1))


def normalize(images: Tensor) -> Tensor:
    """Cached uint8 BGR images (B, 3, S, S) -> the network input: (x - mean_BGR) / 255, float32."""
    mean = torch.tensor(MEAN_BGR, dtype=torch.float32).view(1, 3, 1, 1)
    return (images.float() - mean) / 255.0


def _decode(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            rgb = np.asarray(image.convert("RGB"), dtype=np.uint8)
    except (OSError, UnidentifiedImageError) as error:
        raise UserInputError(f"celeba: image {path} cannot be decoded ({error})") from None
    return preprocess(rgb)


def _decode_many(paths: list[Path]) -> np.ndarray:
    return np.stack([_decode(path) for path in paths]) if paths else np.zeros((0, 3, SIZE, SIZE), np.uint8)


# ------------------------------------------------------------------------------------------ prepare


def cache_folder() -> Path:
    return dataset_dir(NAME)


def _write_images(target: Path, paths: list[Path], workers: int, progress: Progress | None) -> None:
    """Decode ``paths`` into an (N, 3, 64, 64) uint8 .npy written atomically (a memmap, then a rename)."""
    temp = target.with_name(f".{target.name}.tmp")
    array = np.lib.format.open_memmap(temp, mode="w+", dtype=np.uint8, shape=(len(paths), 3, SIZE, SIZE))
    chunk = 512
    chunks = [paths[i : i + chunk] for i in range(0, len(paths), chunk)]
    try:
        if workers > 1 and len(chunks) > 1:
            with ProcessPoolExecutor(workers) as pool:
                decoded = pool.map(_decode_many, chunks)
                for index, block in enumerate(decoded):
                    array[index * chunk : index * chunk + len(block)] = block
                    if progress and index % 20 == 19:
                        progress(f"celeba: {target.name}: {min((index + 1) * chunk, len(paths))}/{len(paths)}")
        else:
            for index, part in enumerate(chunks):
                array[index * chunk : index * chunk + len(part)] = _decode_many(part)
        array.flush()
        del array
        with open(temp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(temp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise


def prepare(
    raw: Path | str,
    *,
    force: bool = False,
    workers: int | None = None,
    limit: int | None = None,
    progress: Progress | None = None,
) -> str:
    """Convert the release under ``raw`` into the cache; return a one-line summary."""
    layout = locate_raw(raw)
    names, attributes = parse_attributes(layout.attributes)
    partition = parse_partition(layout.partition)
    listed = set(partition)
    absent = next((name for name in names if name not in listed), None)
    if absent is not None:
        raise UserInputError(f"celeba: {absent} has attributes but no split in {layout.partition}")
    extra = next((name for name in partition if name not in set(names)), None)
    if extra is not None:
        raise UserInputError(f"celeba: {extra} has a split in {layout.partition} but no attributes")
    row = {name: index for index, name in enumerate(names)}
    members = {split: [n for n in names if partition[n] == split] for split in SPLITS}
    if limit is not None:
        members = {split: chosen[:limit] for split, chosen in members.items()}
    for split in SPLITS:
        missing = next((n for n in members[split] if not image_path(layout, n).is_file()), None)
        if missing is not None:
            raise UserInputError(f"celeba: image {image_path(layout, missing)} is missing (the tree is incomplete)")
    folder = cache_folder()
    manifest = read_manifest(folder)
    source = str(Path(raw).expanduser().resolve())
    meta = manifest["meta"]
    if not force and manifest["files"] and meta.get("source") == source and meta.get("limit") == limit:
        return f"celeba already prepared in {folder} (use --force to rebuild)"
    workers = workers or min(8, os.cpu_count() or 1)
    with locked(folder):
        with contextlib.suppress(FileNotFoundError):
            (folder / MANIFEST_NAME).unlink()  # the old cache is invalid from here until the new manifest
        for split in SPLITS:
            chosen = members[split]
            if progress:
                progress(f"celeba: decoding {len(chosen)} {split} images ({layout.variant})")
            _write_images(
                folder / split_file(split, "images"), [image_path(layout, n) for n in chosen], workers, progress
            )
            index = np.array([row[n] for n in chosen], dtype=np.int64)
            atomic_save_npy(folder / split_file(split, "attributes"), attributes[index])
            atomic_save_npy(folder / split_file(split, "names"), np.array(chosen, dtype="S"))
        counts = {split: len(members[split]) for split in SPLITS}
        write_manifest(
            folder,
            CACHE_FILES,
            {
                "source": source,
                "variant": layout.variant,
                "image_folder": str(layout.images),
                "attributes": list(ATTRIBUTES),
                "counts": counts,
                "official_counts": counts == OFFICIAL_COUNTS,
                "limit": limit,
                "size": SIZE,
                "preprocessing": "RGB->BGR, 64x64 nearest, uint8 CHW; (x - MEAN_BGR) / 255 at batching",
                "mean_bgr": list(MEAN_BGR),
            },
        )
    total = sum(counts.values())
    return (
        f"celeba prepared in {folder}: {total} {layout.variant.upper()} images "
        f"(train {counts['train']}, val {counts['val']}, test {counts['test']}), 40 attributes"
    )


# --------------------------------------------------------------------------------------------- load


@dataclass
class CelebASplit:
    images: np.ndarray  # (N, 3, 64, 64) uint8 BGR, memory-mapped
    attributes: np.ndarray  # (N, 40) int8 in {0, 1}
    names: np.ndarray  # (N,) bytes


@dataclass
class CelebAData:
    splits: dict[str, CelebASplit]
    checksums: dict[str, str]
    meta: dict[str, Any]


def missing_message() -> str:
    return (
        "CelebA is not prepared; download the aligned images, list_attr_celeba.txt and list_eval_partition.txt "
        f"from mmlab.ie.cuhk.edu.hk/projects/CelebA.html yourself, then run `{PREPARE_COMMAND}`"
    )


def load_celeba() -> CelebAData:
    """The cached splits (images memory-mapped), after checking every file against the manifest."""
    folder = cache_folder()
    manifest = read_manifest(folder)
    if not manifest["files"]:
        raise MissingDataError(missing_message())
    checksums = verify_files(folder, CACHE_FILES, dataset="CelebA", command=PREPARE_COMMAND)
    splits = {}
    for split in SPLITS:
        images = np.load(folder / split_file(split, "images"), mmap_mode="r", allow_pickle=False)
        attributes = load_npy(folder / split_file(split, "attributes"))
        names = load_npy(folder / split_file(split, "names"))
        splits[split] = CelebASplit(images, attributes, names)
    return CelebAData(splits, {f"celeba/{name}": sha for name, sha in checksums.items()}, dict(manifest["meta"]))


class CelebASource:
    """The ``celeba`` entry of ``mtlbench data``: the user's copy, converted with ``data prepare``."""

    name = NAME
    description = "CelebA: 202,599 faces, 40 binary attributes (convert your copy with `mtlbench data prepare celeba`)"

    def fetch(self, source: Path | None = None, *, force: bool = False) -> str:
        if source is None:
            raise MissingDataError(missing_message())
        return prepare(source, force=force)

    def info(self) -> dict[str, Any]:
        folder = cache_folder()
        manifest = read_manifest(folder)
        if not manifest["files"]:
            return {}
        meta = manifest["meta"]
        return {
            "path": str(folder),
            "bytes": folder_size(folder),
            "source": meta.get("source"),
            "variant": meta.get("variant"),
            "counts": meta.get("counts"),
            "sha256": manifest["files"],
        }


SOURCE = register_dataset(CelebASource())

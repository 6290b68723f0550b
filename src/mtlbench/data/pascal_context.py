"""PASCAL-Context multi-task (PASCAL_MT of ASTMT / MTI-Net, PASCALContext of InvPT; 002's 5-task benchmark).

Layout and targets (../shared/REFERENCE-DATA.md section 2; MTL-PyTorch ``data/pascal_context.py``):

- ``JPEGImages/{id}.jpg``; splits ``ImageSets/Context/train.txt`` (4,998) and ``val.txt`` (5,105, our test
  split: there is no validation split and 002 reports the best checkpoint on it);
- ``S``: ``semseg/VOC12/{id}.png``, else ``semseg/pascal-context/{id}.png``; 21 classes, 255 = ignore;
- ``P``: ``human_parts/{id}.mat``, PASCAL-Part's nested ``anno`` struct (``objects`` with ``class``,
  ``class_ind``, ``mask``, ``parts`` of ``part_name``, ``mask``). Parts of person objects (class 15) are
  painted with the 6-part mapping (head parts 1, neck/torso 2, upper arms 3, lower arms/hands 4, upper
  legs 5, lower legs/feet 6; background 0); an image whose map stays all 0 (no person, or a person without
  parts) gets an all-255 target, i.e. is ignored (``AddIgnoreRegions``);
- ``Sal``: ``sal_distill/{id}.png`` / 255 > 0.5;
- ``N``: ``normals_distill/{id}.png`` decoded 2 v / 255 - 1, kept only where the context label
  (``pascal-context/trainval/{id}.mat``, ``LabelMap``) is one of the classes that both
  ``db_info/nyu_classes.json`` and ``context_classes.json`` name (``unknown`` excluded) plus ``tvmonitor``
  (``NORMALS_VALID_CLASSES`` below, derived from those two files); elsewhere 0 = ignored;
- ``E``: the thinned non-zero 4-neighbour Laplacian of ``LabelMap`` (OpenCV ``Laplacian`` with ksize 1 and
  reflect-101 borders, then ``skimage.morphology.thin``; our :func:`~mtlbench.problems.edge_eval.thin`).

Cached with the ragged layout of :mod:`mtlbench.data.nyud` (native sizes, up to 500x500).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import scipy.io

from mtlbench.data import register_dataset
from mtlbench.data.cache import dataset_dir, folder_size, read_manifest, verify_files
from mtlbench.data.nyud import (
    BadTreeError,
    Progress,
    RaggedSplit,
    expect_shape,
    image_size,
    load_ragged,
    prepare_into,
    ragged_files,
    read_list,
    read_png,
    read_rgb,
    write_ragged_split,
)
from mtlbench.errors import MissingDataError

NAME = "pascal_context"
PREPARE_COMMAND = "mtlbench data prepare pascal_context --raw PATH"
SPLIT_LISTS = {"train": "train.txt", "test": "val.txt"}
IGNORE = 255
PERSON = 15
SEMSEG_CLASSES = 21
PART_CLASSES = 7

#: PASCAL-Part person part names -> the 6-part label (MTL-PyTorch ``HUMAN_PART[6]``)
HUMAN_PARTS_6 = {
    **dict.fromkeys(("hair", "head", "lear", "lebrow", "leye", "mouth", "nose", "rear", "rebrow", "reye"), 1),
    "neck": 2,
    "torso": 2,
    "luarm": 3,
    "ruarm": 3,
    **dict.fromkeys(("lhand", "llarm", "rhand", "rlarm"), 4),
    "luleg": 5,
    "ruleg": 5,
    **dict.fromkeys(("lfoot", "llleg", "rfoot", "rlleg"), 6),
}

#: context class ids (1..459) whose names occur in both of MTI-Net's db_info class lists, plus tvmonitor
NORMALS_VALID_CLASSES = frozenset(
    {
        3,
        4,
        6,
        9,
        10,
        11,
        13,
        15,
        17,
        18,
        22,
        23,
        29,
        30,
        33,
        34,
        36,
        37,
        38,
        39,
        41,
        43,
        46,
        49,
        50,
        51,
        53,
        55,
        56,
        59,
        61,
        62,
        65,
        66,
        68,
        69,
        72,
        73,
        78,
        83,
        84,
        85,
        87,
        88,
        95,
        96,
        101,
        104,
        105,
        107,
        111,
        113,
        115,
        122,
        124,
        135,
        141,
        142,
        143,
        146,
        150,
        154,
        157,
        158,
        159,
        165,
        172,
        174,
        181,
        183,
        184,
        191,
        193,
        195,
        197,
        199,
        202,
        213,
        215,
        216,
        219,
        220,
        223,
        225,
        228,
        230,
        232,
        233,
        238,
        239,
        242,
        243,
        246,
        250,
        251,
        252,
        255,
        260,
        261,
        263,
        269,
        272,
        273,
        275,
        281,
        283,
        284,
        285,
        286,
        287,
        288,
        290,
        291,
        292,
        293,
        295,
        304,
        307,
        309,
        310,
        314,
        315,
        319,
        323,
        329,
        330,
        331,
        336,
        342,
        345,
        349,
        350,
        351,
        352,
        355,
        357,
        368,
        370,
        371,
        374,
        379,
        380,
        383,
        384,
        397,
        401,
        403,
        405,
        407,
        408,
        411,
        412,
        413,
        414,
        417,
        419,
        421,
        423,
        427,
        429,
        430,
        432,
        440,
        441,
        442,
        443,
        444,
        446,
        454,
        457,
    }
)

SPEC: dict[str, tuple[str, int]] = {
    "image": ("uint8", 3),
    "semseg": ("uint8", 1),
    "parts": ("uint8", 1),
    "sal": ("uint8", 1),
    "normals": ("uint8", 3),
    "normals_valid": ("uint8", 1),
    "edge": ("uint8", 1),
}
FOLDERS = ("JPEGImages", "ImageSets/Context", "semseg", "human_parts", "sal_distill", "normals_distill")
CONTEXT_FOLDER = "pascal-context/trainval"


def locate(root: Path | str) -> Path:
    """The PASCAL_MT / PASCALContext folder at ``root`` or one level below."""
    root = Path(root).expanduser()
    candidates = [root, *(sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else [])]
    for folder in candidates:
        if (folder / "JPEGImages").is_dir() and (folder / "ImageSets" / "Context").is_dir():
            for name in (*FOLDERS, CONTEXT_FOLDER):
                if not (folder / name).is_dir():
                    raise BadTreeError(f"missing folder {folder / name}")
            return folder
    raise BadTreeError(
        f"{root} is not a PASCAL-Context multi-task tree: expected {', '.join((*FOLDERS, CONTEXT_FOLDER))}"
    )


def semseg_path(root: Path, image_id: str) -> Path:
    voc = root / "semseg" / "VOC12" / f"{image_id}.png"
    return voc if voc.is_file() else root / "semseg" / "pascal-context" / f"{image_id}.png"


def laplacian_edges(label_map: np.ndarray) -> np.ndarray:
    """Thinned ``|Laplacian(LabelMap)| > 0`` (4-neighbour kernel, reflect-101 borders)."""
    from mtlbench.problems.edge_eval import thin

    x = np.pad(label_map.astype(np.float64), 1, mode="reflect")
    lap = x[:-2, 1:-1] + x[2:, 1:-1] + x[1:-1, :-2] + x[1:-1, 2:] - 4.0 * x[1:-1, 1:-1]
    return thin(np.abs(lap) > 0).astype(np.uint8)


def _field(record: Any, name: str, path: Path) -> Any:
    try:
        return record[name]
    except (ValueError, KeyError, IndexError, TypeError):
        raise BadTreeError(f"{path}: the part annotation has no field {name!r}") from None


def _scalar(value: Any) -> Any:
    array = np.asarray(value)
    while array.dtype == object and array.size == 1:
        array = np.asarray(array.reshape(-1)[0])
    return array.reshape(-1)[0] if array.size else None


def human_parts(path: Path, shape: tuple[int, int]) -> np.ndarray:
    """The 7-class part map of one image (all 255 when it holds no annotated person)."""
    if not path.is_file():
        raise BadTreeError(f"missing file {path}")
    try:
        mat = scipy.io.loadmat(str(path))
    except Exception as error:  # scipy raises several types on malformed files
        raise BadTreeError(f"unreadable .mat {path}: {error}") from None
    if "anno" not in mat:
        raise BadTreeError(f"{path}: no 'anno' struct")
    anno = mat["anno"].reshape(-1)[0]
    objects = np.asarray(_field(anno, "objects", path)).reshape(-1)
    target = np.zeros(shape, dtype=np.uint8)
    for obj in objects:
        class_ind = _scalar(_field(obj, "class_ind", path))
        parts = np.asarray(_field(obj, "parts", path)).reshape(-1)
        if class_ind is None or int(class_ind) != PERSON or parts.size == 0:
            continue
        for part in parts:
            name = str(_scalar(_field(part, "part_name", path)))
            if name not in HUMAN_PARTS_6:
                raise BadTreeError(f"{path}: unknown person part {name!r}")
            mask = np.asarray(_field(part, "mask", path))
            expect_shape(path, mask, shape)
            target[mask.astype(bool)] = HUMAN_PARTS_6[name]
    if not target.any():
        target[:] = IGNORE
    return target


def read_sample(root: Path, image_id: str, shape: tuple[int, int]) -> dict[str, np.ndarray]:
    path = root / "JPEGImages" / f"{image_id}.jpg"
    image = expect_shape(path, read_rgb(path), (*shape, 3))
    path = semseg_path(root, image_id)
    semseg = expect_shape(path, read_png(path), shape)
    bad = (semseg >= SEMSEG_CLASSES) & (semseg != IGNORE)
    if bad.any():
        raise BadTreeError(f"{path}: segmentation values must be 0..{SEMSEG_CLASSES - 1} or 255")
    parts = human_parts(root / "human_parts" / f"{image_id}.mat", shape)
    path = root / "sal_distill" / f"{image_id}.png"
    sal_raw = read_png(path)
    if sal_raw.ndim == 3:
        sal_raw = sal_raw[..., 0]
    sal = (expect_shape(path, sal_raw, shape).astype(np.float32) / 255.0 > 0.5).astype(np.uint8)
    path = root / CONTEXT_FOLDER / f"{image_id}.mat"
    if not path.is_file():
        raise BadTreeError(f"missing file {path}")
    try:
        label_map = scipy.io.loadmat(str(path))["LabelMap"]
    except Exception as error:
        raise BadTreeError(f"unreadable .mat {path} (needs LabelMap): {error}") from None
    label_map = expect_shape(path, np.asarray(label_map), shape)
    path = root / "normals_distill" / f"{image_id}.png"
    normals = expect_shape(path, read_png(path), (*shape, 3)).astype(np.uint8)
    valid = np.isin(label_map, list(NORMALS_VALID_CLASSES)).astype(np.uint8)
    return {
        "image": image,
        "semseg": semseg.astype(np.uint8),
        "parts": parts,
        "sal": sal,
        "normals": normals,
        "normals_valid": valid,
        "edge": laplacian_edges(label_map),
    }


def _companions(root: Path, image_id: str) -> list[Path]:
    return [
        semseg_path(root, image_id),
        root / "human_parts" / f"{image_id}.mat",
        root / "sal_distill" / f"{image_id}.png",
        root / "normals_distill" / f"{image_id}.png",
        root / CONTEXT_FOLDER / f"{image_id}.mat",
    ]


def prepare(raw: Path | str, *, force: bool = False, limit: int | None = None, progress: Progress | None = None) -> str:
    """Validate a PASCAL-Context tree and cache it (``mtlbench data prepare pascal_context --raw PATH``)."""
    root = locate(raw)
    lists = {split: read_list(root / "ImageSets" / "Context" / name) for split, name in SPLIT_LISTS.items()}
    if limit:
        lists = {split: ids[:limit] for split, ids in lists.items()}
    shapes: dict[str, np.ndarray] = {}
    for split, ids in lists.items():
        shapes[split] = np.array([image_size(root / "JPEGImages" / f"{i}.jpg") for i in ids], dtype=np.int64)
        for image_id in ids:
            for path in _companions(root, image_id):
                if not path.is_file():
                    raise BadTreeError(f"missing file {path} (listed in {split})")

    def build(folder: Path) -> tuple[list[str], dict[str, Any]]:
        files: list[str] = []
        for split, ids in lists.items():
            size = {image_id: tuple(int(v) for v in shapes[split][k]) for k, image_id in enumerate(ids)}
            files += write_ragged_split(
                folder, split, SPEC, ids, shapes[split], lambda i, size=size: read_sample(root, i, size[i]), progress
            )
        return files, {"source": str(root), "counts": {s: len(v) for s, v in lists.items()}}

    target = prepare_into(NAME, build, force=force)
    counts = ", ".join(f"{len(ids)} {split}" for split, ids in lists.items())
    return f"pascal_context prepared in {target}: {counts} images"


def load(split: str) -> tuple[RaggedSplit, dict[str, str]]:
    folder = dataset_dir(NAME)
    if not read_manifest(folder)["files"]:
        raise MissingDataError(
            f"PASCAL-Context (multi-task) is not prepared in {folder}; download MTI-Net's PASCAL_MT or InvPT's "
            f"PASCALContext yourself, then run `{PREPARE_COMMAND}`"
        )
    files = verify_files(folder, ragged_files(split, SPEC), dataset=NAME, command=f"{PREPARE_COMMAND} --force")
    return load_ragged(folder, split, SPEC), {f"{NAME}/{k}": v for k, v in files.items()}


def has_people(parts: Sequence[np.ndarray]) -> np.ndarray:
    return np.array([not (p == IGNORE).all() for p in parts])


class PascalContextSource:
    name = NAME
    description = "PASCAL-Context multi-task (PASCAL_MT / PASCALContext; convert your copy with `data prepare`)"

    def fetch(self, source: Path | None = None, *, force: bool = False) -> str:
        if source is None:
            raise MissingDataError(f"PASCAL-Context cannot be downloaded by mtlbench; run `{PREPARE_COMMAND}`")
        return prepare(source, force=force)

    def info(self) -> dict[str, Any]:
        folder = dataset_dir(NAME)
        manifest = read_manifest(folder)
        if not manifest["files"]:
            return {}
        return {"path": str(folder), "bytes": folder_size(folder), **manifest["meta"], "sha256": manifest["files"]}


SOURCE = register_dataset(PascalContextSource())

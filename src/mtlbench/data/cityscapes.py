"""Cityscapes (Cordts et al., CVPR 2016) for the dense three-task problem of 000 section 3.3.

The data is licensed (https://www.cityscapes-dataset.com/license/) and cannot be fetched here: users
convert their own copy with ``mtlbench data prepare cityscapes --raw PATH``. Two layouts are read:

- the raw layout: ``leftImg8bit/{train,val}/CITY/*_leftImg8bit.png``, ``gtFine/.../*_gtFine_labelIds.png``,
  ``gtFine/.../*_gtFine_instanceIds.png`` (``id*1000+k`` for thing instances) and ``disparity/.../
  *_disparity.png`` (16 bit);
- the MTAN preprocessed arrays ``{train,val}/{image,label_7,label_19,depth}/{i}.npy`` (no instances).

What is cached per resolution ``WxH`` (folder ``data_root()/cityscapes/WxH``), as Gama & Grassi's
``city_preprocess.py`` computes it:

- ``image`` uint8 (N,H,W,3): the RGB image resized bilinearly with Pillow (antialiased, as theirs);
- ``label19`` int8: official labelId -> trainId (19 classes, ignore -1) and ``label7`` int8: trainId ->
  categoryTrainId (flat, construction, object, nature, sky, human, vehicle; ignore -1);
- ``disparity`` float32: raw d > 0 -> (d - 1) / (256 * 2048 / W), 0 where invalid;
- ``instance`` int32: the raw instanceIds value on pixels whose trainId is a thing class (person ..
  bicycle), 0 elsewhere. Gama's code keeps "group" regions (value = labelId < 1000) as one instance
  each; so do we. Offsets to instance centroids are computed from this map at batch time (so that
  they follow the augmentation).

Label maps, instances and disparity are subsampled at the same pixel centres, floor((i + 0.5) * src /
dst) (Pillow's NEAREST for the integer factors 8 and 4; Gama resized disparity with OpenCV, whose
nearest picks floor(i * src / dst), half a low-resolution pixel off). Splits: 80/20 of the official
train split (numpy seed 0, as Gama's ``np.random.choice``) = train/val, official val = test.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from mtlbench.data import register_dataset
from mtlbench.data.cache import (
    atomic_write_bytes,
    dataset_dir,
    folder_size,
    locked,
    read_manifest,
    write_manifest,
)
from mtlbench.errors import MissingDataError, UserInputError

NAME = "cityscapes"
IGNORE = -1
#: cached arrays of a split, in file order; ``instance`` is absent for sources without instances
ARRAYS = ("image", "label19", "label7", "disparity", "instance")
DEFAULT_RESOLUTIONS = ("256x128", "512x256")
PREPARE_COMMAND = "mtlbench data prepare cityscapes --raw PATH"


# --------------------------------------------------------------------------------------------- labels


class Label(NamedTuple):
    """One official Cityscapes label (cityscapesScripts ``helpers/labels.py``)."""

    name: str
    id: int
    train_id: int
    category: str
    category_train_id: int
    has_instances: bool


#: The official table: labelId, trainId (19 classes) and the 7 categories (categoryTrainId).
LABELS: tuple[Label, ...] = (
    Label("unlabeled", 0, -1, "void", -1, False),
    Label("ego vehicle", 1, -1, "void", -1, False),
    Label("rectification border", 2, -1, "void", -1, False),
    Label("out of roi", 3, -1, "void", -1, False),
    Label("static", 4, -1, "void", -1, False),
    Label("dynamic", 5, -1, "void", -1, False),
    Label("ground", 6, -1, "void", -1, False),
    Label("road", 7, 0, "flat", 0, False),
    Label("sidewalk", 8, 1, "flat", 0, False),
    Label("parking", 9, -1, "flat", -1, False),
    Label("rail track", 10, -1, "flat", -1, False),
    Label("building", 11, 2, "construction", 1, False),
    Label("wall", 12, 3, "construction", 1, False),
    Label("fence", 13, 4, "construction", 1, False),
    Label("guard rail", 14, -1, "construction", -1, False),
    Label("bridge", 15, -1, "construction", -1, False),
    Label("tunnel", 16, -1, "construction", -1, False),
    Label("pole", 17, 5, "object", 2, False),
    Label("polegroup", 18, -1, "object", -1, False),
    Label("traffic light", 19, 6, "object", 2, False),
    Label("traffic sign", 20, 7, "object", 2, False),
    Label("vegetation", 21, 8, "nature", 3, False),
    Label("terrain", 22, 9, "nature", 3, False),
    Label("sky", 23, 10, "sky", 4, False),
    Label("person", 24, 11, "human", 5, True),
    Label("rider", 25, 12, "human", 5, True),
    Label("car", 26, 13, "vehicle", 6, True),
    Label("truck", 27, 14, "vehicle", 6, True),
    Label("bus", 28, 15, "vehicle", 6, True),
    Label("caravan", 29, -1, "vehicle", -1, True),
    Label("trailer", 30, -1, "vehicle", -1, True),
    Label("train", 31, 16, "vehicle", 6, True),
    Label("motorcycle", 32, 17, "vehicle", 6, True),
    Label("bicycle", 33, 18, "vehicle", 6, True),
    Label("license plate", -1, -1, "vehicle", -1, False),
)

CLASS_NAMES_19: tuple[str, ...] = tuple(
    next(label.name for label in LABELS if label.train_id == train_id) for train_id in range(19)
)
CATEGORY_NAMES_7: tuple[str, ...] = ("flat", "construction", "object", "nature", "sky", "human", "vehicle")
#: trainIds of the classes with instances that keep a trainId (caravan and trailer are ignored)
THING_TRAIN_IDS: tuple[int, ...] = tuple(
    label.train_id for label in LABELS if label.has_instances and label.train_id >= 0
)


def _id_to_train_lut() -> np.ndarray:
    lut = np.full(256, IGNORE, dtype=np.int8)
    for label in LABELS:
        if label.id >= 0:
            lut[label.id] = label.train_id
    return lut


#: labelId (0..255) -> trainId, ignore -1
ID_TO_TRAIN = _id_to_train_lut()
#: trainId (0..18) -> categoryTrainId (0..6)
TRAIN_TO_CATEGORY = np.array(
    [next(lb.category_train_id for lb in LABELS if lb.train_id == t) for t in range(19)], np.int8
)


def to_train_ids(label_ids: np.ndarray) -> np.ndarray:
    """Official labelIds -> 19 trainIds (int8, ignore -1)."""
    return ID_TO_TRAIN[np.asarray(label_ids, dtype=np.int64).clip(0, 255)]


def to_categories(train_ids: np.ndarray) -> np.ndarray:
    """19 trainIds -> 7 categoryTrainIds (int8), keeping -1."""
    train_ids = np.asarray(train_ids)
    out = np.full(train_ids.shape, IGNORE, dtype=np.int8)
    valid = (train_ids >= 0) & (train_ids < 19)
    out[valid] = TRAIN_TO_CATEGORY[train_ids[valid]]
    return out


def thing_mask(train_ids: np.ndarray) -> np.ndarray:
    return np.isin(train_ids, THING_TRAIN_IDS)


def scale_disparity(raw: np.ndarray, width: int) -> np.ndarray:
    """Raw 16-bit disparity -> (d - 1) / (256 * 2048 / width) where d > 0, else 0 (float32)."""
    raw = np.asarray(raw, dtype=np.float64)
    out = np.zeros(raw.shape, dtype=np.float64)
    valid = raw > 0
    out[valid] = (raw[valid] - 1.0) / (256.0 * 2048.0 / width)
    return out.astype(np.float32)


# ----------------------------------------------------------------------------------------- resolution


def parse_resolution(value: str | Sequence[int]) -> tuple[int, int]:
    """``"256x128"`` -> (256, 128) = (width, height); raises UserInputError on anything else."""
    if not isinstance(value, str):
        width, height = (int(v) for v in value)
    else:
        match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", value)
        if match is None:
            raise UserInputError(f"resolution {value!r} is not of the form WIDTHxHEIGHT, e.g. 256x128")
        width, height = int(match.group(1)), int(match.group(2))
    if width < 8 or height < 8:
        raise UserInputError(f"resolution {width}x{height} is too small; width and height must be at least 8")
    return width, height


def resolution_name(width: int, height: int) -> str:
    return f"{width}x{height}"


def nearest_indices(source: int, target: int) -> np.ndarray:
    """Source index sampled by target pixel i: floor((i + 0.5) * source / target)."""
    return np.minimum(((np.arange(target) + 0.5) * source / target).astype(np.int64), source - 1)


def resize_nearest(array: np.ndarray, width: int, height: int) -> np.ndarray:
    rows = nearest_indices(array.shape[0], height)
    cols = nearest_indices(array.shape[1], width)
    return array[rows[:, None], cols[None, :]]


# -------------------------------------------------------------------------------------- array storage


def split_file(split: str, array: str) -> str:
    return f"{split}_{array}.npy"


class SplitWriter:
    """Writes the arrays of a cached split into temporary ``.npy`` memmaps; ``commit`` renames them.

    Readers never see partial files (each file is written, flushed and fsynced, then renamed).
    """

    def __init__(self, folder: Path, split: str, n: int, width: int, height: int, arrays: Iterable[str]) -> None:
        self.folder = folder
        self.split = split
        shapes = {
            "image": ((n, height, width, 3), np.uint8),
            "label19": ((n, height, width), np.int8),
            "label7": ((n, height, width), np.int8),
            "disparity": ((n, height, width), np.float32),
            "instance": ((n, height, width), np.int32),
        }
        folder.mkdir(parents=True, exist_ok=True)
        self.temp: dict[str, Path] = {}
        self.arrays: dict[str, np.ndarray] = {}
        for name in arrays:
            shape, dtype = shapes[name]
            fd, temp_name = tempfile.mkstemp(prefix=f".{split_file(split, name)}.", suffix=".tmp", dir=folder)
            os.close(fd)
            self.temp[name] = Path(temp_name)
            self.arrays[name] = np.lib.format.open_memmap(temp_name, mode="w+", dtype=dtype, shape=shape)

    def put(self, index: int, sample: Mapping[str, np.ndarray]) -> None:
        for name, array in self.arrays.items():
            array[index] = sample[name]

    def commit(self) -> list[str]:
        names = []
        for name, array in self.arrays.items():
            array.flush()
            del array
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


def write_split(folder: Path, split: str, arrays: Mapping[str, np.ndarray]) -> list[str]:
    """Write whole in-memory arrays of one split atomically; return the file names."""
    first = next(iter(arrays.values()))
    n, height, width = first.shape[:3]
    writer = SplitWriter(folder, split, n, width, height, arrays)
    try:
        for name, array in arrays.items():
            writer.arrays[name][...] = array
        return writer.commit()
    except BaseException:
        writer.abort()
        raise


def load_split(folder: Path, split: str, arrays: Iterable[str], *, mmap: bool = True) -> dict[str, np.ndarray]:
    """Load cached arrays of a split (memory-mapped read-only by default)."""
    return {
        name: np.load(folder / split_file(split, name), mmap_mode="r" if mmap else None, allow_pickle=False)
        for name in arrays
    }


def eighty_twenty(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Gama's split of the official train list: ``np.random.seed(0); choice(n, int(0.8 n), replace=False)``,
    sorted; the rest (in order) is val."""
    chosen = np.sort(np.random.RandomState(seed).choice(n, int(0.8 * n), replace=False))
    rest = np.setdiff1d(np.arange(n), chosen)
    return chosen, rest


# ------------------------------------------------------------------------------------------ raw layout


@dataclass(frozen=True)
class RawLayout:
    images: Path
    labels: Path
    disparity: Path


_RAW_FOLDERS = {
    "images": ("leftImg8bit", "leftImg8bit_trainvaltest/leftImg8bit"),
    "labels": ("gtFine", "gtFine_trainvaltest/gtFine"),
    "disparity": ("disparity", "disparity_trainvaltest/disparity"),
}


def locate_raw(root: Path | str) -> RawLayout:
    """Find ``leftImg8bit/``, ``gtFine/`` and ``disparity/`` under ``root`` (or the zips' ``*_trainvaltest/``)."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise UserInputError(f"Cityscapes raw path {root} is not a folder")
    found: dict[str, Path] = {}
    for key, candidates in _RAW_FOLDERS.items():
        for candidate in candidates:
            if (root / candidate).is_dir():
                found[key] = root / candidate
                break
        else:
            raise UserInputError(
                f"Cityscapes raw path {root} has no {candidates[0]}/ folder (nor {candidates[1]}/); it needs "
                "leftImg8bit/, gtFine/ and disparity/"
            )
    for key, folder in found.items():
        for split in ("train", "val"):
            if not (folder / split).is_dir():
                raise UserInputError(f"Cityscapes raw folder {folder} has no {split}/ subfolder ({key})")
    return RawLayout(**found)


def list_raw_images(layout: RawLayout, split: str) -> list[Path]:
    files = sorted((layout.images / split).glob("*/*_leftImg8bit.png"))
    if not files:
        raise UserInputError(f"no */*_leftImg8bit.png images in {layout.images / split}")
    return files


def raw_companions(layout: RawLayout, image: Path) -> dict[str, Path]:
    """The label, instance and disparity files of a raw image; raise naming the first that is missing."""
    city, split = image.parent.name, image.parent.parent.name
    stem = image.name[: -len("_leftImg8bit.png")]
    paths = {
        "label": layout.labels / split / city / f"{stem}_gtFine_labelIds.png",
        "instance": layout.labels / split / city / f"{stem}_gtFine_instanceIds.png",
        "disparity": layout.disparity / split / city / f"{stem}_disparity.png",
    }
    for path in paths.values():
        if not path.is_file():
            raise UserInputError(f"Cityscapes raw data is missing {path} (for image {image})")
    return paths


def _read_png(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as image:
        return np.array(image)


def convert_raw_sample(
    image_path: Path, companions: Mapping[str, Path], sizes: Sequence[tuple[int, int]]
) -> list[dict[str, np.ndarray]]:
    """Read one raw sample and return its cached arrays at each (width, height) in ``sizes``."""
    from PIL import Image

    with Image.open(image_path) as opened:
        rgb = opened.convert("RGB")
    full_w, full_h = rgb.size
    label_ids = _read_png(companions["label"])
    instance_ids = _read_png(companions["instance"]).astype(np.int32)
    raw_disparity = _read_png(companions["disparity"]).astype(np.int32)
    for key, array in (("label", label_ids), ("instance", instance_ids), ("disparity", raw_disparity)):
        if array.shape[:2] != (full_h, full_w):
            raise UserInputError(
                f"{companions[key]} is {array.shape[1]}x{array.shape[0]} but its image {image_path} is "
                f"{full_w}x{full_h}"
            )
    if label_ids.ndim != 2:
        raise UserInputError(f"{companions['label']} is not a single-channel labelIds image")
    out = []
    for width, height in sizes:
        image = np.asarray(rgb.resize((width, height), resample=Image.Resampling.BILINEAR), dtype=np.uint8)
        label19 = to_train_ids(resize_nearest(label_ids, width, height))
        instance = resize_nearest(instance_ids, width, height)
        instance = np.where(thing_mask(label19), instance, 0).astype(np.int32)
        disparity = scale_disparity(resize_nearest(raw_disparity, width, height), width)
        out.append(
            {
                "image": image,
                "label19": label19,
                "label7": to_categories(label19),
                "disparity": disparity,
                "instance": instance,
            }
        )
    return out


def _convert_job(job: tuple[Path, dict[str, Path], list[tuple[int, int]]]) -> list[dict[str, np.ndarray]]:
    return convert_raw_sample(*job)


Progress = Callable[[str], None]


def prepare_raw(
    raw: Path | str,
    resolutions: Sequence[str] = DEFAULT_RESOLUTIONS,
    *,
    force: bool = False,
    workers: int | None = None,
    limit: int | None = None,
    progress: Progress | None = None,
) -> str:
    """Convert a raw Cityscapes tree into the cache at every resolution (one pass over the PNGs).

    ``limit`` keeps only the first images of each official split (for trials).
    """
    layout = locate_raw(raw)
    sizes = [parse_resolution(r) for r in resolutions]
    official = {split: list_raw_images(layout, split) for split in ("train", "val")}
    if limit is not None:
        official = {split: files[:limit] for split, files in official.items()}
    train_idx, val_idx = eighty_twenty(len(official["train"]))
    files = {
        "train": [official["train"][i] for i in train_idx],
        "val": [official["train"][i] for i in val_idx],
        "test": official["val"],
    }
    jobs = {split: [(f, raw_companions(layout, f), sizes) for f in split_files] for split, split_files in files.items()}
    todo = [s for s in sizes if force or not is_prepared(resolution_name(*s))]
    if not todo:
        return f"cityscapes already prepared at {', '.join(resolutions)} in {dataset_dir(NAME)} (use --force to redo)"
    workers = workers if workers is not None else min(8, os.cpu_count() or 1)
    root = dataset_dir(NAME)
    with locked(root):
        folders = {s: root / resolution_name(*s) for s in todo}
        written: dict[tuple[int, int], list[str]] = {s: [] for s in todo}
        for split, split_jobs in jobs.items():
            writers = {s: SplitWriter(folders[s], split, len(split_jobs), *s, ARRAYS) for s in todo}
            try:
                todo_jobs = [(path, companions, todo) for path, companions, _ in split_jobs]
                results: Iterable[list[dict[str, np.ndarray]]]
                if workers > 1 and len(todo_jobs) > 1:
                    pool = ProcessPoolExecutor(max_workers=workers)
                    results = pool.map(_convert_job, todo_jobs, chunksize=4)
                else:
                    pool = None
                    results = map(_convert_job, todo_jobs)
                try:
                    for index, samples in enumerate(results):
                        for size, sample in zip(todo, samples, strict=True):
                            writers[size].put(index, sample)
                        if progress is not None and (index + 1) % 100 == 0:
                            progress(f"{split}: {index + 1}/{len(todo_jobs)}")
                finally:
                    if pool is not None:
                        pool.shutdown(cancel_futures=True)
                for size, writer in writers.items():
                    written[size] += writer.commit()
            except BaseException:
                for writer in writers.values():
                    writer.abort()
                raise
        for size, names in written.items():
            splits_doc = {
                split: [str(Path(f).relative_to(layout.images)) for f in split_files]
                for split, split_files in files.items()
            }
            atomic_write_bytes(folders[size] / "splits.json", json.dumps(splits_doc, indent=1).encode())
            write_manifest(
                folders[size],
                [*names, "splits.json"],
                {
                    "source": "raw",
                    "raw_path": str(Path(raw).expanduser().resolve()),
                    "resolution": resolution_name(*size),
                    "counts": {split: len(split_files) for split, split_files in files.items()},
                    "arrays": list(ARRAYS),
                    "has_instance": True,
                    "split_rule": "80/20 of official train (numpy RandomState(0).choice), official val = test",
                },
            )
    counts = ", ".join(f"{split} {len(f)}" for split, f in files.items())
    return f"cityscapes prepared at {', '.join(resolution_name(*s) for s in todo)} ({counts}) in {root}"


# ------------------------------------------------------------------------------------------ MTAN layout

_MTAN_FOLDERS = ("image", "label_7", "label_19", "depth")


def is_mtan_layout(root: Path | str) -> bool:
    root = Path(root).expanduser()
    return (root / "train" / "image").is_dir() and (root / "val" / "image").is_dir()


def _mtan_files(root: Path, split: str) -> dict[str, list[Path]]:
    files: dict[str, list[Path]] = {}
    for folder in _MTAN_FOLDERS:
        path = root / split / folder
        if not path.is_dir():
            raise UserInputError(f"MTAN Cityscapes path {root} is missing the folder {path}")
        indices = sorted(int(p.stem) for p in path.glob("*.npy") if p.stem.isdigit())
        files[folder] = [path / f"{i}.npy" for i in indices]
    n = len(files["image"])
    if n == 0:
        raise UserInputError(f"MTAN Cityscapes folder {root / split / 'image'} holds no {{i}}.npy files")
    for folder in _MTAN_FOLDERS[1:]:
        expected = [p.name for p in files["image"]]
        names = {p.name for p in files[folder]}
        missing = [name for name in expected if name not in names]
        if missing:
            raise UserInputError(f"MTAN Cityscapes is missing {root / split / folder / missing[0]}")
        files[folder] = [root / split / folder / name for name in expected]
    return files


def _mtan_sample(files: Mapping[str, list[Path]], index: int) -> dict[str, np.ndarray]:
    image = np.load(files["image"][index], allow_pickle=False)
    label7 = np.load(files["label_7"][index], allow_pickle=False)
    label19 = np.load(files["label_19"][index], allow_pickle=False)
    depth = np.load(files["depth"][index], allow_pickle=False)
    if image.ndim != 3 or image.shape[2] != 3:
        raise UserInputError(f"{files['image'][index]} has shape {image.shape}; expected HxWx3")
    height, width = image.shape[:2]
    depth = depth.reshape(depth.shape[:2]) if depth.ndim == 3 else depth
    for key, array in (("label_7", label7), ("label_19", label19), ("depth", depth)):
        if array.shape[:2] != (height, width):
            raise UserInputError(
                f"{files[key][index]} is {array.shape[1]}x{array.shape[0]} but its image {files['image'][index]} "
                f"is {width}x{height}"
            )
    scale = 1.0 if float(image.max(initial=0.0)) > 1.0 + 1e-6 else 255.0
    return {
        "image": np.clip(np.rint(image.astype(np.float64) * scale), 0, 255).astype(np.uint8),
        "label19": np.where(label19 < 0, IGNORE, label19).astype(np.int8),
        "label7": np.where(label7 < 0, IGNORE, label7).astype(np.int8),
        "disparity": depth.astype(np.float32),
    }


def prepare_mtan(path: Path | str, *, force: bool = False, progress: Progress | None = None) -> str:
    """Cache the MTAN preprocessed arrays (tasks S and D only): 80/20 of their train = train/val, val = test.

    Images in [0, 1] are stored as round(255 x) in uint8 (they are 8-bit images divided by 255).
    """
    root = Path(path).expanduser()
    official = {split: _mtan_files(root, split) for split in ("train", "val")}
    first = _mtan_sample(official["train"], 0)
    height, width = first["image"].shape[:2]
    name = resolution_name(width, height)
    if not force and is_prepared(name):
        return f"cityscapes already prepared at {name} in {dataset_dir(NAME)} (use --force to redo)"
    train_idx, val_idx = eighty_twenty(len(official["train"]["image"]))
    plan = {"train": ("train", train_idx), "val": ("train", val_idx), "test": ("val", None)}
    arrays = ARRAYS[:4]
    folder = dataset_dir(NAME) / name
    names: list[str] = []
    counts: dict[str, int] = {}
    with locked(dataset_dir(NAME)):
        for split, (source, indices) in plan.items():
            files = official[source]
            order = np.arange(len(files["image"])) if indices is None else indices
            counts[split] = len(order)
            writer = SplitWriter(folder, split, len(order), width, height, arrays)
            try:
                for position, index in enumerate(order):
                    sample = _mtan_sample(files, int(index))
                    if sample["image"].shape[:2] != (height, width):
                        raise UserInputError(
                            f"{files['image'][index]} is {sample['image'].shape[1]}x{sample['image'].shape[0]}; "
                            f"the other MTAN images are {width}x{height}"
                        )
                    writer.put(position, sample)
                    if progress is not None and (position + 1) % 500 == 0:
                        progress(f"{split}: {position + 1}/{len(order)}")
                names += writer.commit()
            except BaseException:
                writer.abort()
                raise
        write_manifest(
            folder,
            names,
            {
                "source": "mtan",
                "raw_path": str(root.resolve()),
                "resolution": name,
                "counts": counts,
                "arrays": list(arrays),
                "has_instance": False,
                "split_rule": "80/20 of MTAN train (numpy RandomState(0).choice), MTAN val = test",
            },
        )
    return f"cityscapes prepared at {name} from the MTAN arrays (no instances) in {folder}"


def prepare(source: Path | str, resolutions: Sequence[str] = DEFAULT_RESOLUTIONS, **kwargs: Any) -> str:
    """Prepare from a raw tree or the MTAN arrays, whichever ``source`` holds."""
    source = Path(source).expanduser()
    if is_mtan_layout(source):
        kwargs.pop("workers", None)
        kwargs.pop("limit", None)
        return prepare_mtan(source, **kwargs)
    return prepare_raw(source, resolutions, **kwargs)


# ------------------------------------------------------------------------------------------ the cache


def cache_folder(resolution: str) -> Path:
    return dataset_dir(NAME) / resolution


def is_prepared(resolution: str) -> bool:
    manifest = read_manifest(cache_folder(resolution))
    return bool(manifest["files"]) and manifest["meta"].get("resolution") == resolution


def prepared_resolutions() -> list[str]:
    root = dataset_dir(NAME)
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if p.is_dir() and is_prepared(p.name))


def missing_message(resolution: str) -> str:
    have = prepared_resolutions()
    extra = f" (prepared: {', '.join(have)})" if have else ""
    return (
        f"Cityscapes is not prepared at {resolution}{extra}; it is licensed and must be downloaded from "
        f"cityscapes-dataset.com, then run `mtlbench data prepare cityscapes --raw PATH --resolution {resolution}`"
    )


class CityscapesSource:
    """The ``cityscapes`` entry of ``mtlbench data``: licensed data, converted with ``data prepare``."""

    name = NAME
    description = "Cityscapes street scenes (licensed; convert your copy with `mtlbench data prepare cityscapes`)"

    def fetch(self, source: Path | None = None, *, force: bool = False) -> str:
        if source is None:
            raise MissingDataError(
                "Cityscapes is licensed (https://www.cityscapes-dataset.com/license/) and cannot be downloaded by "
                "mtlbench: download leftImg8bit_trainvaltest, gtFine_trainvaltest and disparity_trainvaltest "
                "yourself, then run `mtlbench data prepare cityscapes --raw PATH`"
            )
        return prepare(source, force=force)

    def info(self) -> dict[str, Any]:
        info: dict[str, Any] = {}
        for resolution in prepared_resolutions():
            folder = cache_folder(resolution)
            manifest = read_manifest(folder)
            info[resolution] = {
                "path": str(folder),
                "bytes": folder_size(folder),
                "source": manifest["meta"].get("source"),
                "counts": manifest["meta"].get("counts"),
                "has_instance": manifest["meta"].get("has_instance"),
                "sha256": manifest["files"],
            }
        return info


SOURCE = register_dataset(CityscapesSource())

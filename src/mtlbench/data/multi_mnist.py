"""Multi-MNIST (Sabour et al. 2017; the construction of Sener & Koltun 2018 used by Gama & Grassi, 000 §3.1).

Each example overlays two MNIST digits of the same split on a 36x36 canvas: the left digit at
rows/cols 0:28, its right partner at 6:34, pixel-wise maximum where they overlap; the canvas is
resized to 28x28 with nearest-neighbour sampling and normalised with (0.1307, 0.3081) after the
usual division by 255.

Resizing: Sener & Koltun's and Gama's code resize with PIL ``NEAREST``, which samples source pixel
floor((i + 0.5) * 36 / 28); torch's ``mode="nearest"`` samples floor(i * 36 / 28) instead, and its
``mode="nearest-exact"`` reproduces PIL exactly, so that is the mode used (``RESIZE_MODE``).

Splits: train = MNIST train 0..49,999, val = 50,000..59,999, test = MNIST test (on a smaller MNIST
the val split is the last sixth of train). The right partner of every image is drawn uniformly
within its split (with replacement, as the reference code) by a generator seeded with
``(partner_seed, split)``, so each split is independent of the others and of the order in which
they are built. The partner indices are saved in the cache with their checksum and are the source
of truth afterwards (a numpy upgrade that changed the generator's stream would not change a split).

``partners="published"`` uses instead the right-partner files Gama & Grassi published
(``datasets/multimnist_dataset/processed/{train,val,test}_right_idx.txt`` of UnitScal_vs_SMTOs@a656e52),
which numpy's legacy generator rebuilds exactly: ``np.random.seed(0)`` then ``randint(0, 50000,
size=50000)`` (train), ``randint(50000, 60000, size=60000)`` (val; its loader uses the first 10,000)
and ``randint(0, 10000, size=10000)`` (test). :func:`published_partners` regenerates them and checks
the sha256 of their text form against the published files (:data:`PUBLISHED_SHA256`); they need the
full MNIST (60,000 / 10,000 images).
The composed uint8 images are cached too, keyed by the checksums of the MNIST images and partners.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from mtlbench.data import register_dataset
from mtlbench.data.cache import (
    CorruptDataError,
    atomic_save_npy,
    check_files,
    dataset_dir,
    folder_size,
    load_npy,
    locked,
    read_manifest,
    update_manifest,
)
from mtlbench.data.mnist import MnistArrays, load_mnist
from mtlbench.errors import UserInputError

NAME = "multi_mnist"
DIGIT = 28
CANVAS = 36
RIGHT_OFFSET = 6
MEAN, STD = 0.1307, 0.3081
RESIZE_MODE = "nearest-exact"
SPLITS = ("train", "val", "test")
_SPLIT_IDS = {"train": 0, "val": 1, "test": 2}
_CHUNK = 10_000


def _redraw_hint(seed: int, folder: Path) -> str:
    if seed == 0:
        return "run `mtlbench data fetch multi_mnist --force` to redraw them"
    return f"delete {folder} to redraw them"


def split_ranges(n_train: int, n_test: int) -> dict[str, tuple[str, int, int]]:
    """split -> (MNIST part, start, stop): train 0..n-n/6, val the last sixth of train, test all of test."""
    n_val = n_train // 6
    return {
        "train": ("train", 0, n_train - n_val),
        "val": ("train", n_train - n_val, n_train),
        "test": ("test", 0, n_test),
    }


def draw_partners(split: str, start: int, stop: int, seed: int) -> np.ndarray:
    """Right partners of images ``start..stop-1``: uniform in ``[start, stop)``, seeded by (seed, split)."""
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(seed), _SPLIT_IDS[split]])))
    return rng.integers(start, stop, size=stop - start, dtype=np.int64)


PARTNER_SOURCES = ("seeded", "published")
#: sha256 of the published ``{split}_right_idx.txt`` files (one integer and a newline per line)
PUBLISHED_SHA256 = {
    "train": "8252247196c29915a22ba174b0473df560e1351211473715a7978d57df286110",
    "val": "078442410dfa53789496693255813e73285ac5d04edbf13585170d289ab54759",
    "test": "fa6690780ab985905caf52b0ce3df73b9cf9b65f27eeb94f2784ad3f0526294e",
}
#: split -> (low, high, size) of the published draws, in the order they were drawn after np.random.seed(0)
PUBLISHED_DRAWS = {"train": (0, 50_000, 50_000), "val": (50_000, 60_000, 60_000), "test": (0, 10_000, 10_000)}


def published_text(partners: np.ndarray) -> bytes:
    """The text form of a published partner file: one integer per line, each line ending in a newline."""
    return "".join(f"{int(value)}\n" for value in partners).encode()


def published_partners() -> dict[str, np.ndarray]:
    """Gama & Grassi's published right partners, regenerated and checked against their sha256.

    The val array has 60,000 entries as published; the val split uses its first 10,000.
    """
    rng = np.random.RandomState(0)  # the legacy global stream of np.random.seed(0)
    drawn = {
        split: rng.randint(low, high, size=size).astype(np.int64)
        for split, (low, high, size) in PUBLISHED_DRAWS.items()
    }
    for split, values in drawn.items():
        digest = hashlib.sha256(published_text(values)).hexdigest()
        if digest != PUBLISHED_SHA256[split]:
            raise CorruptDataError(
                f"numpy's legacy generator no longer reproduces the published Multi-MNIST {split} partners "
                f"(sha256 {digest[:12]}... instead of {PUBLISHED_SHA256[split][:12]}...); use partners=seeded"
            )
    return drawn


def compose(left: np.ndarray | Tensor, right: np.ndarray | Tensor) -> Tensor:
    """Overlay uint8 digits (N, 28, 28): left at 0:28, right at 6:34 of a 36x36 canvas, max, resize to 28.

    Vectorised over N (in chunks to bound memory); returns uint8 (N, 28, 28).
    """
    left, right = torch.as_tensor(left), torch.as_tensor(right)
    if left.shape != right.shape or left.shape[1:] != (DIGIT, DIGIT):
        raise ValueError(f"left and right must both be (N, 28, 28); got {tuple(left.shape)}, {tuple(right.shape)}")
    out = torch.empty(left.shape, dtype=torch.uint8)
    end = RIGHT_OFFSET + DIGIT
    for start in range(0, len(left), _CHUNK):
        stop = min(start + _CHUNK, len(left))
        canvas = torch.zeros(stop - start, 1, CANVAS, CANVAS, dtype=torch.uint8)
        canvas[:, 0, :DIGIT, :DIGIT] = left[start:stop]
        region = canvas[:, 0, RIGHT_OFFSET:end, RIGHT_OFFSET:end]
        canvas[:, 0, RIGHT_OFFSET:end, RIGHT_OFFSET:end] = torch.maximum(region, right[start:stop].to(torch.uint8))
        resized = torch.nn.functional.interpolate(canvas, size=(DIGIT, DIGIT), mode=RESIZE_MODE)
        out[start:stop] = resized[:, 0]
    return out


def normalize(images: Tensor) -> Tensor:
    """uint8 pixels -> float32 ``(x / 255 - 0.1307) / 0.3081`` (torchvision ToTensor + Normalize)."""
    return (images.to(torch.float32) / 255.0 - MEAN) / STD


@dataclass
class MultiMnistSplit:
    """One split: composed images, and indices into the MNIST part the digits come from."""

    images: Tensor  # uint8 (n, 28, 28)
    left_index: Tensor  # int64 (n,)
    right_index: Tensor  # int64 (n,)
    labels_left: Tensor  # int64 (n,)
    labels_right: Tensor  # int64 (n,)
    digits: Tensor  # uint8 MNIST images of the part (train or test) the indices point into

    def __len__(self) -> int:
        return len(self.images)


@dataclass
class MultiMnistData:
    splits: dict[str, MultiMnistSplit]
    checksums: dict[str, str]
    folder: Path


def cache_folder(seed: int, partners: str = "seeded") -> Path:
    return dataset_dir(NAME) / ("published" if partners == "published" else f"seed{int(seed)}")


def _partners(folder: Path, split: str, start: int, stop: int, seed: int, source: str = "seeded") -> np.ndarray:
    name = f"partners_{split}.npy"
    state = check_files(folder, [name])[name]
    if state == "ok":
        partners = load_npy(folder / name)
        if partners.shape == (stop - start,) and (
            len(partners) == 0 or (partners.min() >= start and partners.max() < stop)
        ):
            return partners.astype(np.int64)
    elif state == "corrupted":
        raise CorruptDataError(
            f"the Multi-MNIST partner indices {folder / name} are corrupted (sha256 differs from the manifest); "
            + _redraw_hint(seed, folder)
        )
    # missing, or drawn for an MNIST of another size: draw them (deterministic in seed and split)
    if source == "published":
        low, high, _ = PUBLISHED_DRAWS[split]
        if (start, stop) != (low, low + (10_000 if split == "val" else high - low)):
            raise UserInputError(
                f"partners=published needs the full MNIST (the {split} split is images {start}..{stop - 1} here, "
                f"not {low}..{low + (10_000 if split == 'val' else high - low) - 1}); use partners=seeded"
            )
        partners = published_partners()[split][: stop - start]
    else:
        partners = draw_partners(split, start, stop, seed)
    atomic_save_npy(folder / name, partners)
    update_manifest(folder, [name], {f"partners_{split}": {"seed": int(seed), "start": start, "stop": stop}})
    return partners


def _images(folder: Path, split: str, digits: np.ndarray, left: np.ndarray, right: np.ndarray, key: dict) -> Tensor:
    name = f"images_{split}.npy"
    manifest = read_manifest(folder)
    if check_files(folder, [name])[name] == "ok" and manifest["meta"].get(f"images_{split}") == key:
        images = load_npy(folder / name)
        if images.shape == (len(left), DIGIT, DIGIT) and images.dtype == np.uint8:
            return torch.from_numpy(images)
    # missing, corrupted or stale (other MNIST / partners / resize): rebuild, it is derived data
    images = compose(torch.from_numpy(digits[left]), torch.from_numpy(digits[right]))
    atomic_save_npy(folder / name, images.numpy())
    update_manifest(folder, [name], {f"images_{split}": key})
    return images


def load_multi_mnist(
    seed: int = 0, mnist: MnistArrays | None = None, *, rebuild: bool = False, partners: str = "seeded"
) -> MultiMnistData:
    """Build (first time) or load the three splits from the MNIST cache: right partners drawn with partner
    seed ``seed`` (``partners="seeded"``) or Gama & Grassi's published ones (``partners="published"``)."""
    if int(seed) < 0:
        raise UserInputError(f"partner seed {seed!r} must be a non-negative integer")
    if partners not in PARTNER_SOURCES:
        raise UserInputError(f"partners={partners!r}; choose one of: {', '.join(PARTNER_SOURCES)}")
    mnist = load_mnist() if mnist is None else mnist
    folder = cache_folder(seed, partners)
    ranges = split_ranges(len(mnist.x_train), len(mnist.x_test))
    splits: dict[str, MultiMnistSplit] = {}
    with locked(folder):
        if rebuild:
            for split in SPLITS:
                for prefix in ("partners", "images"):
                    (folder / f"{prefix}_{split}.npy").unlink(missing_ok=True)
        for split, (part, start, stop) in ranges.items():
            digits, labels = (mnist.x_train, mnist.y_train) if part == "train" else (mnist.x_test, mnist.y_test)
            right = _partners(folder, split, start, stop, seed, partners)
            left = np.arange(start, stop, dtype=np.int64)
            manifest = read_manifest(folder)["files"]
            key = {
                "mnist": mnist.checksums.get(f"mnist/x_{part}.npy", "") or _array_sha(digits),
                "partners": manifest[f"partners_{split}.npy"],
                "resize": RESIZE_MODE,
            }
            images = _images(folder, split, digits, left, right, key)
            labels_t = torch.from_numpy(labels.astype(np.int64))
            left_t, right_t = torch.from_numpy(left), torch.from_numpy(right)
            splits[split] = MultiMnistSplit(
                images=images,
                left_index=left_t,
                right_index=right_t,
                labels_left=labels_t[left_t],
                labels_right=labels_t[right_t],
                digits=torch.from_numpy(digits),
            )
        files = read_manifest(folder)["files"]
    checksums = dict(mnist.checksums)
    prefix = f"{NAME}/{folder.name}"
    checksums.update({f"{prefix}/{name}": digest for name, digest in sorted(files.items())})
    return MultiMnistData(splits, checksums, folder)


def _array_sha(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


class MultiMnistSource:
    """The ``multi_mnist`` entry of ``mtlbench data``: builds the splits (partner seed 0) from MNIST."""

    name = NAME
    description = "Multi-MNIST: two overlapping MNIST digits (Sener & Koltun), built from the mnist cache"

    def fetch(self, source: Path | None = None, *, force: bool = False) -> str:
        if source is not None:
            raise UserInputError(
                "multi_mnist is built from the MNIST cache and takes no --source; "
                "give it to `mtlbench data fetch mnist --source PATH`"
            )
        data = load_multi_mnist(0, rebuild=force)
        sizes = ", ".join(f"{split} {len(data.splits[split])}" for split in SPLITS)
        return f"Multi-MNIST (partner seed 0) {'rebuilt' if force else 'ready'} in {data.folder}: {sizes}"

    def info(self) -> dict[str, Any]:
        root = dataset_dir(NAME)
        if not root.is_dir():
            return {}
        out: dict[str, Any] = {}
        for folder in sorted(root.glob("seed*")):
            manifest = read_manifest(folder)
            if not manifest["files"]:
                continue
            status = check_files(folder, manifest["files"])
            bad = [f"{name} {state}" for name, state in status.items() if state != "ok"]
            sizes = {
                split: manifest["meta"][f"partners_{split}"]["stop"] - manifest["meta"][f"partners_{split}"]["start"]
                for split in SPLITS
                if f"partners_{split}" in manifest["meta"]
            }
            out[folder.name] = {
                "path": str(folder),
                "status": "ok" if not bad else "needs a rebuild: " + ", ".join(bad),
                **sizes,
                "size_mb": round(folder_size(folder) / 2**20, 1),
            }
        return out


register_dataset(MultiMnistSource())

"""002's data-quality and data-quantity variants (Guo et al., section V-E, Table V) for ``nyud`` and
``pascal_context`` (problem options ``label_noise``, ``noise_sigma`` and ``subsample``).

Label noise (training annotations only; images, test labels and the edge/parts/saliency labels stay clean):

- segmentation: per training image, 5 of the categories present in it (all of them if fewer) are drawn at
  random; each pixel of a drawn category is changed, with probability ``label_noise`` (002: "at a rate of
  0.5"), to a wrong category -- one drawn uniformly among the other classes per drawn category (002 does not
  say whether the wrong category is drawn per pixel or per category: ours is per category);
- depth: additive Gaussian noise N(0, sigma_D^2) on the valid (non-zero) pixels, clipped at a small positive
  value so they stay valid; normals: additive N(0, sigma_N^2) per channel on the valid pixels, renormalised
  to unit length. 002 does not give sigma: ``noise_sigma`` = "D:N" (label units: metres, unit vectors).

The noise is a fixed property of the noisy dataset: drawn from ``(seed, image index)``, identical in every
epoch and run with the same seed.

Less data (``subsample`` = ``KIND:AMOUNT``; AMOUNT < 1 is a fraction, >= 1 a count):

- ``images:F`` -- a random fraction/count of the training images (the only kind for the real data: the
  NYUD-v2/PASCAL layouts carry no scene ids);
- ``scenes:F`` -- a random fraction/count of the scenes, all their images (002's "1/2 of the scenes",
  "1 scene");
- ``per_scene:F`` -- in every scene a random fraction/count of its images (002's "1/2 of the scans per
  scene", "12 scans per scene"). Scene kinds need the generated stand-in's scene ids (``source=synthetic``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from mtlbench.errors import UserInputError

KINDS = ("images", "scenes", "per_scene")
CATEGORIES = 5
IGNORE = 255
DEPTH_FLOOR = 1e-3


def parse_subsample(value: str) -> str:
    """``''`` or ``KIND:AMOUNT`` (module docstring)."""
    value = value.strip()
    if not value:
        return ""
    kind, _, amount = value.partition(":")
    number = float(amount)
    if kind not in KINDS or number <= 0:
        raise ValueError(value)
    return f"{kind}:{amount}"


parse_subsample.__name__ = "subsample (images|scenes|per_scene:AMOUNT, AMOUNT < 1 a fraction, >= 1 a count)"


def parse_sigma(value: str) -> str:
    """``D:N`` standard deviations of the depth and normals noise, both >= 0."""
    parts = [float(v) for v in value.split(":")]
    if len(parts) != 2 or min(parts) < 0:
        raise ValueError(value)
    return value


parse_sigma.__name__ = "noise_sigma (DEPTH:NORMALS standard deviations, e.g. 0.1:0.1)"


def _amount(amount: float, total: int) -> int:
    return max(1, min(total, int(amount) if amount >= 1 else round(amount * total)))


def subsample_indices(spec: str, n: int, scenes: np.ndarray | None, seed: int, problem: str) -> np.ndarray:
    """The sorted training indices a ``subsample`` spec keeps (``scenes``: scene id per image or None)."""
    kind, _, amount_text = spec.partition(":")
    amount = float(amount_text)
    rng = np.random.default_rng([seed, 2002])
    if kind == "images":
        return np.sort(rng.choice(n, size=_amount(amount, n), replace=False))
    if scenes is None:
        raise UserInputError(
            f"{problem}: subsample={spec} needs scene ids, which only the generated stand-in has (source=synthetic); "
            "the NYUD-v2/PASCAL-Context layouts carry none: use images:FRACTION"
        )
    ids = np.unique(scenes)
    if kind == "scenes":
        chosen = rng.choice(ids, size=_amount(amount, len(ids)), replace=False)
        return np.flatnonzero(np.isin(scenes, chosen))
    keep: list[int] = []
    for scene in ids:
        members = np.flatnonzero(scenes == scene)
        keep.extend(rng.choice(members, size=_amount(amount, len(members)), replace=False).tolist())
    return np.sort(np.asarray(keep, dtype=np.int64))


def noisy_segmentation(
    label: np.ndarray, rng: np.random.Generator, classes: int, rate: float, categories: int = CATEGORIES
) -> np.ndarray:
    """002's segmentation noise on one label map (module docstring); 255 stays ignored."""
    out = label.copy()
    present = [int(c) for c in np.unique(label) if c != IGNORE and c < classes]
    if not present or rate <= 0 or classes < 2:
        return out
    drawn = rng.choice(present, size=min(categories, len(present)), replace=False)
    for category in drawn:
        wrong = int(rng.integers(0, classes - 1))
        wrong += wrong >= category  # uniform over the other classes
        pixels = label == category
        flip = pixels & (rng.random(label.shape) < rate)
        out[flip] = wrong
    return out


def noisy_depth(depth: np.ndarray, rng: np.random.Generator, sigma: float) -> np.ndarray:
    valid = depth > 0
    noise = rng.normal(0.0, sigma, size=depth.shape).astype(np.float32)
    return np.where(valid, np.maximum(depth + noise, DEPTH_FLOOR), depth).astype(np.float32)


def noisy_normals(normals: np.ndarray, rng: np.random.Generator, sigma: float) -> np.ndarray:
    valid = np.linalg.norm(normals, axis=-1, keepdims=True) > 0
    noisy = normals + rng.normal(0.0, sigma, size=normals.shape).astype(np.float32)
    length = np.linalg.norm(noisy, axis=-1, keepdims=True)
    noisy = noisy / np.maximum(length, 1e-6)
    return np.where(valid, noisy, normals).astype(np.float32)


class NoisyLabels:
    """A training split whose annotations carry 002's noise; ``perturb`` is applied by the problem's
    ``load_sample`` (after decoding), deterministically per image index."""

    def __init__(self, split: Any, *, rate: float, sigma: str, classes: int, seed: int) -> None:
        self.split, self.rate, self.classes, self.seed = split, rate, classes, seed
        self.sigma_depth, self.sigma_normals = (float(v) for v in sigma.split(":"))

    def __len__(self) -> int:
        return len(self.split)

    def __getattr__(self, name: str) -> Any:  # get, scenes, ids, digest, ... of the wrapped split
        return getattr(self.split, name)

    def subset(self, indices: Sequence[int]) -> NoisyLabels:
        raise TypeError("subset the split before wrapping it")  # noise is keyed by the index: subset first

    def perturb(self, sample: dict[str, np.ndarray], index: int) -> dict[str, np.ndarray]:
        rng = np.random.default_rng([self.seed, 5002, int(index)])
        if "semseg" in sample:
            label = sample["semseg"]
            sample["semseg"] = noisy_segmentation(label.astype(np.int64), rng, self.classes, self.rate).astype(
                label.dtype
            )
        if "depth" in sample and self.sigma_depth > 0:
            sample["depth"] = noisy_depth(sample["depth"], rng, self.sigma_depth)
        if "normals" in sample and self.sigma_normals > 0:
            sample["normals"] = noisy_normals(sample["normals"], rng, self.sigma_normals)
        return sample


def apply_train_variants(split: Any, values: dict[str, Any], *, classes: int, problem: str) -> Any:
    """The training split with the ``subsample`` and ``label_noise`` options applied (in that order)."""
    if values.get("subsample"):
        scenes = np.asarray(split.scenes) if hasattr(split, "scenes") else None
        split = split.subset(subsample_indices(values["subsample"], len(split), scenes, values["seed"], problem))
    rate = float(values.get("label_noise") or 0.0)
    if rate < 0 or rate > 1:
        raise UserInputError(f"{problem}: option label_noise={rate} must be in [0, 1] (0 = clean)")
    if rate > 0:
        split = NoisyLabels(split, rate=rate, sigma=values["noise_sigma"], classes=classes, seed=values["seed"])
    return split


__all__ = [
    "KINDS",
    "NoisyLabels",
    "apply_train_variants",
    "noisy_depth",
    "noisy_normals",
    "noisy_segmentation",
    "parse_sigma",
    "parse_subsample",
    "subsample_indices",
]

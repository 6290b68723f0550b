"""Generated stand-ins for 002's dense benchmarks: presets ``NYUD`` (S 40 / D / N / E) and ``PASCAL``
(S 21 / P 7 / Sal / N / E) drawn with the renderer of :mod:`mtlbench.data.scenes` (synthetic_scenes).

Every target is a deterministic function of the rendered scene (labels, exact depth, analytic normals,
instances):

- ``semseg``: NYUD: 2 * trainId + far (far = rendered depth > 20 m or no depth), i.e. 38 of the 40 classes can occur;
  PASCAL: things map to VOC classes (person and rider 15, car 7, truck and bus 6, train 19, motorcycle 14,
  bicycle 2), vegetation to potted plant 16, everything else to background 0;
- ``depth``: the renderer's metres, x 0.1 for NYUD (indoor-like ranges; 0 on the sky = invalid);
  ``normals``: unit camera-frame normals (0 on the sky);
- ``edge``: label boundaries, the thinned non-zero 4-neighbour Laplacian of the semantic map (as PASCAL's
  edges come from its context labels);
- ``sal``: 1 on thing pixels (the objects), 0 elsewhere;
- ``parts``: on person and rider instances, by the pixel's relative height in its instance: head (top 18%),
  torso (to 50%; its outer fifth columns are arms: upper arm above 35%, lower arm below), upper legs (to
  75%), lower legs; 0 elsewhere; an image without such instances is all 255 (ignored);
- ``scenes``: image i belongs to scene i // ``images_per_scene`` (for scene-level data fractions).

Splits: the first 75% of the images train, the rest test.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mtlbench.data import scenes
from mtlbench.data.pascal_context import laplacian_edges
from mtlbench.errors import UserInputError

PRESETS = ("NYUD", "PASCAL")
FAR = 20.0
IGNORE = 255
ASPECT = {"NYUD": 0.75, "PASCAL": 1.0}  # height / width
#: the street renderer's metres -> the stand-in's (NYUD: x 0.1, indoor-like 0.2-10 m depths)
DEPTH_SCALE = {"NYUD": 0.1, "PASCAL": 1.0}

#: trainId -> VOC class (0 background)
TRAIN_TO_VOC = np.array([0, 0, 0, 0, 0, 0, 0, 0, 16, 0, 0, 15, 15, 7, 6, 6, 19, 14, 2], dtype=np.uint8)
PERSON_LIKE = (scenes.PERSON, scenes.RIDER)
ARRAYS = {
    "NYUD": ("image", "semseg", "depth", "normals", "edge"),
    "PASCAL": ("image", "semseg", "parts", "sal", "normals", "edge"),
}


@dataclass
class GeneratedSplit:
    """Stand-in split with the interface of :class:`mtlbench.data.nyud.RaggedSplit` (``get``, ``subset``)."""

    arrays: dict[str, np.ndarray]  # name -> (N, H, W[, C])
    ids: list[str]
    scenes: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)

    def get(self, name: str, index: int) -> np.ndarray:
        return self.arrays[name][index]

    def subset(self, indices: Sequence[int]) -> GeneratedSplit:
        idx = np.asarray(list(indices), dtype=np.int64)
        return GeneratedSplit({k: v[idx] for k, v in self.arrays.items()}, [self.ids[i] for i in idx], self.scenes[idx])

    def digest(self) -> str:
        h = hashlib.sha256()
        for name in sorted(self.arrays):
            h.update(name.encode())
            h.update(np.ascontiguousarray(self.arrays[name]).tobytes())
        return h.hexdigest()


def person_parts(instance: np.ndarray, label19: np.ndarray) -> np.ndarray:
    """(H, W) part map of one image (module docstring); all 255 without person-like instances."""
    parts = np.zeros(instance.shape, dtype=np.uint8)
    for k in np.unique(instance[np.isin(label19, PERSON_LIKE)]):
        if k == 0:
            continue
        mask = (instance == k) & np.isin(label19, PERSON_LIKE)
        rows, cols = np.nonzero(mask)
        top, bottom = rows.min(), rows.max() + 1
        left, right = cols.min(), cols.max() + 1
        rel = (np.arange(instance.shape[0])[:, None] - top + 0.5) / (bottom - top)
        col_rel = (np.arange(instance.shape[1])[None, :] - left + 0.5) / (right - left)
        outer = (col_rel < 0.2) | (col_rel > 0.8)
        label = np.select(
            [rel < 0.18, (rel < 0.5) & outer & (rel < 0.35), (rel < 0.5) & outer, rel < 0.5, rel < 0.75],
            [1, 3, 4, 2, 5],
            default=6,
        )
        parts[mask] = np.broadcast_to(label, instance.shape)[mask]
    if not parts.any():
        parts[:] = IGNORE
    return parts


def generate_images(
    preset: str, indices: Sequence[int], width: int, seed: int, instances: int = 8
) -> dict[str, np.ndarray]:
    if preset not in PRESETS:
        raise UserInputError(f"unknown stand-in preset {preset!r}; choose one of: {', '.join(PRESETS)}")
    if width < 16 or width % 8:
        raise UserInputError(f"stand-in width={width} must be a multiple of 8, at least 16")
    height = max(8, round(width * ASPECT[preset] / 8) * 8)
    raw = scenes.generate(width, height, list(indices), seed=seed, instances=instances, normals=True)
    label19 = raw["label19"].astype(np.int64)
    depth = (
        np.stack([scenes.depth_from_disparity(d, width) for d in raw["disparity"]])
        if len(label19)
        else raw["disparity"]
    )
    far = (depth > FAR) | (depth == 0)
    depth = depth * DEPTH_SCALE[preset]
    out = {"image": raw["image"], "depth": depth.astype(np.float32), "normals": raw["normal"].astype(np.float32)}
    if preset == "NYUD":
        out["semseg"] = (2 * np.clip(label19, 0, 18) + far).astype(np.uint8)
    else:
        out["semseg"] = TRAIN_TO_VOC[np.clip(label19, 0, 18)]
        out["sal"] = (raw["instance"] > 0).astype(np.uint8)
        out["parts"] = (
            np.stack([person_parts(inst, lab) for inst, lab in zip(raw["instance"], label19, strict=True)])
            if len(label19)
            else np.zeros_like(out["sal"])
        )
    out["edge"] = (
        np.stack([laplacian_edges(s) for s in out["semseg"]]) if len(label19) else np.zeros_like(out["semseg"])
    )
    return {name: out[name] for name in ARRAYS[preset]}


def generate_splits(
    preset: str, *, n_images: int, width: int, seed: int, images_per_scene: int = 10, instances: int = 8
) -> dict[str, GeneratedSplit]:
    """The stand-in's train (first 75%) and test splits."""
    if n_images < 4:
        raise UserInputError(f"stand-in n_images={n_images} is too small; use at least 4")
    n_train = round(0.75 * n_images)
    out = {}
    for split, indices in (("train", range(0, n_train)), ("test", range(n_train, n_images))):
        arrays = generate_images(preset, indices, width, seed, instances)
        ids = [f"{preset.lower()}-{seed}-{i:06d}" for i in indices]
        out[split] = GeneratedSplit(arrays, ids, np.array([i // images_per_scene for i in indices]))
    return out

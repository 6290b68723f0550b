"""Generated street scenes with Cityscapes' three dense tasks (semantic labels, disparity, instances).

Cityscapes is licensed and cannot be fetched (000 section 3.3 relies on it), so the embedded default
is this procedural stand-in. A pinhole camera of focal length f = W * 2262/2048 pixels (Cityscapes'
fx at 2048 px), height h_c above a flat ground and stereo baseline b = 0.209 m looks along a street:

- ground plane (road, sidewalk, terrain; row y below the horizon y_h has depth Z = f h_c / (y - y_h));
- sky above the horizon (disparity invalid = 0, as often in Cityscapes);
- building facades, walls and fences on planes X = const along the street (depth Z = f X / (x - c_x)),
  a building closing the street far away, poles with traffic lights and signs, trees (vegetation);
- thing instances (person, rider, car, truck, bus, train, motorcycle, bicycle) as fronto-parallel
  silhouettes standing on the ground at depth Z, lateral position X.

Each pixel shows the nearest surface (z-buffer, i.e. occlusion by depth order) and its disparity is
exact: d = f b / Z in pixels at resolution W, the same units as Cityscapes' (d_raw - 1)/(256 * 2048/W).
Labels use the 19 Cityscapes trainIds (all 19 occur), mapped to the 7 categories by the official table.
Instance ids are 1..n per image on thing pixels, 0 elsewhere. Images are shaded by colour distributions
that overlap between classes, window/stripe textures in world coordinates, fog, brightness and noise.

Deterministic: image i of a dataset is drawn from ``numpy.random.SeedSequence([seed, i])``; rendering
is vectorised over images and surfaces (numpy). The data is cached like Cityscapes' (same arrays).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from mtlbench.data import register_dataset
from mtlbench.data.cache import atomic_save_npy, dataset_dir, folder_size, locked, read_manifest, verify_files
from mtlbench.data.cache import write_manifest as _write_manifest
from mtlbench.data.cityscapes import ARRAYS, load_split, split_file, to_categories, write_split
from mtlbench.errors import MissingDataError, UserInputError

NAME = "synthetic_scenes"
#: bump when the generator changes what it draws (it keys the cache folder)
GENERATOR_VERSION = 1
FOCAL_PER_WIDTH = 2262.0 / 2048.0
BASELINE = 0.209
SPLIT_FRACTIONS = (("train", 0.7), ("val", 0.15), ("test", 0.15))

# trainIds
ROAD, SIDEWALK, BUILDING, WALL, FENCE, POLE, LIGHT, SIGN, VEGETATION, TERRAIN, SKY = range(11)
PERSON, RIDER, CAR, TRUCK, BUS, TRAIN, MOTORCYCLE, BICYCLE = range(11, 19)

# part kinds and textures
BOX, ELLIPSE, SIDE = 0, 1, 2
PLAIN, WINDOWS, STRIPES, FOLIAGE = 0, 1, 2, 3

THING_PROBABILITIES = {
    PERSON: 0.22,
    RIDER: 0.08,
    CAR: 0.30,
    TRUCK: 0.08,
    BUS: 0.07,
    TRAIN: 0.05,
    MOTORCYCLE: 0.08,
    BICYCLE: 0.12,
}


@dataclass
class Scene:
    """One scene in world coordinates (metres; X right, Y down from the camera, Z forward).

    ``parts`` rows: kind, 5 geometry values, trainId, instance, r, g, b, texture. Geometry:
    BOX X0, X1, Ytop, Ybottom, Z; ELLIPSE Xc, Yc, rX, rY, Z; SIDE X, Z0, Z1, Ytop, Ybottom.
    Parts of one object share its depth; where two parts tie, the earlier row is in front.
    """

    horizon: float  # fraction of the image height
    camera_height: float
    road_center: float
    road_half_width: float
    sidewalk_width: float
    parts: list[list[float]] = field(default_factory=list)
    road_color: tuple[float, float, float] = (0.36, 0.36, 0.38)
    sidewalk_color: tuple[float, float, float] = (0.6, 0.57, 0.55)
    terrain_color: tuple[float, float, float] = (0.45, 0.5, 0.28)
    sky_color: tuple[float, float, float] = (0.55, 0.7, 0.9)
    fog_distance: float = 150.0
    brightness: float = 1.0
    noise: float = 0.02

    def add(
        self,
        kind: int,
        geometry: Sequence[float],
        label: int,
        instance: int,
        color: Sequence[float],
        texture: int = PLAIN,
    ) -> None:
        self.parts.append([kind, *geometry, label, instance, *color, texture])


# ------------------------------------------------------------------------------------------- sampling


def _jitter(rng: np.random.Generator, color: Sequence[float], amount: float) -> list[float]:
    shifts = rng.uniform(-amount, amount, len(color))
    return [min(1.0, max(0.0, float(c) + float(d))) for c, d in zip(color, shifts, strict=True)]


def _add_person(
    scene: Scene,
    rng: np.random.Generator,
    label: int,
    instance: int,
    x: float,
    z: float,
    lift: float = 0.0,
    scale: float = 1.0,
) -> None:
    ground = scene.camera_height - lift
    height = (1.2 if label == RIDER else 1.75) * scale * rng.uniform(0.9, 1.1)
    width = 0.6 * scale * rng.uniform(0.9, 1.1)
    shirt = list(rng.uniform(0.05, 0.95, 3))
    trousers = _jitter(rng, (0.2, 0.2, 0.3), 0.15)
    skin = _jitter(rng, (0.8, 0.62, 0.5), 0.1)
    top = ground - height
    head_ry = 0.09 * height
    scene.add(ELLIPSE, (x, top + head_ry, 0.17 * width, head_ry, z), label, instance, skin)
    scene.add(
        BOX, (x - 0.35 * width, x + 0.35 * width, top + 2 * head_ry, ground - 0.45 * height, z), label, instance, shirt
    )
    if label == PERSON:
        scene.add(
            BOX, (x - 0.3 * width, x - 0.04 * width, ground - 0.46 * height, ground, z), label, instance, trousers
        )
        scene.add(
            BOX, (x + 0.04 * width, x + 0.3 * width, ground - 0.46 * height, ground, z), label, instance, trousers
        )
    else:
        scene.add(
            BOX, (x - 0.32 * width, x + 0.32 * width, ground - 0.46 * height, ground, z), label, instance, trousers
        )


def _add_two_wheeler(scene: Scene, rng: np.random.Generator, label: int, instance: int, x: float, z: float) -> None:
    ground = scene.camera_height
    motor = label == MOTORCYCLE
    height = (1.2 if motor else 1.05) * rng.uniform(0.9, 1.1)
    width = (0.8 if motor else 0.6) * rng.uniform(0.9, 1.1)
    frame = list(rng.uniform(0.05, 0.95, 3))
    tyre = (0.08, 0.08, 0.08)
    wheel = 0.33 * height
    scene.add(
        BOX, (x - 0.12 * width, x + 0.12 * width, ground - height, ground - 0.1 * wheel, z), label, instance, frame
    )
    scene.add(
        BOX, (x - 0.5 * width, x + 0.5 * width, ground - height, ground - 0.9 * height, z), label, instance, frame
    )
    if motor:
        scene.add(
            BOX,
            (x - 0.35 * width, x + 0.35 * width, ground - 0.8 * height, ground - 0.35 * height, z),
            label,
            instance,
            frame,
        )
    scene.add(ELLIPSE, (x, ground - wheel, 0.15 * width, wheel, z), label, instance, tyre)


def _add_vehicle(scene: Scene, rng: np.random.Generator, label: int, instance: int, x: float, z: float) -> None:
    ground = scene.camera_height
    sizes = {CAR: (1.8, 1.5), TRUCK: (2.5, 3.3), BUS: (2.6, 3.1), TRAIN: (3.0, 3.8)}
    w0, h0 = sizes[label]
    width, height = w0 * rng.uniform(0.9, 1.1), h0 * rng.uniform(0.9, 1.1)
    left, right, top = x - width / 2, x + width / 2, ground - height
    if label == CAR:
        body = list(rng.uniform(0.05, 0.95, 3))
    elif label == BUS:
        body = _jitter(rng, (0.75, 0.7, 0.2) if rng.random() < 0.5 else (0.2, 0.4, 0.75), 0.2)
    elif label == TRAIN:
        body = _jitter(rng, (0.8, 0.8, 0.8) if rng.random() < 0.5 else (0.75, 0.2, 0.2), 0.15)
    else:
        body = _jitter(rng, (0.85, 0.85, 0.85), 0.2)
    glass = _jitter(rng, (0.15, 0.18, 0.22), 0.05)
    tyre = (0.06, 0.06, 0.06)
    wheel_h = 0.16 * height if label == CAR else 0.1 * height
    # details first: on ties the earlier part is in front
    if label == CAR:
        scene.add(
            BOX,
            (left + 0.2 * width, right - 0.2 * width, top + 0.05 * height, top + 0.38 * height, z),
            label,
            instance,
            glass,
        )
        scene.add(BOX, (left + 0.12 * width, right - 0.12 * width, top, top + 0.45 * height, z), label, instance, body)
        scene.add(BOX, (left, right, top + 0.45 * height, ground - wheel_h, z), label, instance, body)
    elif label == TRUCK:
        scene.add(
            BOX,
            (left + 0.15 * width, right - 0.15 * width, top + 0.45 * height, top + 0.62 * height, z),
            label,
            instance,
            glass,
        )
        scene.add(
            BOX,
            (left + 0.05 * width, right - 0.05 * width, top + 0.4 * height, ground - wheel_h, z),
            label,
            instance,
            body,
        )
        scene.add(BOX, (left, right, top, top + 0.4 * height, z), label, instance, _jitter(rng, body, 0.3))
    else:  # bus, train: one body with a band of windows
        scene.add(
            BOX,
            (left + 0.06 * width, right - 0.06 * width, top + 0.12 * height, top + 0.45 * height, z),
            label,
            instance,
            glass,
        )
        scene.add(BOX, (left, right, top, ground - wheel_h, z), label, instance, body)
    scene.add(BOX, (left + 0.05 * width, left + 0.25 * width, ground - wheel_h, ground, z), label, instance, tyre)
    scene.add(BOX, (right - 0.25 * width, right - 0.05 * width, ground - wheel_h, ground, z), label, instance, tyre)


def _add_building_side(scene: Scene, rng: np.random.Generator, side: float, x_line: float) -> None:
    z = rng.uniform(0.5, 6.0)
    while z < 90.0:
        length = rng.uniform(6.0, 25.0)
        if rng.random() < 0.2:  # a gap shows what is behind
            z += rng.uniform(3.0, 12.0)
            continue
        height = rng.uniform(5.0, 22.0)
        color = _jitter(
            rng, [(0.55, 0.5, 0.45), (0.6, 0.6, 0.62), (0.6, 0.35, 0.28), (0.75, 0.7, 0.6)][rng.integers(4)], 0.1
        )
        setback = rng.uniform(0.0, 2.5)
        scene.add(
            SIDE,
            (side * (x_line + setback), z, z + length, scene.camera_height - height, scene.camera_height),
            BUILDING,
            0,
            color,
            WINDOWS,
        )
        z += length


def sample_scene(rng: np.random.Generator, instances: int) -> Scene:
    """Draw one random street scene with ``instances`` thing objects."""
    h_c = rng.uniform(1.1, 1.5)
    scene = Scene(
        horizon=rng.uniform(0.36, 0.5),
        camera_height=h_c,
        road_center=rng.uniform(-1.5, 1.5),
        road_half_width=rng.uniform(3.0, 6.0),
        sidewalk_width=rng.uniform(1.5, 4.0),
        road_color=tuple(_jitter(rng, (0.36, 0.36, 0.38), 0.08)),
        sidewalk_color=tuple(_jitter(rng, (0.6, 0.57, 0.55), 0.08)),
        terrain_color=tuple(_jitter(rng, (0.45, 0.5, 0.28), 0.08)),
        sky_color=tuple(_jitter(rng, (0.6, 0.72, 0.88), 0.1)),
        fog_distance=rng.uniform(80.0, 300.0),
        brightness=rng.uniform(0.75, 1.2),
        noise=rng.uniform(0.01, 0.04),
    )
    r, s, xr = scene.road_half_width, scene.sidewalk_width, scene.road_center
    lines = {-1.0: -(xr - r - s) + rng.uniform(0.0, 3.0), 1.0: xr + r + s + rng.uniform(0.0, 3.0)}
    instance = 0

    def next_instance() -> int:
        nonlocal instance
        instance += 1
        return instance

    # things (in front of everything else that stands on the street)
    labels = list(THING_PROBABILITIES)
    probabilities = np.array(list(THING_PROBABILITIES.values()))
    for _ in range(instances):
        label = int(rng.choice(labels, p=probabilities / probabilities.sum()))
        z = float(np.exp(rng.uniform(math.log(4.0), math.log(50.0))))
        if label in (PERSON,):
            side = 1.0 if rng.random() < 0.5 else -1.0
            x = xr + side * (r + rng.uniform(0.3, s - 0.3)) if rng.random() < 0.75 else xr + rng.uniform(-r, r)
            _add_person(scene, rng, label, next_instance(), x, z)
        else:
            half = {CAR: 0.9, TRUCK: 1.3, BUS: 1.3, TRAIN: 1.5}.get(label, 0.4)
            x = xr + rng.uniform(-r + half, r - half)
            if label == RIDER:
                bike = MOTORCYCLE if rng.random() < 0.4 else BICYCLE
                _add_person(scene, rng, RIDER, next_instance(), x, z - 0.05, lift=0.55)
                _add_two_wheeler(scene, rng, bike, next_instance(), x, z)
            elif label in (MOTORCYCLE, BICYCLE):
                _add_two_wheeler(scene, rng, label, next_instance(), x, z)
            else:
                _add_vehicle(scene, rng, label, next_instance(), x, z)

    # poles with traffic lights and signs at the kerb
    for _ in range(int(rng.integers(1, 6))):
        side = 1.0 if rng.random() < 0.5 else -1.0
        x = xr + side * (r + rng.uniform(0.2, 0.6))
        z = float(rng.uniform(4.0, 60.0))
        height = rng.uniform(3.5, 7.0)
        grey = _jitter(rng, (0.5, 0.5, 0.52), 0.1)
        if rng.random() < 0.45:
            lamp = [(0.9, 0.1, 0.1), (0.95, 0.75, 0.1), (0.1, 0.85, 0.3)][rng.integers(3)]
            scene.add(ELLIPSE, (x, h_c - height + 0.35, 0.12, 0.12, z), LIGHT, 0, lamp)
            scene.add(
                BOX,
                (x - 0.18, x + 0.18, h_c - height, h_c - height + 0.9, z),
                LIGHT,
                0,
                _jitter(rng, (0.12, 0.12, 0.12), 0.05),
            )
        else:
            color = [(0.9, 0.8, 0.1), (0.15, 0.3, 0.8), (0.85, 0.15, 0.15)][rng.integers(3)]
            if rng.random() < 0.5:
                scene.add(ELLIPSE, (x, h_c - height + 0.35, 0.35, 0.35, z), SIGN, 0, _jitter(rng, color, 0.08))
            else:
                scene.add(
                    BOX, (x - 0.35, x + 0.35, h_c - height, h_c - height + 0.7, z), SIGN, 0, _jitter(rng, color, 0.08)
                )
        scene.add(BOX, (x - 0.07, x + 0.07, h_c - height, h_c, z), POLE, 0, grey)

    # trees on the sidewalks
    for _ in range(int(rng.integers(0, 7))):
        side = 1.0 if rng.random() < 0.5 else -1.0
        x = xr + side * (r + s * rng.uniform(0.5, 0.95))
        z = float(rng.uniform(5.0, 70.0))
        radius = rng.uniform(1.2, 3.0)
        trunk = rng.uniform(2.0, 3.5)
        green = _jitter(rng, (0.22, 0.42, 0.16), 0.1)
        scene.add(
            ELLIPSE,
            (x, h_c - trunk - 0.8 * radius, radius, radius * rng.uniform(0.8, 1.2), z),
            VEGETATION,
            0,
            green,
            FOLIAGE,
        )
        scene.add(BOX, (x - 0.15, x + 0.15, h_c - trunk, h_c, z), VEGETATION, 0, _jitter(rng, (0.35, 0.25, 0.15), 0.05))

    # walls and fences in front of the buildings
    for side, line in lines.items():
        z = rng.uniform(2.0, 20.0)
        while z < 70.0:
            length = rng.uniform(4.0, 20.0)
            if rng.random() < 0.4:
                label = WALL if rng.random() < 0.5 else FENCE
                height = 1.1 if label == WALL else 1.6
                color = _jitter(rng, (0.62, 0.6, 0.58) if label == WALL else (0.5, 0.45, 0.38), 0.08)
                texture = PLAIN if label == WALL else STRIPES
                scene.add(SIDE, (side * (line - 0.3), z, z + length, h_c - height, h_c), label, 0, color, texture)
            z += length + rng.uniform(2.0, 15.0)
        _add_building_side(scene, rng, side, line)

    # the building that closes the street
    if rng.random() < 0.7:
        z = rng.uniform(70.0, 140.0)
        height = rng.uniform(10.0, 35.0)
        color = _jitter(rng, (0.6, 0.58, 0.55), 0.12)
        scene.add(BOX, (-200.0, 200.0, h_c - height, h_c, z), BUILDING, 0, color, WINDOWS)
    return scene


# ------------------------------------------------------------------------------------------ rendering


def camera(width: int, height: int, scene: Scene) -> tuple[float, float, float]:
    """(f, c_x, y_h) in pixels."""
    return FOCAL_PER_WIDTH * width, width / 2.0, scene.horizon * height


def render(
    scenes: Sequence[Scene], width: int, height: int, noise: Sequence[np.ndarray] | None = None
) -> dict[str, np.ndarray]:
    """Rasterise scenes (vectorised over scenes, parts and pixels; pixel centres at i + 0.5).

    Returns the cached arrays: image uint8 (B,H,W,3), label19 int8, disparity float32, instance int32.
    ``noise`` (per scene, (H,W,4) standard normal) adds image noise; none when omitted.
    """
    count = len(scenes)
    n_parts = max(1, max(len(s.parts) for s in scenes))
    parts = np.zeros((count, n_parts, 12))
    parts[:, :, 0] = -1  # padding: never drawn
    for index, scene in enumerate(scenes):
        if scene.parts:
            parts[index, : len(scene.parts)] = np.asarray(scene.parts, dtype=np.float64)
    f = FOCAL_PER_WIDTH * width
    cx = width / 2.0
    yh = np.array([s.horizon * height for s in scenes])[:, None, None]  # (B,1,1)
    hc = np.array([s.camera_height for s in scenes])[:, None, None]
    xs = (np.arange(width) + 0.5)[None, None, :]  # (1,1,W)
    ys = (np.arange(height) + 0.5)[None, :, None]  # (1,H,1)

    # parts on the last axis (contiguous for the arg-min): per column (B,1,W,P), per pixel (B,H,W,P)
    def col(i: int) -> np.ndarray:
        return parts[:, :, i][:, None, None, :].astype(np.float32)

    kind, g1, g2, g3, g4, g5 = col(0), col(1), col(2), col(3), col(4), col(5)
    x4 = xs[..., None].astype(np.float32)
    y4 = ys[..., None].astype(np.float32)
    yh4 = yh[..., None].astype(np.float32)
    inf, f32, cx32 = np.float32(np.inf), np.float32(f), np.float32(cx)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        # in each column, a part covers the image rows [top, bottom) at depth z_col
        front = ((kind == BOX) | (kind == ELLIPSE)) & (g5 > 0)
        z_front = np.where(front, g5, inf)
        px = (x4 - cx32) * z_front / f32  # world X of the column on the plane Z = g5
        ellipse_half = g4 * np.sqrt(np.maximum(0.0, 1.0 - ((px - g1) / g3) ** 2))
        box_cols = (kind == BOX) & (px >= g1) & (px < g2)
        ellipse_cols = (kind == ELLIPSE) & (np.abs(px - g1) <= g3)
        # side planes X = g1 along the street, Z in [g2, g3), Y in [g4, g5)
        z_side = f32 * g1 / (x4 - cx32)
        side_cols = (kind == SIDE) & (z_side > 0) & (z_side >= g2) & (z_side < g3)
        z_col = np.where(box_cols | ellipse_cols, z_front, np.where(side_cols, z_side, inf))
        y_top = np.where(box_cols | side_cols, np.where(box_cols, g3, g4), g2 - ellipse_half)
        y_bottom = np.where(box_cols | side_cols, np.where(box_cols, g4, g5), g2 + ellipse_half)
        finite = np.isfinite(z_col)
        top = np.where(finite, yh4 + f32 * y_top / z_col, inf)  # image rows: y = y_h + f Y / Z
        bottom = np.where(finite, yh4 + f32 * y_bottom / z_col, -inf)
        depth = np.where((y4 >= top) & (y4 < bottom), z_col, inf)  # (B,H,W,P)
        # the ground below the horizon: Z = f h_c / (y - y_h)
        ground_depth = np.broadcast_to(np.where(ys > yh, f * hc / (ys - yh), np.inf), (count, height, width))
    winner = np.argmin(depth, axis=-1)  # (B,H,W): the first of equal depths
    z_parts = np.take_along_axis(depth, winner[..., None], axis=-1)[..., 0].astype(np.float64)
    ground = ground_depth < z_parts
    sky = ~ground & ~np.isfinite(z_parts)
    picked = np.take_along_axis(parts, winner.reshape(count, -1)[:, :, None], axis=1).reshape(count, height, width, 12)
    # exact depth of the visible surface, in float64 from its parameters
    with np.errstate(divide="ignore", invalid="ignore"):
        z_exact = np.where(picked[..., 0] == SIDE, f * picked[..., 1] / (xs - cx), picked[..., 5])
    z = np.where(ground, ground_depth, np.where(sky, np.inf, z_exact))

    # ground classes from the lateral position X = (x - c_x) h_c / (y - y_h)
    with np.errstate(divide="ignore", invalid="ignore"):
        lateral = (xs - cx) * hc / (ys - yh)
    center = np.array([s.road_center for s in scenes])[:, None, None]
    road_half = np.array([s.road_half_width for s in scenes])[:, None, None]
    walk = np.array([s.sidewalk_width for s in scenes])[:, None, None]
    offset = np.abs(lateral - center)
    ground_label = np.where(offset < road_half, ROAD, np.where(offset < road_half + walk, SIDEWALK, TERRAIN))

    label = np.where(sky, SKY, np.where(ground, ground_label, picked[..., 6])).astype(np.int8)
    normal = surface_normals(picked[..., 0], picked[..., 1], ground, sky)
    instance = np.where(sky | ground, 0, picked[..., 7]).astype(np.int32)
    with np.errstate(divide="ignore"):
        disparity = np.where(sky, 0.0, f * BASELINE / z)
    disparity = disparity.astype(np.float32)

    # ------------------------------------------------------------- colours
    def per_scene(attribute: str) -> np.ndarray:
        """(B,1,1,3) for colours, (B,1,1) for scalars."""
        values = np.array([getattr(s, attribute) for s in scenes], dtype=np.float64)
        return values[:, None, None]

    color = picked[..., 8:11].copy()
    texture = picked[..., 11]
    z_finite = np.where(sky, 1.0, z)
    u_world = np.where(picked[..., 0] == SIDE, z_finite, (xs - cx) * z_finite / f)
    v_world = (ys - yh) * z_finite / f
    frac_u, frac_v = np.mod(u_world / 2.5, 1.0), np.mod(v_world / 3.0, 1.0)
    window = (texture == WINDOWS) & (frac_u > 0.3) & (frac_u < 0.75) & (frac_v > 0.35) & (frac_v < 0.8)
    window &= v_world < hc - 3.5
    color = np.where(window[..., None], color * 0.4 + np.array([0.08, 0.1, 0.14]), color)
    stripes = (texture == STRIPES) & (np.mod(u_world / 0.25, 1.0) < 0.5)
    color = np.where(stripes[..., None], color * 0.6, color)
    ground_color = np.where(
        (ground_label == ROAD)[..., None],
        per_scene("road_color"),
        np.where((ground_label == SIDEWALK)[..., None], per_scene("sidewalk_color"), per_scene("terrain_color")),
    )
    lane = (ground_label == ROAD) & (offset < 0.12) & (np.mod(z_finite / 6.0, 1.0) < 0.5)
    ground_color = np.where(lane[..., None], 0.9, ground_color)
    kerb_tiles = (ground_label == SIDEWALK) & (np.mod(z_finite, 1.0) < 0.08)
    ground_color = np.where(kerb_tiles[..., None], ground_color * 0.8, ground_color)
    color = np.where(ground[..., None], ground_color, color)
    sky_color = per_scene("sky_color")
    rows = (ys / height)[..., None]
    sky_pixels = np.clip(sky_color * (0.85 + 0.3 * rows), 0.0, 1.0) * np.ones_like(color)
    fog = 1.0 - np.exp(-z_finite / per_scene("fog_distance"))
    color = (1.0 - fog[..., None]) * color + fog[..., None] * sky_color
    color = np.where(sky[..., None], sky_pixels, color)
    color = color * per_scene("brightness")[..., None]
    if noise is not None:
        field_ = np.stack(noise)
        amplitude = per_scene("noise") * np.where(texture == FOLIAGE, 4.0, 1.0) * ~sky
        color = color + amplitude[..., None] * field_[..., :3] + 0.02 * field_[..., 3:4]
    image = np.clip(np.rint(color * 255.0), 0, 255).astype(np.uint8)
    return {"image": image, "label19": label, "disparity": disparity, "instance": instance, "normal": normal}


def surface_normals(kind: np.ndarray, first: np.ndarray, ground: np.ndarray, sky: np.ndarray) -> np.ndarray:
    """Unit normals (B,H,W,3) float32 in camera coordinates (X right, Y down, Z forward), facing the camera.

    ``kind`` and ``first`` are the visible part's kind and first geometry value (X of a SIDE plane). The
    ground (Y = h_c) has (0, -1, 0); a side plane X = X0 has (-sign X0, 0, 0); boxes and ellipses, flat
    at depth Z, have (0, 0, -1); the sky has none (all zero, NYUv2's invalid marker).
    """
    normal = np.zeros((*kind.shape, 3), dtype=np.float32)
    solid = ~ground & ~sky
    side = solid & (kind == SIDE)
    normal[..., 0] = np.where(side, -np.sign(first), 0.0)
    normal[..., 1] = np.where(ground, -1.0, 0.0)
    normal[..., 2] = np.where(solid & ~side, -1.0, 0.0)
    return normal


def depth_from_disparity(disparity: np.ndarray, width: int) -> np.ndarray:
    """Depth Z = f b / d in metres (float32) of a disparity map at ``width`` pixels; 0 where d = 0 (sky)."""
    d = np.asarray(disparity, dtype=np.float64)
    with np.errstate(divide="ignore"):
        depth = np.where(d > 0, FOCAL_PER_WIDTH * width * BASELINE / np.where(d > 0, d, 1.0), 0.0)
    return depth.astype(np.float32)


#: the 19 trainIds merged into 13 classes (the NYUv2 preset's segmentation): road, sidewalk, building,
#: wall+fence, pole+light+sign, vegetation, terrain, sky, person, rider, car, truck+bus+train, two-wheelers
TRAIN_TO_13 = np.array([0, 1, 2, 3, 3, 4, 4, 4, 5, 6, 7, 8, 9, 10, 11, 11, 11, 12, 12], dtype=np.int8)


def to_13_classes(label19: np.ndarray) -> np.ndarray:
    """19 trainIds -> the 13 classes of the NYUv2 preset (int8; -1 stays -1)."""
    label19 = np.asarray(label19)
    return np.where(label19 >= 0, TRAIN_TO_13[np.clip(label19, 0, 18)], -1).astype(np.int8)


def generate(
    width: int,
    height: int,
    indices: Sequence[int],
    *,
    seed: int,
    instances: int,
    chunk_pixels: int = 3_000_000,
    normals: bool = False,
) -> dict[str, np.ndarray]:
    """Images ``indices`` of the dataset with ``seed``: arrays image, label19, label7, disparity, instance
    (and ``normal`` (N,H,W,3) float32 when ``normals``)."""
    scenes, noise = [], []
    for index in indices:
        rng = np.random.default_rng(np.random.SeedSequence([seed, int(index)]))
        scenes.append(sample_scene(rng, instances))
        noise.append(rng.standard_normal((height, width, 4)))
    names = ("image", "label19", "disparity", "instance", *(("normal",) if normals else ()))
    out: dict[str, list[np.ndarray]] = {name: [] for name in names}
    step = 1
    if scenes:
        parts = max(len(s.parts) for s in scenes)
        step = max(1, chunk_pixels // max(1, parts * width * height))
    for start in range(0, len(scenes), step):
        arrays = render(scenes[start : start + step], width, height, noise[start : start + step])
        for name in names:
            out[name].append(arrays[name])
    result = {
        name: np.concatenate(chunks)
        if chunks
        else np.zeros((0, height, width, *((3,) if name == "normal" else ())), np.float32)
        for name, chunks in out.items()
    }
    result["label7"] = to_categories(result["label19"])
    return result


def split_indices(n_images: int) -> dict[str, range]:
    """Consecutive image indices of train/val/test (70/15/15 of ``n_images``, at least one each)."""
    n_val = max(1, round(n_images * SPLIT_FRACTIONS[1][1]))
    n_test = max(1, round(n_images * SPLIT_FRACTIONS[2][1]))
    n_train = n_images - n_val - n_test
    return {
        "train": range(0, n_train),
        "val": range(n_train, n_train + n_val),
        "test": range(n_train + n_val, n_images),
    }


# ------------------------------------------------------------------------------------------ the cache


def config_name(width: int, height: int, n_images: int, instances: int, seed: int, normals: bool = False) -> str:
    return f"{width}x{height}-n{n_images}-i{instances}-s{seed}-v{GENERATOR_VERSION}" + ("-normals" if normals else "")


def ensure(
    width: int, height: int, *, n_images: int, instances: int, seed: int, force: bool = False, normals: bool = False
) -> tuple[Path, dict[str, str]]:
    """Generate (once) and cache a scene dataset; return its folder and the checksums of its files.

    ``normals`` adds ``{split}_normal.npy`` (N,H,W,3) float32 (a separate cache folder)."""
    if n_images < 3:
        raise UserInputError(f"synthetic_scenes: n_images={n_images} is too small; use at least 3")
    if instances < 0:
        raise UserInputError(f"synthetic_scenes: instances={instances} must be >= 0")
    folder = dataset_dir(NAME) / config_name(width, height, n_images, instances, seed, normals)
    arrays_cached = (*ARRAYS, "normal") if normals else ARRAYS
    names = [split_file(split, array) for split in ("train", "val", "test") for array in arrays_cached]
    with locked(folder):
        if not force:
            try:
                return folder, verify_files(folder, names, dataset=NAME, command="mtlbench data fetch synthetic_scenes")
            except MissingDataError:
                pass  # missing or corrupted: (re)generate
        counts = {}
        for split, indices in split_indices(n_images).items():
            arrays = generate(width, height, indices, seed=seed, instances=instances, normals=normals)
            write_split(folder, split, {name: arrays[name] for name in ARRAYS})
            if normals:
                atomic_save_npy(folder / split_file(split, "normal"), arrays["normal"])
            counts[split] = len(indices)
        meta = {
            "source": "generated",
            "resolution": f"{width}x{height}",
            "n_images": n_images,
            "instances": instances,
            "seed": seed,
            "generator_version": GENERATOR_VERSION,
            "counts": counts,
            "has_instance": True,
            "normals": normals,
        }
        manifest = _write_manifest(folder, names, meta)
    return folder, {name: manifest["files"][name] for name in names}


def load(folder: Path, split: str, *, mmap: bool = True) -> dict[str, np.ndarray]:
    return load_split(folder, split, ARRAYS, mmap=mmap)


class ScenesSource:
    """The ``synthetic_scenes`` entry of ``mtlbench data``: generated locally, nothing to download."""

    name = NAME
    description = "Generated street scenes with Cityscapes' tasks S, D, I (the default stand-in for Cityscapes)"
    default: ClassVar[dict[str, int]] = {"width": 128, "height": 64, "n_images": 600, "instances": 8, "seed": 0}

    def fetch(self, source: Path | None = None, *, force: bool = False) -> str:
        if source is not None:
            raise UserInputError("synthetic_scenes is generated locally; it takes no --source")
        d = self.default
        folder, _ = ensure(
            d["width"], d["height"], n_images=d["n_images"], instances=d["instances"], seed=d["seed"], force=force
        )
        return f"synthetic_scenes generated in {folder} (other configurations are generated on first use)"

    def info(self) -> dict[str, Any]:
        root = dataset_dir(NAME)
        if not root.is_dir():
            return {}
        info: dict[str, Any] = {}
        for folder in sorted(p for p in root.iterdir() if p.is_dir()):
            manifest = read_manifest(folder)
            if manifest["files"]:
                info[folder.name] = {
                    "path": str(folder),
                    "bytes": folder_size(folder),
                    "counts": manifest["meta"].get("counts"),
                    "sha256": manifest["files"],
                }
        return info


SOURCE = register_dataset(ScenesSource())

"""The ImageNet-C common corruptions (Hendrycks & Dietterich, ICLR 2019) for images of any size, seeded.

001 (Elich et al., section 4.3, A3.1) corrupts the test inputs of Cityscapes and NYUv2 with the code of
``hendrycks/robustness`` (``ImageNet-C/imagenet_c/imagenet_c/corruptions.py``) at 5 severities. That code
hard-codes 224x224 images, needs Wand/ImageMagick (motion blur, snow) and frost image files; the PyPI port
``imagecorruptions`` 1.1.2 (bethgelab) fails on today's NumPy, scikit-image and setuptools. This module
re-implements the 15 common corruptions and the 4 extra ("validation") ones with numpy, scipy and Pillow,
with ImageNet-C's severity constants (the tuples below are those of the reference file), for any image
size and with an explicit ``numpy.random.Generator`` (no global RNG). Differences from the reference
(docs/fidelity.md, "Corruptions"): frost textures are generated procedurally (the reference ships six
photographs); motion blur is ImageMagick's one-sided Gaussian line kernel computed with numpy (as
``imagecorruptions`` does); elastic's pixel constants scale with the shorter side / 224; Canny,
distance transform and histogram equalisation in ``spatter`` are numpy/scipy equivalents of OpenCV's.

Input and output: ``uint8`` arrays ``(H, W, 3)``; internally ``[0, 1]`` floats; the result is clipped to
``[0, 255]`` and truncated to uint8 as the reference's ``np.uint8(corruption(x))``.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable

import numpy as np

from mtlbench.errors import UserInputError, unknown

COMMON = (
    "gaussian_noise",
    "shot_noise",
    "impulse_noise",
    "defocus_blur",
    "glass_blur",
    "motion_blur",
    "zoom_blur",
    "snow",
    "frost",
    "fog",
    "brightness",
    "contrast",
    "elastic_transform",
    "pixelate",
    "jpeg_compression",
)
EXTRA = ("speckle_noise", "gaussian_blur", "spatter", "saturate")
SEVERITIES = (1, 2, 3, 4, 5)
SUBSETS = {"common": COMMON, "extra": EXTRA, "all": COMMON + EXTRA}
MIN_SIDE = 8

# ImageNet-C's severity constants (hendrycks/robustness, imagenet_c/corruptions.py), severity 1..5
GAUSSIAN_NOISE = (0.08, 0.12, 0.18, 0.26, 0.38)  # std
SHOT_NOISE = (60, 25, 12, 5, 3)  # photons per unit intensity
IMPULSE_NOISE = (0.03, 0.06, 0.09, 0.17, 0.27)  # salt-and-pepper amount
SPECKLE_NOISE = (0.15, 0.2, 0.35, 0.45, 0.6)
GAUSSIAN_BLUR = (1, 2, 3, 4, 6)  # sigma
GLASS_BLUR = ((0.7, 1, 2), (0.9, 2, 1), (1, 2, 3), (1.1, 3, 2), (1.5, 4, 2))  # sigma, max shift, iterations
DEFOCUS_BLUR = ((3, 0.1), (4, 0.5), (6, 0.5), (8, 0.5), (10, 0.5))  # disk radius, alias blur
MOTION_BLUR = ((10, 3), (15, 5), (15, 8), (15, 12), (20, 15))  # radius, sigma
ZOOM_BLUR = ((1.0, 1.11, 0.01), (1.0, 1.16, 0.01), (1.0, 1.21, 0.02), (1.0, 1.26, 0.02), (1.0, 1.31, 0.03))
#: loc, scale, zoom, threshold, blur radius, blur sigma, image blend
SNOW = (
    (0.1, 0.3, 3, 0.5, 10, 4, 0.8),
    (0.2, 0.3, 2, 0.5, 12, 4, 0.7),
    (0.55, 0.3, 4, 0.9, 12, 8, 0.7),
    (0.55, 0.3, 4.5, 0.85, 12, 8, 0.65),
    (0.55, 0.3, 2.5, 0.85, 12, 12, 0.55),
)
FROST = ((1, 0.4), (0.8, 0.6), (0.7, 0.7), (0.65, 0.7), (0.6, 0.75))  # image weight, frost weight
FOG = ((1.5, 2), (2, 2), (2.5, 1.7), (2.5, 1.5), (3, 1.4))  # strength, wibble decay
BRIGHTNESS = (0.1, 0.2, 0.3, 0.4, 0.5)  # added to HSV value
CONTRAST = (0.4, 0.3, 0.2, 0.1, 0.05)
SATURATE = ((0.3, 0), (0.1, 0), (2, 0), (5, 0.1), (20, 0.2))  # HSV saturation * a + b
JPEG_QUALITY = (25, 18, 15, 10, 7)
PIXELATE = (0.6, 0.5, 0.4, 0.3, 0.25)
#: (alpha, sigma, affine jitter) in pixels of a 224-pixel image; the reference writes 244 * (...), a typo its
#: authors keep ("nothing is incorrect")
ELASTIC = (
    (244 * 2, 244 * 0.7, 244 * 0.1),
    (244 * 2, 244 * 0.08, 244 * 0.2),
    (244 * 0.05, 244 * 0.01, 244 * 0.02),
    (244 * 0.07, 244 * 0.01, 244 * 0.02),
    (244 * 0.12, 244 * 0.01, 244 * 0.02),
)
#: loc, scale, sigma, threshold, intensity, mud (1) or water (0)
SPATTER = (
    (0.65, 0.3, 4, 0.69, 0.6, 0),
    (0.65, 0.3, 3, 0.68, 0.6, 0),
    (0.65, 0.3, 2, 0.68, 0.5, 0),
    (0.65, 0.3, 1, 0.65, 1.5, 1),
    (0.67, 0.4, 1, 0.65, 1.5, 1),
)

Corruption = Callable[[np.ndarray, int, np.random.Generator], np.ndarray]


# ------------------------------------------------------------------------------------------ helpers
def _gaussian(x: np.ndarray, sigma: float, *, mode: str = "nearest", truncate: float = 4.0) -> np.ndarray:
    """scikit-image's ``gaussian`` (channels kept apart): scipy's filter over the two spatial axes."""
    from scipy.ndimage import gaussian_filter

    sigmas = (sigma, sigma) + (0,) * (x.ndim - 2)
    return gaussian_filter(x, sigmas, mode=mode, truncate=truncate)


def _gray(x: np.ndarray) -> np.ndarray:
    """OpenCV's RGB -> gray weights (ITU-R BT.601)."""
    return x[..., 0] * 0.299 + x[..., 1] * 0.587 + x[..., 2] * 0.114


def _box3(x: np.ndarray) -> np.ndarray:
    """OpenCV's ``blur(x, (3, 3))`` (normalised box filter, reflect-101 border)."""
    from scipy.ndimage import uniform_filter

    return uniform_filter(x, size=3, mode="mirror")


def _gaussian_kernel_1d(size: int, sigma: float) -> np.ndarray:
    """OpenCV's ``getGaussianKernel`` for sigma > 0."""
    offsets = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    weights = np.exp(-(offsets**2) / (2.0 * sigma**2))
    return weights / weights.sum()


def disk_kernel(radius: float, alias_blur: float) -> np.ndarray:
    """ImageNet-C's defocus kernel: a normalised disk, anti-aliased with a small Gaussian (3x3 up to
    radius 8 on a 17x17 grid, else 5x5 on a (2r+1)^2 grid; reflect-101 border as ``cv2.GaussianBlur``)."""
    from scipy.ndimage import correlate1d

    half = 8 if radius <= 8 else int(radius)
    size = 3 if radius <= 8 else 5
    grid = np.arange(-half, half + 1)
    yy, xx = np.meshgrid(grid, grid, indexing="ij")
    disk = ((xx**2 + yy**2) <= radius**2).astype(np.float64)
    disk /= disk.sum()
    g = _gaussian_kernel_1d(size, alias_blur)
    return correlate1d(correlate1d(disk, g, axis=0, mode="mirror"), g, axis=1, mode="mirror")


def plasma_fractal(size: int, decay: float, rng: np.random.Generator) -> np.ndarray:
    """A ``size`` x ``size`` (a power of two) diamond-square height map in [0, 1] (wrapping at the borders),
    with the random displacement starting at 100 x U(-100, 100) and divided by ``decay`` every level, as
    ImageNet-C's fog (after FLHerne/mapgen)."""
    if size < 2 or size & (size - 1):
        raise ValueError(f"plasma_fractal: size {size} is not a power of two >= 2")
    grid = np.zeros((size, size), dtype=np.float64)
    step, amplitude = size, 100.0

    def jitter(total: np.ndarray) -> np.ndarray:
        return total / 4.0 + amplitude * rng.uniform(-amplitude, amplitude, total.shape)

    while step >= 2:
        half = step // 2
        corners = grid[0::step, 0::step]
        # square step: the centre of every square is the mean of its four corners plus noise
        around = corners + np.roll(corners, -1, axis=0)
        around = around + np.roll(around, -1, axis=1)
        grid[half::step, half::step] = jitter(around)
        # diamond step: the edge midpoints from the two adjacent corners and the two adjacent centres
        centres = grid[half::step, half::step]
        corners = grid[0::step, 0::step]
        top = centres + np.roll(centres, 1, axis=0) + corners + np.roll(corners, -1, axis=1)
        grid[0::step, half::step] = jitter(top)
        left = centres + np.roll(centres, 1, axis=1) + corners + np.roll(corners, -1, axis=0)
        grid[half::step, 0::step] = jitter(left)
        step //= 2
        amplitude /= decay
    grid -= grid.min()
    peak = grid.max()
    return grid / peak if peak > 0 else grid


def clipped_zoom(x: np.ndarray, factor: float) -> np.ndarray:
    """Zoom into the centre of ``x`` (H, W[, C]) by ``factor`` >= 1 (bilinear) and keep the central H x W."""
    from scipy.ndimage import zoom

    h, w = x.shape[:2]
    ch, cw = math.ceil(h / factor), math.ceil(w / factor)
    top, left = (h - ch) // 2, (w - cw) // 2
    crop = x[top : top + ch, left : left + cw]
    factors = (factor, factor) + (1,) * (x.ndim - 2)
    out = zoom(crop, factors, order=1)
    out = np.pad(out, [(0, max(0, h - out.shape[0])), (0, max(0, w - out.shape[1]))] + [(0, 0)] * (x.ndim - 2), "edge")
    t, s = (out.shape[0] - h) // 2, (out.shape[1] - w) // 2
    return out[t : t + h, s : s + w]


def motion_kernel(radius: int, sigma: float) -> np.ndarray:
    """ImageMagick's motion-blur weights: a one-sided Gaussian over 2 radius + 1 taps, normalised."""
    taps = np.arange(2 * radius + 1, dtype=np.float64)
    weights = np.exp(-(taps**2) / (2.0 * sigma**2))
    return weights / weights.sum()


def motion_blur_array(x: np.ndarray, radius: int, sigma: float, angle: float) -> np.ndarray:
    """Blur (H, W[, C]) along the direction ``angle`` (degrees): tap i reads the pixel i steps ahead along
    the line (nearest pixel, edge pixels repeated), weighted by :func:`motion_kernel`."""
    weights = motion_kernel(radius, sigma)
    h, w = x.shape[:2]
    rows, cols = np.arange(h), np.arange(w)
    sin, cos = math.sin(math.radians(angle)), math.cos(math.radians(angle))
    out = np.zeros(x.shape, dtype=np.float64)
    for i, weight in enumerate(weights):
        dy, dx = math.ceil(i * sin - 0.5), math.ceil(i * cos - 0.5)
        if abs(dy) >= h or abs(dx) >= w:  # the line left the image: the remaining taps are dropped
            break
        out += weight * x[np.clip(rows + dy, 0, h - 1)][:, np.clip(cols + dx, 0, w - 1)]
    return out


def frost_texture(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """A procedural frost layer in [0, 255], (H, W, 3): ImageNet-C overlays crops of six frost photographs,
    which are not redistributed here. Ice needles (short bright strokes in random directions, branching
    from random seeds), a soft plasma haze, and a pale blue-white tint."""
    from scipy.ndimage import gaussian_filter

    area = height * width
    layer = np.zeros((height, width), dtype=np.float64)
    n_seeds = max(4, area // 400)
    seeds_y = rng.uniform(0, height, n_seeds)
    seeds_x = rng.uniform(0, width, n_seeds)
    branches = 6
    length = max(4.0, 0.08 * min(height, width))
    angles = rng.uniform(0, 2 * np.pi, (n_seeds, branches))
    lengths = rng.uniform(0.3, 1.0, (n_seeds, branches)) * length
    steps = np.linspace(0.0, 1.0, int(length) + 1)
    ys = seeds_y[:, None, None] + np.sin(angles)[..., None] * lengths[..., None] * steps
    xs = seeds_x[:, None, None] + np.cos(angles)[..., None] * lengths[..., None] * steps
    brightness = np.broadcast_to(rng.uniform(0.4, 1.0, (n_seeds, branches, 1)), ys.shape)
    inside = (ys >= 0) & (ys < height) & (xs >= 0) & (xs < width)
    np.maximum.at(layer, (ys[inside].astype(int), xs[inside].astype(int)), brightness[inside])
    layer = np.maximum(layer, gaussian_filter(layer, 0.7) * 2.0)
    size = 1 << max(1, (max(height, width) - 1).bit_length())
    haze = plasma_fractal(size, 2.0, rng)[:height, :width]
    frost = np.clip(0.25 + 0.6 * layer + 0.35 * haze, 0.0, 1.0)
    tint = np.array([0.86, 0.93, 1.0])
    return frost[..., None] * tint * 255.0


def _hsv_value_scale(x: np.ndarray, new_value: np.ndarray) -> np.ndarray:
    """The RGB image with HSV value replaced by ``new_value`` (hue and saturation kept): RGB scales by V'/V;
    a black pixel (V = 0, hue 0, saturation 0) becomes gray V'."""
    value = x.max(axis=-1, keepdims=True)
    scale = np.divide(new_value[..., None], value, out=np.zeros_like(value), where=value > 0)
    return np.where(value > 0, x * scale, new_value[..., None])


# ------------------------------------------------------------------------------------------ corruptions
def gaussian_noise(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    return x + rng.normal(size=x.shape, scale=GAUSSIAN_NOISE[severity - 1])


def shot_noise(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    photons = SHOT_NOISE[severity - 1]
    return rng.poisson(x * photons) / photons


def impulse_noise(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """scikit-image's ``random_noise(mode='s&p')``: each value flips with probability ``amount`` to 1 or 0
    (half each)."""
    amount = IMPULSE_NOISE[severity - 1]
    flipped = rng.random(x.shape) <= amount
    salted = rng.random(x.shape) <= 0.5
    out = x.copy()
    out[flipped & salted] = 1.0
    out[flipped & ~salted] = 0.0
    return out


def speckle_noise(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    return x + x * rng.normal(size=x.shape, scale=SPECKLE_NOISE[severity - 1])


def gaussian_blur(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    return _gaussian(x, GAUSSIAN_BLUR[severity - 1])


def glass_blur(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Blur, then swap every pixel (bottom-right to top-left, ``iterations`` passes) with a random neighbour
    at most ``shift`` - 1 away (numpy's exclusive upper bound, as the reference), then blur again."""
    sigma, shift, iterations = GLASS_BLUR[severity - 1]
    blurred = np.floor(np.clip(_gaussian(x, sigma), 0, 1) * 255.0)  # the reference's np.uint8 round trip
    h, w = x.shape[:2]
    rows = list(range(h - shift, shift, -1))
    cols = list(range(w - shift, shift, -1))
    source = list(range(h * w))  # the pixel now at each position (swaps permute pixels)
    for _ in range(iterations):
        offsets = rng.integers(-shift, shift, size=(len(rows) * len(cols), 2)).tolist()
        k = 0
        for r in rows:
            base = r * w
            for c in cols:
                dx, dy = offsets[k]
                k += 1
                i, j = base + c, (r + dy) * w + c + dx
                source[i], source[j] = source[j], source[i]
    shuffled = blurred.reshape(h * w, -1)[np.asarray(source)].reshape(x.shape) / 255.0
    return _gaussian(shuffled, sigma)


def defocus_blur(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    from scipy.ndimage import correlate

    radius, alias = DEFOCUS_BLUR[severity - 1]
    kernel = disk_kernel(radius, alias)
    return np.stack([correlate(x[..., c], kernel, mode="mirror") for c in range(x.shape[-1])], axis=-1)


def motion_blur(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    radius, sigma = MOTION_BLUR[severity - 1]
    return motion_blur_array(x, radius, sigma, rng.uniform(-45, 45))


def zoom_blur(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    start, stop, step = ZOOM_BLUR[severity - 1]
    factors = np.arange(start, stop, step)
    x = x.astype(np.float32).astype(np.float64)  # the reference zooms float32 images
    out = np.zeros_like(x)
    for factor in factors:
        out += clipped_zoom(x, float(factor))
    return (x + out) / (len(factors) + 1)


def snow(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    loc, scale, zoom, threshold, radius, sigma, blend = SNOW[severity - 1]
    h, w = x.shape[:2]
    layer = rng.normal(size=(h, w), loc=loc, scale=scale)
    layer = clipped_zoom(layer, zoom)
    layer[layer < threshold] = 0
    layer = np.clip(layer, 0, 1)
    layer = motion_blur_array(layer, radius, sigma, rng.uniform(-135, -45))
    layer = (np.round(layer * 255.0) / 255.0)[..., None]  # the reference's 8-bit snow layer
    x = blend * x + (1 - blend) * np.maximum(x, _gray(x)[..., None] * 1.5 + 0.5)
    return x + layer + np.rot90(layer, k=2)


def frost(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    image_weight, frost_weight = FROST[severity - 1]
    h, w = x.shape[:2]
    return image_weight * x + frost_weight * frost_texture(h, w, rng) / 255.0


def fog(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    strength, decay = FOG[severity - 1]
    h, w = x.shape[:2]
    size = 1 << max(1, (max(h, w) - 1).bit_length())
    peak = x.max()
    x = x + strength * plasma_fractal(size, decay, rng)[:h, :w, None]
    return x * peak / (peak + strength)


def brightness(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """HSV value + c (clipped to 1), hue and saturation kept."""
    value = x.max(axis=-1)
    return _hsv_value_scale(x, np.clip(value + BRIGHTNESS[severity - 1], 0, 1))


def contrast(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    means = x.mean(axis=(0, 1), keepdims=True)
    return (x - means) * CONTRAST[severity - 1] + means


def saturate(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """HSV saturation * a + b (clipped to [0, 1]), hue and value kept: RGB = V - (V - RGB) S'/S; a gray pixel
    (S = 0, hue 0 as scikit-image's) becomes (V, V (1 - S'), V (1 - S'))."""
    a, b = SATURATE[severity - 1]
    value = x.max(axis=-1, keepdims=True)
    low = x.min(axis=-1, keepdims=True)
    sat = np.divide(value - low, value, out=np.zeros_like(value), where=value > 0)
    new = np.clip(sat * a + b, 0, 1)
    ratio = np.divide(new, sat, out=np.zeros_like(sat), where=sat > 0)
    colour = value - (value - x) * ratio
    gray = np.concatenate([value, value * (1 - new), value * (1 - new)], axis=-1)
    return np.where(sat > 0, colour, gray)


def _pil_round_trip(x: np.ndarray) -> object:
    from PIL import Image

    return Image.fromarray(np.uint8(np.clip(x, 0, 1) * 255.0 + 0.5))


def jpeg_compression(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    from PIL import Image

    buffer = io.BytesIO()
    _pil_round_trip(x).save(buffer, "JPEG", quality=JPEG_QUALITY[severity - 1])  # type: ignore[attr-defined]
    buffer.seek(0)
    return np.asarray(Image.open(buffer).convert("RGB"), dtype=np.float64) / 255.0


def pixelate(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    from PIL import Image

    h, w = x.shape[:2]
    c = PIXELATE[severity - 1]
    image = _pil_round_trip(x)
    small = image.resize((max(1, int(w * c)), max(1, int(h * c))), Image.BOX)  # type: ignore[attr-defined]
    return np.asarray(small.resize((w, h), Image.BOX), dtype=np.float64) / 255.0


def _affine_from_points(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The 2x3 affine map taking the three points ``src`` to ``dst`` (``cv2.getAffineTransform``)."""
    design = np.hstack([src, np.ones((3, 1))])
    return np.linalg.solve(design, dst).T


def elastic_transform(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """A random affine jitter of three points (reflect-101 border), then a smooth random displacement field
    (uniform noise, Gaussian-smoothed, times alpha), bilinear; pixel constants scale with min(H, W) / 224."""
    from scipy.ndimage import affine_transform, map_coordinates

    h, w = x.shape[:2]
    scale = min(h, w) / 224.0
    alpha, sigma, jitter = (v * scale for v in ELASTIC[severity - 1])
    centre = np.array([w // 2, h // 2], dtype=np.float64)  # (x, y)
    half = min(h, w) // 3
    src = np.array([centre + half, [centre[0] + half, centre[1] - half], centre - half])
    dst = src + rng.uniform(-jitter, jitter, size=src.shape)
    forward = np.vstack([_affine_from_points(src, dst), [0, 0, 1]])  # (x, y, 1) -> (x', y', 1)
    inverse = np.linalg.inv(forward)
    swap = np.array([[0, 1, 0], [1, 0, 0], [0, 0, 1]], dtype=np.float64)  # (x, y) <-> (row, col)
    inv_rc = swap @ inverse @ swap
    warped = np.stack(
        [
            affine_transform(x[..., c], inv_rc[:2, :2], offset=inv_rc[:2, 2], order=1, mode="mirror")
            for c in range(x.shape[-1])
        ],
        axis=-1,
    )
    dx = _gaussian(rng.uniform(-1, 1, size=(h, w)), sigma, mode="reflect", truncate=3) * alpha
    dy = _gaussian(rng.uniform(-1, 1, size=(h, w)), sigma, mode="reflect", truncate=3) * alpha
    yy, xx = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    coords = [yy + dy, xx + dx]
    return np.stack(
        [map_coordinates(warped[..., c], coords, order=1, mode="reflect") for c in range(x.shape[-1])], axis=-1
    )


def _equalize_hist(image: np.ndarray) -> np.ndarray:
    """OpenCV's ``equalizeHist`` of a uint8 image."""
    counts = np.bincount(image.ravel(), minlength=256)
    cdf = np.cumsum(counts)
    first = cdf[np.nonzero(counts)[0][0]]
    total = image.size
    if total == first:
        return image.copy()
    lut = np.clip(np.round((cdf - first) * 255.0 / (total - first)), 0, 255).astype(np.uint8)
    return lut[image]


def _canny_like(image: np.ndarray, low: float, high: float) -> np.ndarray:
    """Edges of a uint8 image: Sobel L1 magnitude with hysteresis (strong > ``high``, weak > ``low`` kept where
    connected to a strong edge); OpenCV's Canny also thins by non-maximum suppression, which this omits."""
    from scipy.ndimage import label, sobel

    f = image.astype(np.float64)
    magnitude = np.abs(sobel(f, axis=1, mode="mirror")) + np.abs(sobel(f, axis=0, mode="mirror"))
    weak = magnitude > low
    labels, _ = label(weak, structure=np.ones((3, 3)))
    strong_labels = np.unique(labels[magnitude > high])
    return np.isin(labels, strong_labels[strong_labels > 0])


def spatter(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    from scipy.ndimage import correlate, distance_transform_edt

    loc, scale, sigma, threshold, intensity, mud = SPATTER[severity - 1]
    h, w = x.shape[:2]
    liquid = _gaussian(rng.normal(size=(h, w), loc=loc, scale=scale), sigma)
    liquid[liquid < threshold] = 0
    if mud == 0:  # water drops: pale turquoise, shaded by the distance to the drops' edges
        liquid8 = np.clip(liquid * 255.0, 0, 255).astype(np.uint8)
        edges = _canny_like(liquid8, 50, 150)
        dist = distance_transform_edt(~edges) if edges.any() else np.full((h, w), 20.0)
        dist = np.minimum(dist, 20.0)
        dist = _equalize_hist(_box3(dist).astype(np.uint8))
        emboss = np.array([[-2, -1, 0], [-1, 1, 1], [0, 1, 2]], dtype=np.float64)
        dist = np.clip(np.round(correlate(dist.astype(np.float64), emboss, mode="mirror")), 0, 255)
        dist = _box3(dist)
        m = liquid * dist
        peak = m.max()
        m = m / peak * intensity if peak > 0 else m
        colour = np.array([175, 238, 238]) / 255.0
        return x + m[..., None] * colour
    m = _gaussian((liquid > threshold).astype(np.float64), intensity)
    m[m < 0.8] = 0
    colour = np.array([63, 42, 20]) / 255.0 * m[..., None]
    return x * (1 - m[..., None]) + colour


CORRUPTIONS: dict[str, Corruption] = {
    fn.__name__: fn
    for fn in (
        gaussian_noise,
        shot_noise,
        impulse_noise,
        defocus_blur,
        glass_blur,
        motion_blur,
        zoom_blur,
        snow,
        frost,
        fog,
        brightness,
        contrast,
        elastic_transform,
        pixelate,
        jpeg_compression,
        speckle_noise,
        gaussian_blur,
        spatter,
        saturate,
    )
}


# ------------------------------------------------------------------------------------------ public API
def corruption_names(subset: str = "common") -> tuple[str, ...]:
    """The corruptions of ``subset``: common (ImageNet-C's 15), extra (its 4 validation ones) or all (19)."""
    if subset not in SUBSETS:
        raise unknown("corruption subset", subset, SUBSETS)
    return SUBSETS[subset]


def _generator(seed: int | np.random.Generator) -> np.random.Generator:
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def corrupt(image: np.ndarray, name: str, severity: int, *, seed: int | np.random.Generator = 0) -> np.ndarray:
    """``image`` (uint8, H x W x 3, both sides >= 8) corrupted by ``name`` at ``severity`` 1..5 -> uint8."""
    if name not in CORRUPTIONS:
        raise unknown("corruption", name, CORRUPTIONS)
    if severity not in SEVERITIES:
        raise UserInputError(f"corruption severity {severity!r} is not one of 1, 2, 3, 4, 5")
    array = np.asarray(image)
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3:
        raise UserInputError(
            f"corrupt: image of dtype {array.dtype} and shape {array.shape}; expected uint8 of shape (H, W, 3)"
        )
    if min(array.shape[:2]) < MIN_SIDE:
        raise UserInputError(f"corrupt: image of {array.shape[0]}x{array.shape[1]}; each side must be >= {MIN_SIDE}")
    out = CORRUPTIONS[name](array.astype(np.float64) / 255.0, severity, _generator(seed))
    return np.uint8(np.clip(out, 0.0, 1.0) * 255.0)  # truncation, as the reference's np.uint8


def corrupt_images(images: np.ndarray, name: str, severity: int, *, seed: int = 0) -> np.ndarray:
    """A stack (N, H, W, 3) of uint8 images, image i drawn with the generator of SeedSequence((seed, i)) --
    the same image gets the same corruption whatever batch it is in."""
    images = np.asarray(images)
    if images.ndim != 4:
        raise UserInputError(f"corrupt_images: images of shape {images.shape}; expected (N, H, W, 3)")
    return np.stack(
        [
            corrupt(image, name, severity, seed=np.random.default_rng(np.random.SeedSequence((seed, index))))
            for index, image in enumerate(images)
        ]
    )


__all__ = [
    "COMMON",
    "CORRUPTIONS",
    "EXTRA",
    "SEVERITIES",
    "clipped_zoom",
    "corrupt",
    "corrupt_images",
    "corruption_names",
    "disk_kernel",
    "frost_texture",
    "motion_blur_array",
    "motion_kernel",
    "plasma_fractal",
]

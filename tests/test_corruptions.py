"""The ImageNet-C corruptions: shape, dtype, monotone severity, determinism, hand-computed values."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from mtlbench.data import corruptions as C
from mtlbench.errors import UserInputError

#: corruptions whose difference from the clean image need not grow with the severity: frost trades image
#: weight for texture weight (its mean difference depends on the texture's brightness), elastic's
#: constants are not ordered (ImageNet-C: severities 1-2 smooth large fields, 3-5 small ones), pixelate
#: aliases on the box grid, saturate desaturates at severities 1-2 and saturates at 3-5, spatter's water
#: at severity 3 is paler (intensity 0.5) than at 2 (0.6)
NOT_MONOTONE = {"frost", "elastic_transform", "pixelate", "saturate", "spatter"}
RANDOM = {
    "gaussian_noise",
    "shot_noise",
    "impulse_noise",
    "glass_blur",
    "motion_blur",
    "snow",
    "frost",
    "fog",
    "elastic_transform",
    "speckle_noise",
    "spatter",
}


def make_image(h: int = 48, w: int = 64) -> np.ndarray:
    """A fixed image: a smooth random colour field, a red disk and a blue block, values in [25, 229]."""
    rng = np.random.default_rng(123)
    base = gaussian_filter(rng.random((h, w, 3)), (3, 3, 0))
    base = (base - base.min()) / (base.max() - base.min())
    yy, xx = np.mgrid[0:h, 0:w]
    base[((yy - h / 2) ** 2 + (xx - w / 3) ** 2) < (h / 4) ** 2] = [0.9, 0.2, 0.1]
    base[: h // 4, w // 2 :] = [0.1, 0.3, 0.8]
    return np.uint8(np.clip(0.1 + 0.8 * base, 0, 1) * 255)


IMAGE = make_image()


def test_names() -> None:
    assert len(C.COMMON) == 15 and len(C.EXTRA) == 4
    assert set(C.corruption_names("all")) == set(C.CORRUPTIONS)
    with pytest.raises(UserInputError, match="subset"):
        C.corruption_names("weather")


@pytest.mark.parametrize("name", C.COMMON + C.EXTRA)
def test_shape_dtype_determinism_and_severity(name: str) -> None:
    diffs = []
    for severity in C.SEVERITIES:
        out = C.corrupt(IMAGE, name, severity, seed=3)
        assert out.shape == IMAGE.shape and out.dtype == np.uint8
        assert np.array_equal(out, C.corrupt(IMAGE, name, severity, seed=3))  # same seed, same image
        diffs.append(float(np.abs(out.astype(np.float64) - IMAGE).mean()))
    assert diffs[0] > 0.5  # every corruption changes the image at severity 1
    if name not in NOT_MONOTONE:
        assert all(b >= a for a, b in itertools.pairwise(diffs)), diffs
    if name in RANDOM:
        assert not np.array_equal(C.corrupt(IMAGE, name, 3, seed=3), C.corrupt(IMAGE, name, 3, seed=4))


@pytest.mark.parametrize("name", C.COMMON + C.EXTRA)
def test_any_size(name: str) -> None:
    odd = make_image(23, 37)
    out = C.corrupt(odd, name, 5, seed=0)
    assert out.shape == (23, 37, 3) and out.dtype == np.uint8


def test_brightness_by_hand() -> None:
    # pixel (0.2, 0.4, 0.6): HSV value 0.6 -> 0.7 at severity 1, hue and saturation kept: RGB x 7/6
    x = np.array([[[0.2, 0.4, 0.6], [0.0, 0.0, 0.0]]])
    out = C.brightness(x, 1, np.random.default_rng(0))
    assert np.allclose(out[0, 0], [0.7 / 3, 1.4 / 3, 0.7])
    assert np.allclose(out[0, 1], [0.1, 0.1, 0.1])  # black: value 0 -> 0.1, gray
    # value already 0.95 at severity 5 (+0.5): clipped at 1
    assert np.allclose(C.brightness(np.array([[[0.95, 0.475, 0.0]]]), 5, np.random.default_rng(0)), [1.0, 0.5, 0.0])
    # the uint8 path truncates as the reference's np.uint8: (40, 80, 200) -> value 200/255 + 0.1
    ratio = (200 / 255 + 0.1) / (200 / 255)
    image = np.tile(np.array([40, 80, 200], dtype=np.uint8), (8, 8, 1))
    assert C.corrupt(image, "brightness", 1)[0, 0].tolist() == [int(40 * ratio), int(80 * ratio), 225]


def test_contrast_by_hand() -> None:
    x = np.zeros((2, 1, 3))
    x[0, 0], x[1, 0] = [0.2, 0.4, 0.6], [0.6, 0.8, 1.0]  # channel means 0.4, 0.6, 0.8
    out = C.contrast(x, 1, np.random.default_rng(0))  # (x - mean) * 0.4 + mean
    assert np.allclose(out[0, 0], [0.32, 0.52, 0.72]) and np.allclose(out[1, 0], [0.48, 0.68, 0.88])


def test_noises_with_a_fixed_generator() -> None:
    x = IMAGE.astype(np.float64) / 255.0
    noise = np.random.default_rng(7).normal(size=x.shape, scale=0.18)
    expected = np.uint8(np.clip(x + noise, 0, 1) * 255)
    assert np.array_equal(C.corrupt(IMAGE, "gaussian_noise", 3, seed=np.random.default_rng(7)), expected)
    photons = np.random.default_rng(7).poisson(x * 5) / 5
    assert np.array_equal(C.corrupt(IMAGE, "shot_noise", 4, seed=7), np.uint8(np.clip(photons, 0, 1) * 255))
    # impulse: about `amount` of the values flip, each to 0 or 255
    out = C.corrupt(IMAGE, "impulse_noise", 5, seed=1)
    changed = out != IMAGE
    assert abs(changed.mean() - 0.27) < 0.03
    assert set(np.unique(out[changed])) <= {0, 255}


def test_saturate_by_hand() -> None:
    rng = np.random.default_rng(0)
    # (0.2, 0.4, 0.8): V 0.8, S 0.75 -> 0.225 at severity 1 (x0.3): RGB = V - (V - x) * 0.3
    assert np.allclose(C.saturate(np.array([[[0.2, 0.4, 0.8]]]), 1, rng), [0.62, 0.68, 0.8])
    # gray (S 0, hue 0) -> S' = 0.1 at severity 4: (V, V 0.9, V 0.9)
    assert np.allclose(C.saturate(np.array([[[0.5, 0.5, 0.5]]]), 4, rng), [0.5, 0.45, 0.45])


def test_frost_formula() -> None:
    x = IMAGE.astype(np.float64) / 255.0
    texture = C.frost_texture(48, 64, np.random.default_rng(5))
    assert texture.shape == (48, 64, 3) and texture.min() >= 0 and texture.max() <= 255
    expected = np.uint8(np.clip(0.7 * x + 0.7 * texture / 255.0, 0, 1) * 255)
    assert np.array_equal(C.corrupt(IMAGE, "frost", 3, seed=5), expected)


def test_helpers() -> None:
    rng = np.random.default_rng(0)
    plasma = C.plasma_fractal(32, 2.0, rng)
    assert plasma.shape == (32, 32) and plasma.min() == 0.0 and plasma.max() == 1.0
    with pytest.raises(ValueError):
        C.plasma_fractal(24, 2.0, rng)
    for radius, alias in C.DEFOCUS_BLUR:  # radii 8 and 10 touch the grid's border, where the anti-aliasing
        total = C.disk_kernel(radius, alias).sum()  # blur reflects (reflect-101, as cv2.GaussianBlur) and adds mass
        assert np.isclose(total, 1.0) if radius < 8 else 1.0 < total < 1.03
    weights = C.motion_kernel(10, 3)
    assert np.isclose(weights.sum(), 1.0) and len(weights) == 21 and np.all(np.diff(weights) < 0)
    # angle 0: tap i reads the pixel i to the right, so an impulse spreads to its left with weights k_i
    impulse = np.zeros((5, 40))
    impulse[2, 30] = 1.0
    blurred = C.motion_blur_array(impulse, 10, 3, 0.0)
    assert np.allclose(blurred[2, 30 - np.arange(21)], weights) and np.isclose(blurred.sum(), 1.0)
    assert np.allclose(C.motion_blur_array(np.full((9, 9, 3), 0.3), 5, 2, 33.0), 0.3)  # constant stays
    assert np.allclose(C.clipped_zoom(IMAGE.astype(float), 1.0), IMAGE)
    flat = np.full((16, 24, 3), 77, dtype=np.uint8)
    for name in ("pixelate", "defocus_blur", "gaussian_blur", "zoom_blur", "motion_blur"):
        assert np.all(np.abs(C.corrupt(flat, name, 3).astype(int) - 77) <= 1), name


def test_corrupt_images_is_per_image() -> None:
    stack = np.stack([IMAGE, IMAGE[::-1].copy(), IMAGE])
    out = C.corrupt_images(stack, "gaussian_noise", 2, seed=9)
    assert out.shape == stack.shape and not np.array_equal(out[0], out[2])  # each image its own draw
    # the draw belongs to the index: the same image at index 1 of another stack gets index 1's noise
    assert not np.array_equal(C.corrupt_images(stack[1:], "gaussian_noise", 2, seed=9)[1], out[2])
    again = C.corrupt_images(stack[:2], "gaussian_noise", 2, seed=9)
    assert np.array_equal(again, out[:2])


def test_bad_input() -> None:
    with pytest.raises(UserInputError, match="corruption"):
        C.corrupt(IMAGE, "rain", 1)
    with pytest.raises(UserInputError, match="severity 0"):
        C.corrupt(IMAGE, "fog", 0)
    with pytest.raises(UserInputError, match="uint8"):
        C.corrupt(IMAGE.astype(np.float32), "fog", 1)
    with pytest.raises(UserInputError, match=">= 8"):
        C.corrupt(IMAGE[:4], "fog", 1)

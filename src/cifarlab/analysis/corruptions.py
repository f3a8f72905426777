"""CIFAR-10-C's corruptions (Hendrycks and Dietterich, "Benchmarking Neural Network Robustness to Common
Corruptions and Perturbations", ICLR 2019): the 15 of the benchmark and the 4 extra ones, with the severity
parameters of its released CIFAR generator (`make_cifar_c.py` in hendrycks/robustness), re-implemented
batch-wise on numpy and scipy.

    corrupt(images, "fog", severity=3, seed=0) -> uint8 images
      images: (N, 32, 32, 3) uint8; the result has the same shape and dtype.

What follows the reference exactly, and where it can't:
  - every result is truncated to uint8 (`np.uint8` of a clipped float), as the reference saves it;
    ImageMagick's motion blur (motion blur, snow's flakes) reaches 8 bits as ImageMagick 6 Q16 does: see
    magick_8bit.
  - the border modes are the reference's: repeat the edge for scikit-image's `gaussian` (gaussian and glass
    blur, spatter), mirror without repeating the edge for OpenCV's filters (defocus, elastic's affine warp),
    scipy's 'reflect' for elastic's displacement.
  - glass blur reproduces the reference's loop exactly, including what it really does: its "swap" is two
    assignments through numpy views, so each pixel takes its neighbour's value and nothing moves back.
    That makes every pass a single gather, thousands of times faster than the loop.
  - motion blur is ImageMagick's MotionBlurImage kernel (as the `imagecorruptions` package re-implements it):
    a one-sided Gaussian along the angle, taps rounded to whole pixels, the edge repeated.
  - frost blends crops of the reference's frost pictures, reduced 5x the way OpenCV's `resize(fx=0.2)` does
    (every 5th pixel from the 3rd: see frost/README.md); only the first five are drawn, as in the reference.
  - spatter's water (severities 1-3) runs the reference's OpenCV pipeline (Canny, the 5x5 chamfer distance,
    histogram equalization, box filters) on numpy and scipy.
  - random draws cannot be the reference's own (it used numpy's global state, never seeded). Here every
    image has its own generator, seeded by (seed, corruption, severity, image index): the benchmark is the
    same on every run, and an image is corrupted the same way whether it is corrupted alone or in a batch.
"""
from __future__ import annotations

import io
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from ..errors import CifarlabError
from ..registry import Registry

SEVERITIES = (1, 2, 3, 4, 5)
CHUNK = 1000  # images corrupted at once
FAMILIES = ("noise", "blur", "weather", "digital", "extra")
Generators = Sequence[np.random.Generator]
CorruptionFn = Callable[[np.ndarray, int, Generators], np.ndarray]


@dataclass(frozen=True)
class Corruption:
    """One corruption as callers see it (a view of a CORRUPTIONS entry)."""

    name: str
    family: str  # one of FAMILIES; "extra" are the 4 held-out corruptions, not in the benchmark's mean
    fn: CorruptionFn  # (N, H, W, 3) uint8, severity, one generator per image -> floats in [0, 255] or uint8
    random: bool


# Every corruption, in the paper's order; each entry's meta holds its family and whether it draws at random.
CORRUPTIONS = Registry("corruption")  # no flag: the Python API and benchmarks name them


def register_corruption(name: str, family: str, random: bool = False) -> Callable[[CorruptionFn], CorruptionFn]:
    """Add `fn(images, severity, generators)` to CORRUPTIONS; names are unique."""
    if family not in FAMILIES:
        raise ValueError(f"corruption family must be one of {', '.join(FAMILIES)}, got {family!r}")
    return CORRUPTIONS.register(name, family=family, random=random)


def get_corruption(name: str) -> Corruption:
    """The corruption `name`, or a one-line error listing them."""
    entry = CORRUPTIONS.entry(name)
    return Corruption(entry.name, entry.meta["family"], entry.load(), entry.meta["random"])


def benchmark_corruptions() -> list[str]:
    """The 15 corruptions of CIFAR-10-C's mean, in the paper's order (noise, blur, weather, digital)."""
    return [e.name for e in CORRUPTIONS.entries() if e.meta["family"] != "extra"]


def extra_corruptions() -> list[str]:
    """The 4 extra corruptions the paper holds out for validation (speckle, gaussian blur, spatter, saturate)."""
    return [e.name for e in CORRUPTIONS.entries() if e.meta["family"] == "extra"]


def corrupt(images: np.ndarray, name: str, severity: int, seed: int = 0,
            indices: Sequence[int] | np.ndarray | None = None) -> np.ndarray:
    """A corrupted copy of (N, H, W, 3) uint8 `images`, truncated to uint8 as CIFAR-10-C is.

    Random corruptions draw from one generator per image, seeded by (`seed`, name, severity, its index):
    `indices` are the images' indices in their data set (default 0..N-1), so a sample is corrupted exactly as
    the same images are in the whole set."""
    entry = get_corruption(name)
    if severity not in SEVERITIES:
        raise CifarlabError(f"corruption severity must be one of 1-5, got {severity!r}")
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise CifarlabError(f"corruptions take (N, H, W, 3) uint8 images, got {images.dtype} {images.shape}")
    indices = np.arange(len(images)) if indices is None else np.asarray(indices)
    if len(indices) != len(images):
        raise CifarlabError(f"{len(indices)} indices for {len(images)} images")
    out = np.empty_like(images)
    for start in range(0, len(images), CHUNK):  # bounded memory; each image's result does not depend on it
        part = slice(start, start + CHUNK)
        rngs = image_generators(seed, name, severity, indices[part]) if entry.random else []
        result = entry.fn(images[part], severity, rngs)
        # truncation, as np.uint8(...) in the reference
        out[part] = result if result.dtype == np.uint8 else np.clip(result, 0, 255).astype(np.uint8)
    return out


def image_generators(seed: int, name: str, severity: int, indices: Sequence[int]) -> list[np.random.Generator]:
    """One generator per image, independent of batch composition and order."""
    key = zlib.crc32(name.encode())  # stable across runs and Python versions (hash() is salted)
    return [np.random.default_rng([seed, key, severity, int(i)]) for i in indices]


def _unit(images: np.ndarray, dtype=np.float64) -> np.ndarray:
    return images.astype(dtype) / 255.0


def _to_255(x: np.ndarray) -> np.ndarray:
    return np.clip(x, 0, 1) * 255


def _gaussian(x: np.ndarray, sigma: float, mode: str = "nearest", truncate: float = 4.0) -> np.ndarray:
    """scikit-image's `gaussian(..., multichannel=True)` on each (N, H, W, C) image: H and W only."""
    return ndimage.gaussian_filter(x, sigma=(0, sigma, sigma, 0), mode=mode, truncate=truncate)


# --- noise ---------------------------------------------------------------------------------------------

@register_corruption("gaussian_noise", "noise", random=True)
def gaussian_noise(images: np.ndarray, severity: int, rngs: Generators) -> np.ndarray:
    c = (0.04, 0.06, 0.08, 0.09, 0.10)[severity - 1]
    noise = np.stack([rng.normal(size=images.shape[1:], scale=c) for rng in rngs])
    return _to_255(_unit(images) + noise)


@register_corruption("shot_noise", "noise", random=True)
def shot_noise(images: np.ndarray, severity: int, rngs: Generators) -> np.ndarray:
    c = (500, 250, 100, 75, 50)[severity - 1]
    x = _unit(images)
    return _to_255(np.stack([rng.poisson(xi * c) for xi, rng in zip(x, rngs)]) / c)


@register_corruption("impulse_noise", "noise", random=True)
def impulse_noise(images: np.ndarray, severity: int, rngs: Generators) -> np.ndarray:
    # scikit-image's random_noise(mode="s&p"): each value (per channel) flips with probability `amount`,
    # to 1 or 0 with equal odds
    amount = (0.01, 0.02, 0.03, 0.05, 0.07)[severity - 1]
    x = _unit(images)
    draws = np.stack([rng.random((2, *images.shape[1:])) for rng in rngs])
    flipped, salt = draws[:, 0] < amount, draws[:, 1] < 0.5
    x[flipped & salt] = 1.0
    x[flipped & ~salt] = 0.0
    return _to_255(x)


# --- blur ----------------------------------------------------------------------------------------------

def disk_kernel(radius: float, alias_blur: float) -> np.ndarray:
    """The reference's `disk`: a 17x17 aliased disk, normalized, blurred by OpenCV's 3x3 Gaussian; trimmed to
    its nonzero part (at these radii 5x5 at most), which filters the same."""
    grid = np.arange(-8, 9)
    xx, yy = np.meshgrid(grid, grid)
    disk = ((xx ** 2 + yy ** 2) <= radius ** 2).astype(np.float32)
    disk /= disk.sum()
    g = np.exp(-np.arange(-1, 2, dtype=np.float64) ** 2 / (2 * alias_blur ** 2))
    g = (g / g.sum()).astype(np.float32)  # cv2.getGaussianKernel(3, sigma)
    kernel = ndimage.correlate1d(ndimage.correlate1d(disk, g, axis=0, mode="mirror"), g, axis=1, mode="mirror")
    rows, cols = np.flatnonzero(kernel.any(1)), np.flatnonzero(kernel.any(0))
    return kernel[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]


@register_corruption("defocus_blur", "blur")
def defocus_blur(images: np.ndarray, severity: int, rngs: Generators) -> np.ndarray:
    radius, alias_blur = ((0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1))[severity - 1]
    kernel = disk_kernel(radius, alias_blur).astype(np.float64)
    # cv2.filter2D: correlation, border BORDER_REFLECT_101 (scipy's "mirror")
    return _to_255(ndimage.correlate(_unit(images), kernel[None, :, :, None], mode="mirror"))


def glass_offsets(rng: np.random.Generator, iterations: int, height: int, width: int) -> np.ndarray:
    """(iterations, height-2, width-2, 2) draws of (dx, dy) in {-1, 0}, for rows and columns from the last down
    to 2, in the order of the reference's loop (`np.random.randint(-1, 1, size=(2,))`)."""
    return rng.integers(-1, 1, size=(iterations, height - 2, width - 2, 2))


def glass_shuffle(x: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """The reference's local shuffle of (N, H, W, 3) images by (N, iterations, H-2, W-2, 2) offsets.

    For h, w from the last row and column down to 2 it runs `x[h, w], x[h', w'] = x[h', w'], x[h, w]` with
    (h', w') = (h + dy, w + dx): the right-hand side holds views, so x[h, w] takes x[h', w'] and x[h', w']
    gets its own value back. The source (h', w') is never visited before (h, w) in that order, so within a
    pass every pixel reads the pass's input: one gather per pass."""
    n, h, w = x.shape[:3]
    rows = np.arange(h - 1, 1, -1)[None, :, None]  # offsets[:, it, i, j] belongs to row h-1-i, column w-1-j
    cols = np.arange(w - 1, 1, -1)[None, None, :]
    batch = np.arange(n)[:, None, None]
    for it in range(offsets.shape[1]):
        dx, dy = offsets[:, it, ..., 0], offsets[:, it, ..., 1]
        out = x.copy()
        out[batch, rows, cols] = x[batch, rows + dy, cols + dx]
        x = out
    return x


@register_corruption("glass_blur", "blur", random=True)
def glass_blur(images: np.ndarray, severity: int, rngs: Generators) -> np.ndarray:
    sigma, max_delta, iterations = ((0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2))[severity - 1]
    assert max_delta == 1  # glass_offsets and the one-gather argument hold for a delta of 1, CIFAR's only one
    x = (_gaussian(_unit(images), sigma) * 255).astype(np.uint8)
    h, w = images.shape[1:3]
    x = glass_shuffle(x, np.stack([glass_offsets(rng, iterations, h, w) for rng in rngs]))
    return _to_255(_gaussian(_unit(x), sigma))


def motion_kernel(radius: int, sigma: float, angle: float) -> tuple[np.ndarray, np.ndarray]:
    """ImageMagick's motion blur: weights of a one-sided Gaussian and the (row, column) offsets of its taps."""
    width = 2 * radius + 1
    weights = np.exp(-np.arange(width) ** 2 / (2 * sigma ** 2))
    weights /= weights.sum()
    t = np.deg2rad(angle)
    # the taps follow the angle from the pixel itself, each rounded to a whole pixel (ceil(v - 0.5))
    dy = np.array([np.ceil(i * np.sin(t) - 0.5) for i in range(width)], dtype=int)
    dx = np.array([np.ceil(i * np.cos(t) - 0.5) for i in range(width)], dtype=int)
    return weights, np.stack([dy, dx], axis=1)


def motion_blur_image(image: np.ndarray, radius: int, sigma: float, angle: float) -> np.ndarray:
    """One (H, W) or (H, W, C) image blurred along `angle` (degrees), the edge repeated; floats."""
    weights, offsets = motion_kernel(radius, sigma, angle)
    h, w = image.shape[:2]
    rows = np.clip(np.arange(h)[None, :] + offsets[:, :1], 0, h - 1)  # (taps, H)
    cols = np.clip(np.arange(w)[None, :] + offsets[:, 1:], 0, w - 1)  # (taps, W)
    taps = image[rows[:, :, None], cols[:, None, :]].astype(np.float64)  # (taps, H, W[, C])
    return np.tensordot(weights, taps, axes=1)


def magick_8bit(values: np.ndarray) -> np.ndarray:
    """8-bit levels (0-255 floats) as the reference's ImageMagick 6 (Q16) hands them back: it keeps the blurred
    value as a rounded 16-bit quantum (x 257) and its 8-bit PNG truncates that quantum / 257. So it floors,
    except within 0.5/257 below a level, which rounds up; rounding instead is off by one on about half the
    values (checked against ImageMagick 6.9.11 in tests/test_corruptions.py)."""
    quantum = np.floor(np.clip(values, 0, 255) * 257 + 0.5)
    return (quantum // 257).astype(np.uint8)


@register_corruption("motion_blur", "blur", random=True)
def motion_blur(images: np.ndarray, severity: int, rngs: Generators) -> np.ndarray:
    radius, sigma = ((6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5))[severity - 1]
    out = [motion_blur_image(img, radius, sigma, rng.uniform(-45, 45)) for img, rng in zip(images, rngs)]
    return magick_8bit(np.stack(out))


def clipped_zoom(x: np.ndarray, zoom_factor: float) -> np.ndarray:
    """The reference's `clipped_zoom` on a batch (N, H, W, C): zoom the centre crop (bilinear, scipy), trim.

    Bilinear zoom is separable and linear, so it is one (H, H) matrix on each side, built by zooming the
    identity with scipy itself: the same weights as scipy's zoom of each image, a matrix product per batch."""
    a = _zoom_matrix(x.shape[1], float(zoom_factor))
    n, h, w, c = x.shape
    rows = a @ x.astype(np.float64).transpose(1, 0, 2, 3).reshape(h, -1)  # zoom the rows: one GEMM
    cols = a @ rows.reshape(h, n, w, c).transpose(2, 1, 0, 3).reshape(w, -1)  # then the columns
    return cols.reshape(w, n, h, c).transpose(1, 2, 0, 3).astype(x.dtype)  # scipy's zoom returns the input's dtype


@cache
def _zoom_matrix(h: int, zoom_factor: float) -> np.ndarray:
    ch = int(np.ceil(h / zoom_factor))
    top = (h - ch) // 2
    zoomed = ndimage.zoom(np.eye(h)[top:top + ch], (zoom_factor, 1), order=1)
    trim = (zoomed.shape[0] - h) // 2
    return zoomed[trim:trim + h]


ZOOM_FACTORS = (np.arange(1, 1.06, 0.01), np.arange(1, 1.11, 0.01), np.arange(1, 1.16, 0.01),
                np.arange(1, 1.21, 0.01), np.arange(1, 1.26, 0.01))


@register_corruption("zoom_blur", "blur")
def zoom_blur(images: np.ndarray, severity: int, rngs: Generators) -> np.ndarray:
    factors = ZOOM_FACTORS[severity - 1]
    x = _unit(images, np.float32)
    out = np.zeros_like(x)
    for factor in factors:
        out += clipped_zoom(x, factor)
    return _to_255((x + out) / (len(factors) + 1))


# --- weather -------------------------------------------------------------------------------------------

def opencv_gray(x: np.ndarray) -> np.ndarray:
    """cv2.cvtColor(x, COLOR_RGB2GRAY) of float32 RGB, rounded as OpenCV 4's default build (IPP) computes it:
    fma(b, 0.114, fma(r, 0.299, g * 0.587)) with fused multiply-adds. A plain float32 sum differs in the last
    bit on a fifth of the values, which moved 0.01% of snow's levels at severity 5 across np.uint8's truncation
    (benchmarks/check_cifar10c_reference.py)."""
    def fma(a, b, c):  # a float32 product is exact in float64: only the add rounds, as in a fused one
        return (a.astype(np.float64) * np.float64(b) + c).astype(np.float32)

    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    return fma(b, np.float32(0.114), fma(r, np.float32(0.299), g * np.float32(0.587)))


@register_corruption("snow", "weather", random=True)
def snow(images: np.ndarray, severity: int, rngs: Generators) -> np.ndarray:
    c = ((0.1, 0.2, 1, 0.6, 8, 3, 0.95), (0.1, 0.2, 1, 0.5, 10, 4, 0.9), (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9),
         (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85), (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8))[severity - 1]
    x = _unit(images, np.float32)
    h, w = x.shape[1:3]
    layer = np.stack([rng.normal(size=(h, w), loc=c[0], scale=c[1]) for rng in rngs])[..., None]
    layer = clipped_zoom(layer, c[2])[..., 0]
    layer[layer < c[3]] = 0
    layer = (np.clip(layer, 0, 1) * 255).astype(np.uint8)  # the reference goes through an 8-bit picture here
    blurred = [motion_blur_image(flake, c[4], c[5], rng.uniform(-135, -45)) for flake, rng in zip(layer, rngs)]
    layer = (magick_8bit(np.stack(blurred)) / 255.0)[..., None]
    gray = opencv_gray(x)[..., None]
    x = c[6] * x + (1 - c[6]) * np.maximum(x, gray * 1.5 + 0.5)
    return _to_255(x + layer + np.rot90(layer, k=2, axes=(1, 2)))


FROST_FILES = ("frost1.png", "frost2.png", "frost3.png", "frost4.png", "frost5.png")


@cache
def frost_pictures() -> tuple[np.ndarray, ...]:
    """The reference's first five frost pictures as OpenCV reduced them (RGB uint8); see frost/README.md."""
    folder = Path(__file__).parent / "frost"
    return tuple(np.asarray(Image.open(folder / name).convert("RGB")) for name in FROST_FILES)


@register_corruption("frost", "weather", random=True)
def frost(images: np.ndarray, severity: int, rngs: Generators) -> np.ndarray:
    c = ((1, 0.2), (1, 0.3), (0.9, 0.4), (0.85, 0.4), (0.75, 0.45))[severity - 1]
    pictures = frost_pictures()
    h, w = images.shape[1:3]
    crops = []
    for rng in rngs:
        picture = pictures[rng.integers(len(pictures))]
        top, left = rng.integers(0, picture.shape[0] - h), rng.integers(0, picture.shape[1] - w)
        crops.append(picture[top:top + h, left:left + w])
    return np.clip(c[0] * images.astype(np.float64) + c[1] * np.stack(crops), 0, 255)


def plasma_fractal(rngs: Generators, mapsize: int = 32, wibble_decay: float = 3) -> np.ndarray:
    """The reference's diamond-square height map in [0, 1], for a batch: (N, mapsize, mapsize)."""
    assert mapsize & (mapsize - 1) == 0, "mapsize must be a power of two"
    n = len(rngs)
    steps = [mapsize >> k for k in range(mapsize.bit_length() - 1)]  # 32, 16, ..., 2
    maps = np.zeros((n, mapsize, mapsize))
    wibble = 100.0

    def wibbled_mean(total: np.ndarray) -> np.ndarray:
        # the reference's draws, in its order: wibble * uniform(-wibble, wibble), as it has it
        noise = np.stack([rng.uniform(-wibble, wibble, size=total.shape[1:]) for rng in rngs])
        return total / 4 + wibble * noise

    for step in steps:
        half = step // 2
        corners = maps[:, 0::step, 0::step]
        squares = corners + np.roll(corners, -1, axis=1)
        squares = squares + np.roll(squares, -1, axis=2)
        maps[:, half::step, half::step] = wibbled_mean(squares)
        centres = maps[:, half::step, half::step]
        corners = maps[:, 0::step, 0::step]
        left = (centres + np.roll(centres, 1, axis=1)) + (corners + np.roll(corners, -1, axis=2))
        maps[:, 0::step, half::step] = wibbled_mean(left)
        top = (centres + np.roll(centres, 1, axis=2)) + (corners + np.roll(corners, -1, axis=1))
        maps[:, half::step, 0::step] = wibbled_mean(top)
        wibble /= wibble_decay
    maps -= maps.min(axis=(1, 2), keepdims=True)
    return maps / maps.max(axis=(1, 2), keepdims=True)


@register_corruption("fog", "weather", random=True)
def fog(images: np.ndarray, severity: int, rngs: Generators) -> np.ndarray:
    strength, decay = ((0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75))[severity - 1]
    x = _unit(images)
    h, w = x.shape[1:3]
    mapsize = 1 << max(h - 1, w - 1, 1).bit_length()
    max_val = x.max(axis=(1, 2, 3), keepdims=True)
    x = x + strength * plasma_fractal(rngs, mapsize, decay)[:, :h, :w, None]
    return _to_255(x * max_val / (max_val + strength))


# --- digital -------------------------------------------------------------------------------------------

def rgb_to_hsv(rgb: np.ndarray) -> np.ndarray:
    """scikit-image's rgb2hsv on floats in [0, 1], step for step (so that truncation agrees)."""
    v = rgb.max(-1)
    delta = rgb.max(-1) - rgb.min(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        s = np.where(delta == 0, 0.0, delta / np.where(v == 0, 1, v))
        h = np.zeros_like(v)
        r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
        safe = np.where(delta == 0, 1, delta)
        h = np.where(r == v, (g - b) / safe, h)  # later cases win, as in scikit-image
        h = np.where(g == v, 2.0 + (b - r) / safe, h)
        h = np.where(b == v, 4.0 + (r - g) / safe, h)
    h = (h / 6.0) % 1.0
    h[delta == 0] = 0.0
    return np.stack([h, s, v], axis=-1)


# which of (v, t, p, q) each RGB channel takes in each of the six hue sectors (scikit-image's hsv2rgb table)
_HSV_SECTORS = np.array([[0, 3, 2, 2, 1, 0],   # red:   v q p p t v
                         [1, 0, 0, 3, 2, 2],   # green: t v v q p p
                         [2, 2, 1, 0, 0, 3]])  # blue:  p p t v v q


def hsv_to_rgb(hsv: np.ndarray) -> np.ndarray:
    """scikit-image's hsv2rgb: the same p, q, t, v, each channel picking one by hue sector."""
    h, s, v = hsv[..., 0], hsv[..., 1], hsv[..., 2]
    hi = np.floor(h * 6)
    f = h * 6 - hi
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    sector = hi.astype(np.uint8) % 6
    values = np.stack([v, t, p, q])  # (4, ...)
    return np.stack([np.take_along_axis(values, _HSV_SECTORS[ch][sector][None], 0)[0] for ch in range(3)],
                    axis=-1)


@register_corruption("brightness", "digital")
def brightness(images: np.ndarray, severity: int, rngs: Generators) -> np.ndarray:
    c = (0.05, 0.1, 0.15, 0.2, 0.3)[severity - 1]
    hsv = rgb_to_hsv(_unit(images))
    hsv[..., 2] = np.clip(hsv[..., 2] + c, 0, 1)
    return _to_255(hsv_to_rgb(hsv))


@register_corruption("contrast", "digital")
def contrast(images: np.ndarray, severity: int, rngs: Generators) -> np.ndarray:
    c = (0.75, 0.5, 0.4, 0.3, 0.15)[severity - 1]
    x = _unit(images)
    means = x.mean(axis=(1, 2), keepdims=True)  # per image and channel
    return _to_255((x - means) * c + means)


def affine_from_points(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """cv2.getAffineTransform: the 2x3 matrix taking three (x, y) points `src` to `dst`."""
    a = np.concatenate([src.astype(np.float64), np.ones((3, 1))], axis=1)
    return np.linalg.solve(a, dst.astype(np.float64)).T


def _reflect101(index: np.ndarray, size: int) -> np.ndarray:
    period = 2 * size - 2
    index = np.abs(index) % period
    return np.where(index >= size, period - index, index)


def warp_affine(images: np.ndarray, matrices: np.ndarray) -> np.ndarray:
    """cv2.warpAffine(image, M, (W, H)) with bilinear interpolation and BORDER_REFLECT_101, for a batch of
    float (N, H, W, C) images and (N, 2, 3) forward matrices. Like OpenCV, the source coordinates are fixed
    point with 1/32-pixel steps."""
    n, h, w = images.shape[:3]
    full = np.concatenate([matrices, np.tile([[[0.0, 0.0, 1.0]]], (n, 1, 1))], axis=1)
    inv = np.linalg.inv(full)[:, :2]  # destination -> source
    ys, xs = np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64)

    def fixed(row: int) -> np.ndarray:  # OpenCV: rint(1024 * (m1 y + m2)) + 16 + rint(1024 * m0 x), >> 5
        base = np.rint((inv[:, row, 1, None] * ys + inv[:, row, 2, None]) * 1024).astype(np.int64) + 16
        step = np.rint(inv[:, row, 0, None] * xs * 1024).astype(np.int64)
        return (base[:, :, None] + step[:, None, :]) >> 5  # (N, H, W) in 1/32 pixel

    fx, fy = fixed(0), fixed(1)
    x0, y0 = fx >> 5, fy >> 5
    # OpenCV's float weights: products of the 1-D ones, each tap added in turn (float32 like the image)
    ax, ay = ((fx & 31) / np.float32(32)).astype(np.float32), ((fy & 31) / np.float32(32)).astype(np.float32)
    weights = [((1 - ay) * (1 - ax))[..., None], ((1 - ay) * ax)[..., None], (ay * (1 - ax))[..., None],
               (ay * ax)[..., None]]
    batch = np.arange(n)[:, None, None]

    def at(yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
        return images[batch, _reflect101(yy, h), _reflect101(xx, w)]

    taps = (at(y0, x0), at(y0, x0 + 1), at(y0 + 1, x0), at(y0 + 1, x0 + 1))
    out = taps[0] * weights[0]
    for tap, weight in zip(taps[1:], weights[1:]):
        out = out + tap * weight
    return out.astype(images.dtype)


@register_corruption("elastic_transform", "digital", random=True)
def elastic_transform(images: np.ndarray, severity: int, rngs: Generators) -> np.ndarray:
    size = 32  # the reference's IMSIZE: its parameters are fractions of a 32-pixel image
    alpha, sigma, affine = ((size * 0, size * 0, size * 0.08), (size * 0.05, size * 0.2, size * 0.07),
                            (size * 0.08, size * 0.06, size * 0.06), (size * 0.1, size * 0.04, size * 0.05),
                            (size * 0.1, size * 0.03, size * 0.03))[severity - 1]
    x = _unit(images, np.float32)
    n, h, w, channels = x.shape
    centre, square = np.float32((h, w)) // 2, min(h, w) // 3
    pts1 = np.float32([centre + square, [centre[0] + square, centre[1] - square], centre - square])
    matrices, dxs, dys = [], [], []
    for rng in rngs:  # in the reference's order of draws: affine, then dx, then dy
        pts2 = pts1 + rng.uniform(-affine, affine, size=pts1.shape).astype(np.float32)
        matrices.append(affine_from_points(pts1, pts2))
        dxs.append(rng.uniform(-1, 1, size=(h, w)))
        dys.append(rng.uniform(-1, 1, size=(h, w)))
    x = warp_affine(x, np.stack(matrices))

    def displacement(fields: list[np.ndarray]) -> np.ndarray:
        smooth = ndimage.gaussian_filter(np.stack(fields), sigma=(0, sigma, sigma), mode="reflect", truncate=3)
        return (smooth * alpha).astype(np.float32)

    dx, dy = displacement(dxs), displacement(dys)
    rows = np.arange(h, dtype=np.float64)[None, :, None] + dy  # (N, H, W)
    cols = np.arange(w, dtype=np.float64)[None, None, :] + dx
    batch = np.broadcast_to(np.arange(n, dtype=np.float64)[:, None, None], rows.shape)
    coords = np.stack([batch, rows, cols]).reshape(3, -1)
    out = np.stack([ndimage.map_coordinates(x[..., ch], coords, order=1, mode="reflect").reshape(n, h, w)
                    for ch in range(channels)], axis=-1)
    return _to_255(out)


def _pil_map(images: np.ndarray, fn: Callable[[Image.Image], Image.Image]) -> np.ndarray:
    return np.stack([np.asarray(fn(Image.fromarray(img)).convert("RGB")) for img in images])


@register_corruption("pixelate", "digital")
def pixelate(images: np.ndarray, severity: int, rngs: Generators) -> np.ndarray:
    c = (0.95, 0.9, 0.85, 0.75, 0.65)[severity - 1]
    h, w = images.shape[1:3]
    small = (int(w * c), int(h * c))
    return _pil_map(images, lambda im: im.resize(small, Image.BOX).resize((w, h), Image.BOX))


def _jpeg_round_trip(image: Image.Image, quality: int) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    buffer.seek(0)
    return Image.open(buffer)


@register_corruption("jpeg_compression", "digital")
def jpeg_compression(images: np.ndarray, severity: int, rngs: Generators) -> np.ndarray:
    quality = (80, 65, 58, 50, 40)[severity - 1]
    return _pil_map(images, lambda im: _jpeg_round_trip(im, quality))


# --- the 4 extra corruptions ---------------------------------------------------------------------------

@register_corruption("speckle_noise", "extra", random=True)
def speckle_noise(images: np.ndarray, severity: int, rngs: Generators) -> np.ndarray:
    c = (0.06, 0.1, 0.12, 0.16, 0.2)[severity - 1]
    x = _unit(images)
    noise = np.stack([rng.normal(size=images.shape[1:], scale=c) for rng in rngs])
    return _to_255(x + x * noise)


@register_corruption("gaussian_blur", "extra")
def gaussian_blur(images: np.ndarray, severity: int, rngs: Generators) -> np.ndarray:
    sigma = (0.4, 0.6, 0.7, 0.8, 1.0)[severity - 1]
    return _to_255(_gaussian(_unit(images), sigma))  # the edge repeated (scikit-image's default "nearest")


def _box3(x: np.ndarray) -> np.ndarray:
    """cv2.blur(x, (3, 3)) on (N, H, W): the 3x3 sum in float64 (exact here) times 1/9, BORDER_REFLECT_101."""
    total = ndimage.correlate(x.astype(np.float64), np.ones((1, 3, 3)), mode="mirror")
    return total * (1 / 9)


def canny(images: np.ndarray, low: float, high: float) -> np.ndarray:
    """cv2.Canny(image, low, high) on (N, H, W) uint8: 3x3 Sobel, L1 magnitude, non-maximum suppression in four
    directions, hysteresis over 8-connected pixels. Returns a bool edge map."""
    x = images.astype(np.float64)
    def sobel(axis: int) -> np.ndarray:  # 3x3 Sobel within each image; OpenCV's Canny repeats the edge
        derivative = ndimage.correlate1d(x, [-1, 0, 1], axis=axis, mode="nearest")
        return ndimage.correlate1d(derivative, [1, 2, 1], axis=3 - axis, mode="nearest")

    gx, gy = sobel(2), sobel(1)
    mag = np.abs(gx) + np.abs(gy)
    padded = np.pad(mag, ((0, 0), (1, 1), (1, 1)))
    h, w = mag.shape[1:]

    def neighbour(dy: int, dx: int) -> np.ndarray:
        return padded[:, 1 + dy:1 + dy + h, 1 + dx:1 + dx + w]

    ax, ay = np.abs(gx), np.abs(gy)
    tan22, tan67 = np.tan(np.deg2rad(22.5)), np.tan(np.deg2rad(67.5))
    horizontal = ay < ax * tan22
    vertical = ay > ax * tan67
    s = np.where((gx < 0) != (gy < 0), -1, 1)
    diag_a = np.where(s > 0, neighbour(-1, -1), neighbour(-1, 1))
    diag_b = np.where(s > 0, neighbour(1, 1), neighbour(1, -1))
    is_max = np.where(horizontal, (mag > neighbour(0, -1)) & (mag >= neighbour(0, 1)),
                      np.where(vertical, (mag > neighbour(-1, 0)) & (mag >= neighbour(1, 0)),
                               (mag > diag_a) & (mag > diag_b)))
    candidate = is_max & (mag > low)
    strong = candidate & (mag > high)
    edges = np.zeros_like(candidate)
    structure = np.ones((3, 3), bool)
    for i in range(len(images)):
        labels, count = ndimage.label(candidate[i], structure=structure)
        keep = np.zeros(count + 1, bool)
        keep[np.unique(labels[strong[i]])] = True
        keep[0] = False
        edges[i] = keep[labels]
    return edges


def chamfer_distance(mask: np.ndarray) -> np.ndarray:
    """cv2.distanceTransform(src, DIST_L2, 5) on (N, H, W) bool (True: distance wanted; False: zero pixels).

    OpenCV's 5x5 chamfer: steps of 1, 1.4 and 2.1969 (knight's move) in float32, a forward and a backward
    pass, outside the image "infinitely far". Pixel by pixel, but for the whole batch at once."""
    hv, diag, long = np.float32(1.0), np.float32(1.4), np.float32(2.1969)
    n, h, w = mask.shape
    t = np.full((n, h + 4, w + 4), np.float32(1e30), np.float32)  # a 2-pixel border of "far"
    forward = ((-2, -1, long), (-2, 1, long), (-1, -2, long), (-1, -1, diag), (-1, 0, hv), (-1, 1, diag),
               (-1, 2, long), (0, -1, hv))
    for i in range(2, h + 2):
        for j in range(2, w + 2):
            best = np.min([t[:, i + di, j + dj] + step for di, dj, step in forward], axis=0)
            t[:, i, j] = np.where(mask[:, i - 2, j - 2], best, 0)
    backward = [(-di, -dj, step) for di, dj, step in forward]
    for i in range(h + 1, 1, -1):
        for j in range(w + 1, 1, -1):
            best = np.min([t[:, i + di, j + dj] + step for di, dj, step in backward], axis=0)
            t[:, i, j] = np.where(t[:, i, j] > hv, np.minimum(t[:, i, j], best), t[:, i, j])
    return t[:, 2:-2, 2:-2]


def equalize_hist(image: np.ndarray) -> np.ndarray:
    """cv2.equalizeHist on one uint8 image."""
    hist = np.bincount(image.ravel(), minlength=256)
    first = int(np.flatnonzero(hist)[0])
    total = image.size
    if hist[first] == total:
        return np.full_like(image, first)
    scale = np.float32(255.0 / (total - hist[first]))
    lut = np.clip(np.rint((np.cumsum(hist) - hist[first]).astype(np.float32) * scale), 0, 255).astype(np.uint8)
    lut[:first + 1] = 0
    return lut[image]


@register_corruption("spatter", "extra", random=True)
def spatter(images: np.ndarray, severity: int, rngs: Generators) -> np.ndarray:
    c = ((0.62, 0.1, 0.7, 0.7, 0.5, 0), (0.65, 0.1, 0.8, 0.7, 0.5, 0), (0.65, 0.3, 1, 0.69, 0.5, 0),
         (0.65, 0.1, 0.7, 0.69, 0.6, 1), (0.65, 0.1, 0.5, 0.68, 0.6, 1))[severity - 1]
    x = _unit(images, np.float32)
    h, w = x.shape[1:3]
    liquid = np.stack([rng.normal(size=(h, w), loc=c[0], scale=c[1]) for rng in rngs])
    liquid = ndimage.gaussian_filter(liquid, sigma=(0, c[2], c[2]), mode="nearest", truncate=4.0)
    liquid[liquid < c[3]] = 0
    if c[5] == 0:  # water: pale turquoise drops, shaded by the distance to their edges
        # the reference's astype(np.uint8) wraps values over 255 around (x86), rare drops that thick
        liquid8 = ((liquid * 255).astype(np.int64) % 256).astype(np.uint8)
        edges = canny(liquid8, 50, 150)
        dist = np.minimum(chamfer_distance(~edges), 20)
        dist = _box3(dist).astype(np.float32).astype(np.uint8)
        dist = np.stack([equalize_hist(d) for d in dist])
        kernel = np.array([[-2, -1, 0], [-1, 1, 1], [0, 1, 2]], np.float64)
        dist = np.clip(ndimage.correlate(dist.astype(np.float64), kernel[None], mode="mirror"), 0, 255)
        dist = np.clip(np.rint(_box3(dist.astype(np.uint8))), 0, 255).astype(np.float32)
        m = liquid8.astype(np.float32) * dist
        peak = m.max(axis=(1, 2), keepdims=True)
        m = np.where(peak > 0, m / np.where(peak > 0, peak, 1), 0) * c[4]
        color = np.array([175, 238, 238], np.float32) / 255
        return _to_255(x + m[..., None] * color)
    mud = ndimage.gaussian_filter((liquid > c[3]).astype(np.float32), sigma=(0, c[4], c[4]), mode="nearest")
    mud[mud < 0.8] = 0
    color = np.array([63, 42, 20], np.float32) / 255 * mud[..., None]  # mud brown
    return _to_255(x * (1 - mud[..., None]) + color)


@register_corruption("saturate", "extra")
def saturate(images: np.ndarray, severity: int, rngs: Generators) -> np.ndarray:
    scale, shift = ((0.3, 0), (0.1, 0), (1.5, 0), (2, 0.1), (2.5, 0.2))[severity - 1]
    hsv = rgb_to_hsv(_unit(images))
    hsv[..., 1] = np.clip(hsv[..., 1] * scale + shift, 0, 1)
    return _to_255(hsv_to_rgb(hsv))

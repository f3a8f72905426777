"""CIFAR-10-C's corruptions against the reference definitions (make_cifar_c.py, Hendrycks and Dietterich 2019),
transcribed here image by image as the reference writes them, on small fixed images; the random ones with the
same draws where the reference's order of draws is kept, by their statistics and seeding otherwise."""
from __future__ import annotations

import ctypes
import io

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from cifarlab.analysis import corruptions as C
from cifarlab.errors import CifarlabError

PAPER_ORDER = ["gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur", "motion_blur",
               "zoom_blur", "snow", "frost", "fog", "brightness", "contrast", "elastic_transform", "pixelate",
               "jpeg_compression"]
EXTRAS = ["speckle_noise", "gaussian_blur", "spatter", "saturate"]
# damage does not grow with severity by design: saturate's severities 1-2 desaturate, 3-5 oversaturate;
# elastic's severity 1 is its largest affine warp; glass blur's severity 4 has a smaller sigma than 3;
# frost's 3 -> 4 only dims the image (0.9 -> 0.85, the same frost), and which picture is drawn varies more;
# spatter switches from water (1-3) to mud (4-5)
NOT_MONOTONE = {"saturate", "elastic_transform", "glass_blur", "frost", "spatter"}


def images(n: int = 6, seed: int = 0) -> np.ndarray:
    """Small natural-looking test images: smooth coloured shapes with fine noise, and no flat saturated areas
    (where every filter lands exactly on a whole number and the last bit of a float sum decides truncation)."""
    rng = np.random.default_rng(seed)
    shapes = ndimage.gaussian_filter(rng.normal(0, 1, (n, 32, 32, 3)), (0, 3, 3, 0))
    x = 128 + 80 * shapes / shapes.std() + rng.normal(0, 12, (n, 32, 32, 3))
    return np.clip(x, 0, 255).astype(np.uint8)


def reference(fn, imgs: np.ndarray) -> np.ndarray:
    """The reference's loop: one image at a time, then np.uint8 of the result (truncation)."""
    return np.stack([np.uint8(fn(img)) for img in imgs])


def assert_agree(ours: np.ndarray, ref: np.ndarray, exact_share: float = 1.0) -> None:
    """Equal, or (for float sums taken in another order) within 1 and equal almost everywhere."""
    diff = np.abs(ours.astype(int) - ref)
    assert diff.max() <= (0 if exact_share == 1.0 else 1)
    assert (diff == 0).mean() >= exact_share


# --- the registry and the contract ---------------------------------------------------------------------

def test_the_benchmark_is_cifar10c_15_and_4_extra():
    assert C.benchmark_corruptions() == PAPER_ORDER
    assert C.extra_corruptions() == EXTRAS


@pytest.mark.parametrize("name", C.CORRUPTIONS.names())
def test_shape_dtype_determinism_and_per_image_seeding(name):
    x = images()
    out = C.corrupt(x, name, 3)
    assert out.shape == x.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(out, C.corrupt(x, name, 3))
    # an image is corrupted the same way alone as in a batch, given its index
    np.testing.assert_array_equal(out[4:5], C.corrupt(x[4:5], name, 3, indices=[4]))
    if C.CORRUPTIONS.entry(name).meta["random"]:
        assert (C.corrupt(x, name, 3, seed=1) != out).any()


@pytest.mark.parametrize("name", [n for n in C.CORRUPTIONS if n not in NOT_MONOTONE])
def test_damage_grows_with_severity(name):
    x = images(9)
    damage = [np.abs(C.corrupt(x, name, s).astype(int) - x).mean() for s in C.SEVERITIES]
    assert damage[0] > 0 and all(a < b for a, b in zip(damage, damage[1:])), damage


@pytest.mark.parametrize("bad, message", [
    ({"name": "blur"}, r"unknown corruption 'blur' \(did you mean \w+_blur\?\); choose one of: gaussian_noise"),
    ({"severity": 0}, "severity must be one of 1-5"),
    ({"severity": 6}, "severity must be one of 1-5"),
    ({"images": np.zeros((2, 32, 32, 3), np.float32)}, "uint8 images"),
    ({"images": np.zeros((32, 32, 3), np.uint8)}, "uint8 images"),
    ({"indices": [0]}, "1 indices for 2 images"),
])
def test_bad_arguments_are_user_errors(bad, message):
    args = {"images": np.zeros((2, 32, 32, 3), np.uint8), "name": "fog", "severity": 1, "indices": None} | bad
    with pytest.raises(CifarlabError, match=message):
        C.corrupt(args["images"], args["name"], args["severity"], indices=args["indices"])


# --- deterministic corruptions: the reference formulas --------------------------------------------------

def sk_rgb2hsv(arr):  # scikit-image's rgb2hsv, as the reference called it
    out = np.empty_like(arr)
    out_v = arr.max(-1)
    delta = arr.ptp(-1) if hasattr(arr, "ptp") else np.ptp(arr, -1)
    with np.errstate(invalid="ignore", divide="ignore"):
        out_s = delta / out_v
        out_s[delta == 0.0] = 0.0
        idx = arr[:, :, 0] == out_v
        out[idx, 0] = (arr[idx, 1] - arr[idx, 2]) / delta[idx]
        idx = arr[:, :, 1] == out_v
        out[idx, 0] = 2.0 + (arr[idx, 2] - arr[idx, 0]) / delta[idx]
        idx = arr[:, :, 2] == out_v
        out[idx, 0] = 4.0 + (arr[idx, 0] - arr[idx, 1]) / delta[idx]
    out_h = (out[:, :, 0] / 6.0) % 1.0
    out_h[delta == 0.0] = 0.0
    out[:, :, 0], out[:, :, 1], out[:, :, 2] = out_h, out_s, out_v
    out[np.isnan(out)] = 0
    return out


def sk_hsv2rgb(arr):
    hi = np.floor(arr[:, :, 0] * 6)
    f = arr[:, :, 0] * 6 - hi
    p = arr[:, :, 2] * (1 - arr[:, :, 1])
    q = arr[:, :, 2] * (1 - f * arr[:, :, 1])
    t = arr[:, :, 2] * (1 - (1 - f) * arr[:, :, 1])
    v = arr[:, :, 2]
    hi = np.dstack([hi, hi, hi]).astype(np.uint8) % 6
    return np.choose(hi, [np.dstack((v, t, p)), np.dstack((q, v, p)), np.dstack((p, v, t)),
                          np.dstack((p, q, v)), np.dstack((t, p, v)), np.dstack((v, p, q))])


@pytest.mark.parametrize("severity", C.SEVERITIES)
def test_brightness_contrast_saturate_match_the_reference(severity):
    x = np.concatenate([images(), np.zeros((1, 32, 32, 3), np.uint8)])  # black has no hue: it turns grey

    def brightness(img):
        c = [.05, .1, .15, .2, .3][severity - 1]
        hsv = sk_rgb2hsv(np.array(img) / 255.)
        hsv[:, :, 2] = np.clip(hsv[:, :, 2] + c, 0, 1)
        return np.clip(sk_hsv2rgb(hsv), 0, 1) * 255

    def saturate(img):
        c = [(0.3, 0), (0.1, 0), (1.5, 0), (2, 0.1), (2.5, 0.2)][severity - 1]
        hsv = sk_rgb2hsv(np.array(img) / 255.)
        hsv[:, :, 1] = np.clip(hsv[:, :, 1] * c[0] + c[1], 0, 1)
        return np.clip(sk_hsv2rgb(hsv), 0, 1) * 255

    def contrast(img):
        c = [.75, .5, .4, .3, 0.15][severity - 1]
        img = np.array(img) / 255.
        means = np.mean(img, axis=(0, 1), keepdims=True)
        return np.clip((img - means) * c + means, 0, 1) * 255

    for name, fn in (("brightness", brightness), ("saturate", saturate), ("contrast", contrast)):
        np.testing.assert_array_equal(C.corrupt(x, name, severity), reference(fn, x), err_msg=name)
    # truncation, not rounding: black + 0.3 is 76.5 -> 76
    assert (C.corrupt(x[-1:], "brightness", 5) == 76).all()


@pytest.mark.parametrize("severity", C.SEVERITIES)
def test_pixelate_is_pil_box_down_and_up_exactly(severity):
    c = [0.95, 0.9, 0.85, 0.75, 0.65][severity - 1]
    x = images()
    ref = reference(lambda img: Image.fromarray(img).resize((int(32 * c), int(32 * c)), Image.BOX)
                    .resize((32, 32), Image.BOX), x)
    np.testing.assert_array_equal(C.corrupt(x, "pixelate", severity), ref)


def test_pixelate_is_not_the_old_area_and_nearest_version():
    import torch
    import torch.nn.functional as F

    x = images()
    t = torch.from_numpy(x).permute(0, 3, 1, 2).float()
    old = F.interpolate(F.interpolate(t, size=(20, 20), mode="area"), size=(32, 32), mode="nearest")
    old = old.round().clamp(0, 255).byte().permute(0, 2, 3, 1).numpy()
    assert (C.corrupt(x, "pixelate", 5) != old).mean() > 0.1


@pytest.mark.parametrize("severity", C.SEVERITIES)
def test_jpeg_is_a_pil_round_trip_at_the_reference_quality(severity):
    quality = [80, 65, 58, 50, 40][severity - 1]

    def jpeg(img):
        out = io.BytesIO()
        Image.fromarray(img).save(out, "JPEG", quality=quality)
        return Image.open(out)

    x = images()
    np.testing.assert_array_equal(C.corrupt(x, "jpeg_compression", severity), reference(jpeg, x))


def edge_padded_gaussian(img: np.ndarray, sigma: float) -> np.ndarray:
    """scikit-image's gaussian(multichannel=True): a separable kernel of radius int(4 sigma + 0.5), the edge
    repeated beyond the border, written out with np.pad; each tap pair summed as scipy sums a symmetric
    kernel (w0 x + w1 (left + right) + ...), so that the last bit agrees."""
    r = int(4 * sigma + 0.5)
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    k /= k.sum()
    h, w = img.shape[:2]
    p = np.pad(img, ((r, r), (0, 0), (0, 0)), mode="edge")
    rows = k[r] * p[r:r + h]
    for j in range(1, r + 1):
        rows = rows + (p[r - j:r - j + h] + p[r + j:r + j + h]) * k[r + j]
    p = np.pad(rows, ((0, 0), (r, r), (0, 0)), mode="edge")
    out = k[r] * p[:, r:r + w]
    for j in range(1, r + 1):
        out = out + (p[:, r - j:r - j + w] + p[:, r + j:r + j + w]) * k[r + j]
    return out


@pytest.mark.parametrize("severity", C.SEVERITIES)
def test_gaussian_blur_repeats_the_edge_as_the_reference(severity):
    sigma = [.4, .6, 0.7, .8, 1][severity - 1]
    x = images()
    ref = reference(lambda img: np.clip(edge_padded_gaussian(img / 255., sigma), 0, 1) * 255, x)
    assert_agree(C.corrupt(x, "gaussian_blur", severity), ref, exact_share=0.999)


def test_blur_border_is_the_edge_repeated_not_reflected():
    # a bright first column: repeating the edge keeps it brighter than a reflection (which mirrors the dark
    # second column over the border) would
    x = np.zeros((1, 32, 32, 3), np.uint8)
    x[:, :, 0] = 255
    out = C.corrupt(x, "gaussian_blur", 5)[0, :, 0, 0]
    ref = np.uint8(np.clip(edge_padded_gaussian(x[0] / 255., 1.0), 0, 1) * 255)[:, 0, 0]
    np.testing.assert_array_equal(out, ref)
    reflected = ndimage.gaussian_filter(x[0, :, :, 0] / 255., 1.0, mode="mirror")[:, 0] * 255
    assert (out > reflected.astype(np.uint8)).all()


def reference_disk(radius, alias_blur):
    """make_cifar_c's `disk`: a 17x17 aliased disk, normalized, blurred by OpenCV's 3x3 Gaussian (a float32
    kernel, one pass per axis in float32, border reflect-101)."""
    L = np.arange(-8, 8 + 1)
    X, Y = np.meshgrid(L, L)
    disk = np.array(radius ** 2 >= (X ** 2 + Y ** 2), dtype=np.float32)
    disk /= np.sum(disk)
    g = np.exp(-np.array([-1., 0., 1.]) ** 2 / (2 * alias_blur ** 2))
    g = (g / g.sum()).astype(np.float32)
    p = np.pad(disk, 1, mode="reflect")  # numpy's "reflect" is OpenCV's BORDER_REFLECT_101
    rows = sum(g[j].astype(np.float64) * p[:, j:j + 17] for j in range(3)).astype(np.float32)
    return sum(g[i].astype(np.float64) * rows[i:i + 17] for i in range(3)).astype(np.float32)


@pytest.mark.parametrize("severity", C.SEVERITIES)
def test_defocus_blur_matches_the_reference(severity):
    radius, alias = [(0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)][severity - 1]
    kernel = reference_disk(radius, alias)

    def defocus(img):  # cv2.filter2D per channel: correlation, border reflect-101
        p = np.pad(np.array(img) / 255., ((8, 8), (8, 8), (0, 0)), mode="reflect")
        out = sum(kernel[i, j] * p[i:i + 32, j:j + 32] for i in range(17) for j in range(17))
        return np.clip(out, 0, 1) * 255

    x = images()
    assert_agree(C.corrupt(x, "defocus_blur", severity), reference(defocus, x), exact_share=0.999)


def reference_clipped_zoom(img, zoom_factor):
    h = img.shape[0]
    ch = int(np.ceil(h / zoom_factor))
    top = (h - ch) // 2
    img = ndimage.zoom(img[top:top + ch, top:top + ch], (zoom_factor, zoom_factor, 1), order=1)
    trim_top = (img.shape[0] - h) // 2
    return img[trim_top:trim_top + h, trim_top:trim_top + h]


@pytest.mark.parametrize("severity", C.SEVERITIES)
def test_zoom_blur_matches_the_reference(severity):
    factors = [np.arange(1, 1.06, 0.01), np.arange(1, 1.11, 0.01), np.arange(1, 1.16, 0.01),
               np.arange(1, 1.21, 0.01), np.arange(1, 1.26, 0.01)][severity - 1]

    def zoom_blur(img):
        img = (np.array(img) / 255.).astype(np.float32)
        out = np.zeros_like(img)
        for zoom_factor in factors:
            out += reference_clipped_zoom(img, zoom_factor)
        return np.clip((img + out) / (len(factors) + 1), 0, 1) * 255

    x = images()
    assert_agree(C.corrupt(x, "zoom_blur", severity), reference(zoom_blur, x), exact_share=0.999)


# --- random corruptions: the reference with the same draws -----------------------------------------------

def per_image(name, severity, fn, x, seed=0):
    """The reference applied image by image, its np.random calls answered by that image's generator."""
    rngs = C.image_generators(seed, name, severity, range(len(x)))
    return np.stack([np.uint8(fn(img, rng)) for img, rng in zip(x, rngs)])


@pytest.mark.parametrize("severity", C.SEVERITIES)
def test_noises_match_the_reference_with_the_same_draws(severity):
    x = images()

    def gaussian_noise(img, rng):
        c = [0.04, 0.06, .08, .09, .10][severity - 1]
        img = np.array(img) / 255.
        return np.clip(img + rng.normal(size=img.shape, scale=c), 0, 1) * 255

    def shot_noise(img, rng):
        c = [500, 250, 100, 75, 50][severity - 1]
        img = np.array(img) / 255.
        return np.clip(rng.poisson(img * c) / c, 0, 1) * 255

    def speckle_noise(img, rng):
        c = [.06, .1, .12, .16, .2][severity - 1]
        img = np.array(img) / 255.
        return np.clip(img + img * rng.normal(size=img.shape, scale=c), 0, 1) * 255

    for name, fn in (("gaussian_noise", gaussian_noise), ("shot_noise", shot_noise),
                     ("speckle_noise", speckle_noise)):
        np.testing.assert_array_equal(C.corrupt(x, name, severity), per_image(name, severity, fn, x), err_msg=name)


def reference_plasma_fractal(rng, mapsize=32, wibbledecay=3):
    """make_cifar_c's plasma_fractal, np.random.uniform answered by `rng`."""
    maparray = np.empty((mapsize, mapsize), dtype=np.float64)
    maparray[0, 0] = 0
    stepsize = mapsize
    wibble = 100

    def wibbledmean(array):
        return array / 4 + wibble * rng.uniform(-wibble, wibble, array.shape)

    def fillsquares():
        cornerref = maparray[0:mapsize:stepsize, 0:mapsize:stepsize]
        squareaccum = cornerref + np.roll(cornerref, shift=-1, axis=0)
        squareaccum += np.roll(squareaccum, shift=-1, axis=1)
        maparray[stepsize // 2:mapsize:stepsize, stepsize // 2:mapsize:stepsize] = wibbledmean(squareaccum)

    def filldiamonds():
        drgrid = maparray[stepsize // 2:mapsize:stepsize, stepsize // 2:mapsize:stepsize]
        ulgrid = maparray[0:mapsize:stepsize, 0:mapsize:stepsize]
        ltsum = (drgrid + np.roll(drgrid, 1, axis=0)) + (ulgrid + np.roll(ulgrid, -1, axis=1))
        maparray[0:mapsize:stepsize, stepsize // 2:mapsize:stepsize] = wibbledmean(ltsum)
        ttsum = (drgrid + np.roll(drgrid, 1, axis=1)) + (ulgrid + np.roll(ulgrid, -1, axis=0))
        maparray[stepsize // 2:mapsize:stepsize, 0:mapsize:stepsize] = wibbledmean(ttsum)

    while stepsize >= 2:
        fillsquares()
        filldiamonds()
        stepsize //= 2
        wibble /= wibbledecay
    maparray -= maparray.min()
    return maparray / maparray.max()


@pytest.mark.parametrize("severity", C.SEVERITIES)
def test_fog_matches_the_reference_with_the_same_draws(severity):
    c = [(.2, 3), (.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75)][severity - 1]

    def fog(img, rng):
        img = np.array(img) / 255.
        max_val = img.max()
        img += c[0] * reference_plasma_fractal(rng, wibbledecay=c[1])[:32, :32][..., np.newaxis]
        return np.clip(img * max_val / (max_val + c[0]), 0, 1) * 255

    x = images()
    np.testing.assert_array_equal(C.corrupt(x, "fog", severity), per_image("fog", severity, fog, x))


def test_glass_shuffle_is_the_reference_loop():
    """The reference's 'swap' through numpy views, run literally, against the one-gather-per-pass version."""
    rng = np.random.default_rng(3)
    x = rng.integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    offsets = np.stack([C.glass_offsets(np.random.default_rng(i), 2, 32, 32) for i in range(3)])
    expected = []
    for img, off in zip(x, offsets):
        img = img.copy()
        for it in range(2):
            for a, h in enumerate(range(32 - 1, 1, -1)):
                for b, w in enumerate(range(32 - 1, 1, -1)):
                    dx, dy = off[it, a, b]
                    h_prime, w_prime = h + dy, w + dx
                    img[h, w], img[h_prime, w_prime] = img[h_prime, w_prime], img[h, w]
        expected.append(img)
    np.testing.assert_array_equal(C.glass_shuffle(x, offsets), np.stack(expected))
    assert set(np.unique(offsets)) == {-1, 0}  # randint(-1, 1): the high end is exclusive


def test_impulse_noise_flips_the_reference_share_to_black_or_white():
    x = np.full((40, 32, 32, 3), 128, np.uint8)
    for severity, amount in zip(C.SEVERITIES, (.01, .02, .03, .05, .07)):
        out = C.corrupt(x, "impulse_noise", severity)
        flipped = out != 128
        assert set(np.unique(out[flipped])) <= {0, 255}
        assert abs(flipped.mean() - amount) < 0.004
        assert abs((out == 255).mean() - amount / 2) < 0.003


def test_motion_kernel_follows_the_angle():
    weights, offsets = C.motion_kernel(6, 2, 0)
    assert len(weights) == 13 and weights.sum() == pytest.approx(1) and (np.diff(weights) < 0).all()
    np.testing.assert_array_equal(offsets, np.stack([np.zeros(13, int), np.arange(13)], axis=1))
    _, offsets = C.motion_kernel(6, 2, 90)
    np.testing.assert_array_equal(offsets[:, 1], 0)
    # a constant image stays constant (the edge is repeated, nothing leaks in from outside)
    flat = np.full((32, 32, 3), 77, np.uint8)
    np.testing.assert_allclose(C.motion_blur_image(flat, 9, 2.5, 30), 77)


def magick_motion_blur(img: Image.Image, radius: float, sigma: float, angle: float) -> Image.Image:
    """The reference's MotionImage.motion_blur: a PNG through ImageMagick's MagickMotionBlurImage (via Wand)
    and back, the way CIFAR-10-C was made. Skips without Wand or with another ImageMagick than 6 Q16."""
    wand_image = pytest.importorskip("wand.image", reason="Wand or the ImageMagick library is missing")
    from wand.api import library
    from wand.version import MAGICK_VERSION, QUANTUM_DEPTH

    if not MAGICK_VERSION.startswith("ImageMagick 6.") or QUANTUM_DEPTH != 16:
        pytest.skip(f"the reference ran ImageMagick 6 Q16; this is {MAGICK_VERSION}")
    library.MagickMotionBlurImage.argtypes = (ctypes.c_void_p, ctypes.c_double, ctypes.c_double, ctypes.c_double)
    png = io.BytesIO()
    img.save(png, format="PNG")
    with wand_image.Image(blob=png.getvalue()) as magick:
        library.MagickMotionBlurImage(magick.wand, radius, sigma, angle)
        blob = magick.make_blob()
    return Image.open(io.BytesIO(blob))


@pytest.mark.parametrize("severity", C.SEVERITIES)
def test_motion_blur_matches_imagemagick(severity):
    """Bit for bit with the reference's ImageMagick: it floors to 8 bits (through its 16-bit quantum), where
    rounding was one level off on about half the values."""
    radius, sigma = [(6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5)][severity - 1]

    def motion_blur(img, rng):
        blurred = magick_motion_blur(Image.fromarray(img), radius, sigma, rng.uniform(-45, 45))
        return np.asarray(blurred.convert("RGB"))  # the reference's greyscale-to-RGB, for grey pictures

    x = images()
    ref = per_image("motion_blur", severity, motion_blur, x)
    np.testing.assert_array_equal(C.corrupt(x, "motion_blur", severity), ref)


@pytest.mark.parametrize("severity", C.SEVERITIES)
def test_snow_matches_the_reference_with_imagemagick(severity):
    """The reference's snow with its flakes blurred by ImageMagick (its cv2.cvtColor: opencv_gray, tested below)."""
    c = [(0.1, 0.2, 1, 0.6, 8, 3, 0.95), (0.1, 0.2, 1, 0.5, 10, 4, 0.9), (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9),
         (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85), (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8)][severity - 1]

    def snow(img, rng):
        x = np.array(img, dtype=np.float32) / 255.
        layer = rng.normal(size=x.shape[:2], loc=c[0], scale=c[1])
        layer = reference_clipped_zoom(layer[..., np.newaxis], c[2])
        layer[layer < c[3]] = 0
        layer = Image.fromarray((np.clip(layer.squeeze(), 0, 1) * 255).astype(np.uint8))
        layer = np.asarray(magick_motion_blur(layer, c[4], c[5], rng.uniform(-135, -45)).convert("L")) / 255.
        layer = layer[..., np.newaxis]
        x = c[6] * x + (1 - c[6]) * np.maximum(x, C.opencv_gray(x).reshape(32, 32, 1) * 1.5 + 0.5)
        return np.clip(x + layer + np.rot90(layer, k=2), 0, 1) * 255

    x = images(20)
    np.testing.assert_array_equal(C.corrupt(x, "snow", severity), per_image("snow", severity, snow, x))


def test_magick_8bit_is_imagemagicks_16_bit_quantum_truncated():
    levels = np.array([0.0, 99.4, 99.5, 99.998, 99.999, 254.9, 300.0, -3.0])
    # 99.998 * 257 + 0.5 stays below 100 * 257; 99.999 reaches it
    np.testing.assert_array_equal(C.magick_8bit(levels), [0, 99, 99, 99, 100, 254, 255, 0])


def test_opencv_gray_is_cvtcolors_float_rounding():
    cv2 = pytest.importorskip("cv2")
    if not cv2.ipp.useIPP():
        pytest.skip("this OpenCV build does not use IPP, whose rounding opencv_gray follows")
    x = (np.random.default_rng(0).integers(0, 256, (64, 32, 3)) / 255.).astype(np.float32)
    np.testing.assert_array_equal(C.opencv_gray(x), cv2.cvtColor(x, cv2.COLOR_RGB2GRAY))


def test_warp_affine_is_exact_on_whole_pixel_shifts_with_reflect_101_border():
    x = np.random.default_rng(0).random((2, 32, 32, 3)).astype(np.float32)
    identity = np.tile(np.array([[1.0, 0, 0], [0, 1.0, 0]]), (2, 1, 1))
    np.testing.assert_array_equal(C.warp_affine(x, identity), x)
    shift = identity.copy()
    shift[:, 0, 2] = 2  # content moves 2 pixels right: column j shows source column j - 2
    out = C.warp_affine(x, shift)
    np.testing.assert_array_equal(out[:, :, 2:], x[:, :, :-2])
    np.testing.assert_array_equal(out[:, :, :2], x[:, :, [2, 1]])  # reflect-101: -2 -> 2, -1 -> 1
    src = np.float32([[26, 26], [26, 6], [6, 6]])
    np.testing.assert_allclose(C.affine_from_points(src, src + [1, -2]), [[1, 0, 1], [0, 1, -2]], atol=1e-12)


def test_frost_blends_crops_of_the_reduced_pictures():
    pictures = C.frost_pictures()
    # round(0.2 x) of the originals (900x600, 560x315, 560x315, 527x350, 660x495), as (height, width)
    assert [p.shape[:2] for p in pictures] == [(120, 180), (63, 112), (63, 112), (70, 105), (99, 132)]
    x = np.full((30, 32, 32, 3), 100, np.uint8)
    for severity, (a, b) in zip(C.SEVERITIES, ((1, 0.2), (1, 0.3), (0.9, 0.4), (0.85, 0.4), (0.75, 0.45))):
        frost_part = C.corrupt(x, "frost", severity).astype(float) - int(a * 100)
        assert frost_part.min() >= 0 and frost_part.max() <= b * 255 + 1
        assert frost_part.mean() > 0.3 * b * 255  # frost is mostly bright


def test_snow_brightens_and_spatter_marks():
    x = images(9)
    for severity in C.SEVERITIES:
        assert C.corrupt(x, "snow", severity).mean() > x.mean() + 2
    # spatter's mud (severities 4-5) darkens, its water (1-3) brightens: only ever the pixels it touches
    mud = C.corrupt(x, "spatter", 5).astype(int) - x
    water = C.corrupt(x, "spatter", 2).astype(int) - x
    assert mud.min() < -20 and (water >= 0).all() and water.max() > 10


def test_spatter_helpers_match_opencv_definitions():
    step = np.zeros((1, 16, 16), np.uint8)
    step[:, :, 8:] = 200
    edges = C.canny(step, 50, 150)
    assert edges[0, 2:-2].any(axis=0).nonzero()[0].tolist() in ([7], [8])  # one thin edge at the step
    mask = np.ones((1, 7, 7), bool)
    mask[0, 3, 3] = False  # the one zero pixel
    dist = C.chamfer_distance(mask)[0]
    assert (dist[3, 3], dist[3, 4], dist[4, 4], dist[5, 4]) == (0, 1, np.float32(1.4), np.float32(2.1969))
    two = np.array([[10, 10], [10, 40]], np.uint8)
    np.testing.assert_array_equal(C.equalize_hist(two), [[0, 0], [0, 255]])

"""Opening an image a user hands over (a class folder, predict, explain, features, a web upload) safely.

A 14000x14000 PNG of one colour is 24 KB on disk and 588 MB once decoded: a decompression bomb. Pillow's
`Image.open` reads only the header, so the pixel count is checked there, before anything is decoded,
against MAX_IMAGE_PIXELS (lower than Pillow's own warning threshold, so Pillow never has its say first).
Every refusal is a DataError of one line naming the file. Imports no torch: folder decoding workers use it.

`to_rgb_array` is the one place an opened image becomes pixels, for every intake (class folders, predict,
explain, features, export checks, the web app): it turns the picture upright by its EXIF orientation and
shows 16-bit and 32-bit images as an image viewer does, where Pillow's own `convert("RGB")` clips them to
pure white or black.
"""
from __future__ import annotations

import io
import warnings
from collections.abc import Collection
from pathlib import Path
from typing import IO, Any

import numpy as np

from ..errors import DataError

IMAGE_SIZE = 32
MAX_IMAGE_PIXELS = 8192 * 8192  # 67 megapixels (~200 MB decoded as RGB): far beyond any photo cifarlab needs

ImageSource = str | Path | bytes | IO[bytes]


class NotAnImageError(DataError):
    """The file is not an image Pillow knows."""


class ImageFormatError(DataError):
    """An image, but of a format the caller does not accept."""


class ImageTooLargeError(DataError):
    """The header announces more pixels than the limit: refused before decoding."""


class BlankImageError(DataError):
    """A 32-bit image with nothing to show: one value everywhere, or no finite value at all."""


def describe(source: ImageSource, name: str | None = None) -> str:
    """How an error names the image: the given name, else its path."""
    if name:
        return name
    if isinstance(source, str | Path):
        return str(source)
    return "the image"


def open_image(source: ImageSource, name: str | None = None, *, max_pixels: int = MAX_IMAGE_PIXELS,
               formats: Collection[str] | None = None) -> Any:
    """The image opened lazily (its header read, no pixel decoded), checked against `max_pixels` and
    `formats` (Pillow format names; None accepts any). Use it in a `with` block; decode with
    to_rgb_array. Raises NotAnImageError, ImageFormatError, ImageTooLargeError or DataError."""
    from PIL import Image, UnidentifiedImageError

    what = describe(source, name)
    fp = io.BytesIO(source) if isinstance(source, bytes) else source
    try:
        with warnings.catch_warnings():  # Pillow warns above its own limit; ours is lower and says more
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(fp)
    except UnidentifiedImageError:
        raise NotAnImageError(f"cannot read {what}: not an image") from None
    except Image.DecompressionBombError as e:  # beyond twice Pillow's limit: Pillow refuses the header itself
        raise ImageTooLargeError(f"cannot read {what}: {_too_large(e.args[0] if e.args else '', max_pixels)}") \
            from None
    except FileNotFoundError:
        raise DataError(f"image not found: {what}") from None
    except (OSError, ValueError, SyntaxError, EOFError) as e:
        raise DataError(f"cannot read {what}: corrupt image ({_one_line(e)})") from None
    try:
        if formats is not None and img.format not in formats:
            raise ImageFormatError(f"cannot read {what}: {img.format} images are not accepted")
        width, height = img.size
        if width * height > max_pixels:
            raise ImageTooLargeError(f"cannot read {what}: it is {width}x{height} pixels "
                                     f"({width * height:,}); {_limit(max_pixels)}")
    except DataError:
        img.close()
        raise
    return img


def to_rgb_array(img: Any, name: str, size: int = IMAGE_SIZE) -> tuple[np.ndarray, bool, bool]:
    """Decode an image from open_image to (size, size, 3) uint8, and whether it had to be resized /
    converted to RGB. A file whose data does not decode (truncated, corrupt) is a DataError naming it."""
    from PIL import Image

    try:
        img.load()
        converted = img.mode != "RGB"
        img = _eight_bit(_upright(img), name)
        rgb = img.convert("RGB") if img.mode != "RGB" else img
        resized = rgb.size != (size, size)
        if resized:
            rgb = rgb.resize((size, size), Image.Resampling.BICUBIC)
        return np.asarray(rgb, dtype=np.uint8), resized, converted
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as e:
        raise DataError(f"cannot read {name}: corrupt image ({_one_line(e)})") from None


def _upright(img: Any) -> Any:
    """The image turned as its EXIF orientation says (a phone photo taken upright is stored sideways)."""
    from PIL import ExifTags, ImageOps

    if img.getexif().get(ExifTags.Base.Orientation, 1) == 1:
        return img  # nothing to turn: no copy
    return ImageOps.exif_transpose(img)


def _eight_bit(img: Any, name: str) -> Any:
    """16-bit and 32-bit grey as an 8-bit "L" image, as viewers show them: 16-bit (PNG, TIFF) scaled by
    1/256, 32-bit integer ("I") and float ("F") stretched from their lowest to their highest value.
    Other modes are returned as they are (Pillow's convert("RGB") shows them right)."""
    from PIL import Image

    if img.mode.startswith("I;16"):
        values = np.asarray(img)
        if values.dtype.kind == "u":
            return Image.fromarray((values >> 8).astype(np.uint8), "L")
        img = img.convert("I")  # a signed 16-bit variant: stretched like 32-bit
    if img.mode not in ("I", "F"):
        return img
    values = np.asarray(img, dtype=np.float64)  # float64: exact for every 32-bit integer
    finite = values[np.isfinite(values)]
    kind = "32-bit integer" if img.mode == "I" else "32-bit float"
    if finite.size == 0:
        raise BlankImageError(f"cannot read {name}: a {kind} image without a finite value (all NaN or "
                              "infinite): nothing to show")
    low, high = finite.min(), finite.max()
    if low == high:
        raise BlankImageError(f"cannot read {name}: a {kind} image of one value ({low:g}) everywhere: "
                              "nothing to show")
    values = np.nan_to_num(values, nan=low, posinf=high, neginf=low)  # NaN shown black, as viewers do
    return Image.fromarray(np.round((values - low) * (255 / (high - low))).astype(np.uint8), "L")


def load_rgb_image(source: ImageSource, size: int = IMAGE_SIZE, *, name: str | None = None,
                   max_pixels: int = MAX_IMAGE_PIXELS,
                   formats: Collection[str] | None = None) -> tuple[np.ndarray, bool, bool]:
    """One image as (size, size, 3) uint8, and whether it had to be resized / converted to RGB; checked
    against the pixel limit before it is decoded. Every refusal is a one-line DataError naming it."""
    with open_image(source, name, max_pixels=max_pixels, formats=formats) as img:
        return to_rgb_array(img, describe(source, name), size)


def _limit(max_pixels: int) -> str:
    side = int(max_pixels ** 0.5)
    square = f" ({side}x{side})" if side * side == max_pixels else ""
    return f"the limit is {max_pixels:,} pixels{square}; shrink the image first"


def _too_large(pillow_message: str, max_pixels: int) -> str:
    # Pillow: "Image size (196000000 pixels) exceeds limit of 178956970 pixels, could be decompression bomb DOS attack."
    digits = pillow_message.split("(", 1)[-1].split(" ", 1)[0]
    count = f" ({int(digits):,} pixels)" if digits.isdigit() else ""
    return f"it is too large{count}; {_limit(max_pixels)}"


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:200] if text else type(exc).__name__

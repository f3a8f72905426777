"""Opening an image a user hands over (a class folder, predict, explain, features, a web upload) safely.

A 14000x14000 PNG of one colour is 24 KB on disk and 588 MB once decoded: a decompression bomb. Pillow's
`Image.open` reads only the header, so the pixel count is checked there, before anything is decoded,
against MAX_IMAGE_PIXELS (lower than Pillow's own warning threshold, so Pillow never has its say first).
Every refusal is a DataError of one line naming the file. Imports no torch: folder decoding workers use it.
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
        rgb = img.convert("RGB") if converted else img
        resized = rgb.size != (size, size)
        if resized:
            rgb = rgb.resize((size, size), Image.Resampling.BICUBIC)
        return np.asarray(rgb, dtype=np.uint8), resized, converted
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as e:
        raise DataError(f"cannot read {name}: corrupt image ({_one_line(e)})") from None


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

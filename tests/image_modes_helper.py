"""Image files whose pixels Pillow's own convert("RGB") shows wrong (16-bit and 32-bit grey) or unturned
(EXIF orientation), each with the 8-bit RGB picture an image viewer shows of it; and 32-bit images with
nothing to show. Built so that the expected picture is exact, whatever the rounding: 16-bit values are
v * 257 (v by >>8 and by /257 alike), 32-bit ones lo + v * step with v the 8-bit value and 0 and 255 both
present. 32x32, so nothing is resized. (Used by the tests and by benchmarks/reliability.py.)"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import ExifTags, Image

SIZE = 32


def _grey_levels(seed: int) -> np.ndarray:
    """(32, 32) uint8 with its darkest pixel 0 and its brightest 255, so a stretch to 0..255 keeps it."""
    v = np.random.default_rng(seed).integers(1, 255, (SIZE, SIZE), dtype=np.uint8)
    v[0, 0], v[-1, -1] = 0, 255
    return v


def _rgb(grey: np.ndarray) -> np.ndarray:
    return np.repeat(grey[..., None], 3, axis=-1)


def _exif_jpeg(path: Path, orientation: int, seed: int) -> np.ndarray:
    """A JPEG tagged with `orientation`, and the picture a viewer shows: its stored pixels turned."""
    rng = np.random.default_rng(seed)
    stored = np.zeros((SIZE, SIZE, 3), np.uint8)
    stored[: SIZE // 2] = (230, 40, 40)  # red on top of blue, a green corner: every turn looks different
    stored[SIZE // 2:] = (40, 40, 230)
    stored[:8, :8] = (40, 230, 40)
    stored = np.clip(stored + rng.integers(-10, 10, stored.shape), 0, 255).astype(np.uint8)
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = orientation
    Image.fromarray(stored).save(path, format="JPEG", quality=95, exif=exif)
    with Image.open(path) as img:
        raw = np.asarray(img.convert("RGB"))  # Pillow does not turn it by itself
    # 6: the camera was turned right, the picture is shown turned 90 degrees clockwise; 8: anticlockwise
    return np.rot90(raw, k=-1 if orientation == 6 else 1).copy()


def mode_images(folder: Path) -> dict[str, tuple[Path, np.ndarray]]:
    """name -> (an image file written in `folder`, the (32, 32, 3) uint8 picture a viewer shows of it)."""
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    v = _grey_levels(0)
    for fmt, suffix in (("PNG", "png"), ("TIFF", "tif")):
        path = folder / f"grey16.{suffix}"
        Image.fromarray(v.astype(np.uint16) * 257).save(path, format=fmt)  # mode I;16
        out[f"I;16 {fmt}"] = (path, _rgb(v))
    v = _grey_levels(1)
    path = folder / "int32.tif"
    Image.fromarray(v.astype(np.int32) * 4000 - 1000).save(path, format="TIFF")  # mode I: -1000 .. 1019000
    out["I TIFF"] = (path, _rgb(v))
    v = _grey_levels(2)
    values = v.astype(np.float32) * 0.25 - 1.5  # mode F: -1.5 .. 62.25, exact in binary
    values[5, 7] = np.nan  # viewers show NaN black
    v[5, 7] = 0
    path = folder / "float32.tif"
    Image.fromarray(values).save(path, format="TIFF")
    out["F TIFF"] = (path, _rgb(v))
    for orientation in (6, 8):
        path = folder / f"exif{orientation}.jpg"
        out[f"EXIF {orientation} JPEG"] = (path, _exif_jpeg(path, orientation, orientation))
    for name, (path, _) in out.items():
        with Image.open(path) as img:  # the files are what they claim, or the cases test nothing
            assert img.mode == name.split()[0] or name.startswith("EXIF"), (name, img.mode)
    return out


def blank_images(folder: Path) -> dict[str, Path]:
    """32-bit images with nothing to show: one value everywhere, no finite value."""
    folder.mkdir(parents=True, exist_ok=True)
    out = {"constant I": (folder / "constant.tif", np.full((SIZE, SIZE), 7, np.int32)),
           "constant F": (folder / "constant_f.tif", np.full((SIZE, SIZE), 0.5, np.float32)),
           "all-NaN F": (folder / "nan.tif", np.full((SIZE, SIZE), np.nan, np.float32))}
    for path, values in out.values():
        Image.fromarray(values).save(path, format="TIFF")
    return {name: path for name, (path, _) in out.items()}

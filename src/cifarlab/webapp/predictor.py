"""What the web app does with an upload, without any web framework: check and decode the image, then
classify it and explain the chosen class with cifarlab's own predict and explain code."""
from __future__ import annotations

import base64
import io
import json
import threading
from pathlib import Path
from typing import Any

import numpy as np

from ..attribution.choice import choose_method
from ..errors import CifarlabError, DataError

ALLOWED_FORMATS = {"PNG": "PNG", "JPEG": "JPEG", "GIF": "GIF", "BMP": "BMP", "WEBP": "WebP", "TIFF": "TIFF",
                   "PPM": "PPM"}
MAX_PIXELS = 4096 * 4096  # a bigger picture is a decompression bomb, not a photo of a cat
SCALE = 8  # the 32x32 image and its overlay are sent at 256x256


class UploadError(Exception):
    """An upload the app refuses: an HTTP status (4xx) and a message for the user."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def decode_upload(data: bytes, max_bytes: int) -> np.ndarray:
    """The upload as the (32, 32, 3) uint8 image the model sees, or an UploadError saying what is wrong."""
    from PIL import Image, UnidentifiedImageError

    from ..data.folder import load_rgb_image

    if not data:
        raise UploadError(400, "the file is empty")
    if len(data) > max_bytes:
        raise UploadError(413, f"the file is {len(data) / 2**20:.1f} MB; the limit is {max_bytes / 2**20:g} MB")
    accepted = ", ".join(ALLOWED_FORMATS.values())
    try:
        with Image.open(io.BytesIO(data)) as img:
            fmt, (w, h) = img.format, img.size
    except UnidentifiedImageError:
        raise UploadError(415, f"not an image (accepted: {accepted})") from None
    except Image.DecompressionBombError:
        raise UploadError(413, f"the image has too many pixels (the limit is {MAX_PIXELS:,})") from None
    except (OSError, ValueError, SyntaxError) as e:
        raise UploadError(400, f"malformed image: {e}") from None
    if fmt not in ALLOWED_FORMATS:
        raise UploadError(415, f"{fmt} images are not accepted (accepted: {accepted})")
    if w * h > MAX_PIXELS:
        raise UploadError(413, f"the image is {w}x{h} pixels; the limit is {MAX_PIXELS:,} pixels")
    try:
        return np.array(load_rgb_image(io.BytesIO(data))[0])  # a writable copy: torch warns about read-only arrays
    except DataError as e:  # it said it was an image, but its data does not decode (truncated, corrupt)
        raise UploadError(400, f"malformed {ALLOWED_FORMATS[fmt]} image: {e.__context__ or e}") from None


def png_data_url(image: np.ndarray) -> str:
    """An (H, W, 3) uint8 or [0, 1] float image as a data: URL of a PNG."""
    from PIL import Image

    if image.dtype != np.uint8:
        image = (np.clip(image, 0, 1) * 255).round().astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


class Predictor:
    """A run's model, loaded once and shared by all requests. One request at a time uses it: Captum puts
    its hooks on the model itself."""

    def __init__(self, run_dir: str | Path, device: str = "auto"):
        from ..features.inputs import load

        self.run_dir = Path(run_dir)
        self.loaded = load(self.run_dir, device)
        self.lock = threading.Lock()
        self.summary = self._summary()
        self.choice = choose_method(self.run_dir)  # the run's most faithful method, by its own measurements
        self._test = None

    def _summary(self) -> dict[str, Any]:
        """summary.json, for the test accuracy shown on the page ({} for an unfinished run)."""
        try:
            return json.loads((self.run_dir / "summary.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}

    @property
    def classes(self) -> list[str]:
        return self.loaded.classes

    def info(self) -> dict[str, Any]:
        return {"model": self.loaded.architecture, "run_dir": str(self.run_dir), "classes": self.classes,
                "test_accuracy": self.summary.get("test_accuracy")}

    def predict(self, image: np.ndarray, top_k: int = 5, target: str | None = None) -> dict[str, Any]:
        """Top-k classes and the overlay of the run's chosen method for `target` (default: the top class)."""
        from ..api import top_k_predictions
        from ..attribution.api import explain, resolve_target
        from ..attribution.methods import explainer_class
        from ..attribution.plots import overlay
        from ..features.plots import enlarge

        if target is not None:
            resolve_target(target, self.classes)  # an unknown class fails before any work
        method = self.choice.method
        with self.lock:
            top = top_k_predictions(self.loaded.model, self.classes, image[None], top_k, self.loaded.device)[0]
            cls = target if target is not None else top[0]["class"]
            e = explain(self.loaded.model, image, method, target=cls, trust_checks=False, classes=self.classes)
        big = enlarge(image, SCALE)
        return {"predictions": top, "image": png_data_url(big),
                "overlay": {"class": cls, "method": method, "measurement": self.choice.measurement,
                            "marks": self.choice.marks.get(method, []), "layer": e.layer,
                            "image": png_data_url(overlay(e.maps[method][cls], big,
                                                          signed=explainer_class(method).signed))}}

    def random_test_image(self, seed: int | None = None) -> dict[str, Any]:
        """A random image of the run's test split, with its true class."""
        from ..features.inputs import run_test_split

        if self._test is None:
            try:
                self._test = run_test_split(self.loaded)
            except CifarlabError as e:
                raise UploadError(404, f"the run's test images are not available: {e}") from None
        i = int(np.random.default_rng(seed).integers(len(self._test)))
        return {"image": png_data_url(self._test.images[i]), "label": self.classes[int(self._test.labels[i])],
                "source": self._test.files[i] if self._test.files else f"test[{i}]", "index": i}

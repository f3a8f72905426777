"""What the web app does with an upload, without any web framework: check and decode the image, then
classify it and explain the chosen class with cifarlab's own predict and explain code."""
from __future__ import annotations

import base64
import io
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from ..attribution.choice import RANDOM_ROW, choose_method
from ..attribution.methods import EXPLAINERS, list_explainers
from ..errors import CifarlabError, DataError
from ..rundir.layout import read_summary

ALLOWED_FORMATS = {"PNG": "PNG", "JPEG": "JPEG", "GIF": "GIF", "BMP": "BMP", "WEBP": "WebP", "TIFF": "TIFF",
                   "PPM": "PPM"}
LARGE_PIXELS = 1024 * 1024  # after decoding one this large, freed memory is given back to the system
MAX_PIXELS = 4096 * 4096  # per upload, from its header: a bigger picture is a bomb, not a photo of a cat
SCALE = 8  # the 32x32 image and its overlay are sent at 256x256
# Uploads are decoded by these two threads only, whatever thread serves the request: at most two at once
# (a 4096x4096 image is ~50 MB decoded, twice that while it is converted), and always by the same threads.
# The C allocator keeps a pool of freed memory per thread that decoded; with every request thread decoding,
# 20 simultaneous large uploads left the server 0.7 GB larger for good, with two it stays bounded.
DECODER = ThreadPoolExecutor(max_workers=2, thread_name_prefix="cifarlab-decode")


class UploadError(Exception):
    """An upload the app refuses: an HTTP status (4xx) and a message for the user."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def upload_name(filename: str | None) -> str:
    """How messages name an upload: its file name (quoted, on one line, shortened), else "the upload"."""
    if not filename:
        return "the upload"
    name = " ".join(filename.split())
    return f"the upload {(name if len(name) <= 80 else name[:77] + '...')!r}"


def decode_upload(data: bytes, max_bytes: int, name: str = "the upload") -> np.ndarray:
    """The upload as the (32, 32, 3) uint8 image the model sees, or an UploadError saying what is wrong.
    The pixel count and the format come from the header, before anything is decoded."""
    if not data:
        raise UploadError(400, f"{name}: the file is empty")
    if len(data) > max_bytes:
        raise UploadError(413, f"{name}: the file is over the limit of {max_bytes / 2**20:g} MB")
    return DECODER.submit(_decode, data, name).result()


def _decode(data: bytes, name: str) -> np.ndarray:
    """decode_upload's work, on a DECODER thread."""
    from ..data.images import (
        BlankImageError,
        ImageFormatError,
        ImageTooLargeError,
        NotAnImageError,
        open_image,
        to_rgb_array,
    )

    accepted = ", ".join(ALLOWED_FORMATS.values())
    try:
        with open_image(data, name, max_pixels=MAX_PIXELS, formats=ALLOWED_FORMATS) as img:
            fmt = ALLOWED_FORMATS[img.format]
            large = img.size[0] * img.size[1] >= LARGE_PIXELS
            try:
                return np.array(to_rgb_array(img, name)[0])  # a writable copy: torch warns about read-only arrays
            except BlankImageError as e:  # it decodes, but holds nothing to classify
                raise UploadError(400, str(e)) from None
            except DataError as e:  # the header was fine, its data does not decode (truncated, corrupt)
                raise UploadError(400, f"malformed {fmt} image: {e}") from None
            finally:
                if large:
                    img.close()
                    _return_free_memory()
    except NotAnImageError as e:
        raise UploadError(415, f"{e} (accepted: {accepted})") from None
    except ImageFormatError as e:
        raise UploadError(415, f"{e} (accepted: {accepted})") from None
    except ImageTooLargeError as e:
        raise UploadError(413, str(e)) from None
    except DataError as e:
        raise UploadError(400, f"malformed image: {e}") from None


def _load_malloc_trim() -> Any:
    """glibc's malloc_trim, or None elsewhere (macOS, musl, Windows: their allocators differ)."""
    try:
        import ctypes

        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


_MALLOC_TRIM = _load_malloc_trim()


def _return_free_memory() -> None:
    """Hand the memory a large decode freed back to the system (glibc keeps it in its pools otherwise)."""
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


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
    its hooks on the model itself. Its classes come from Run.predict with `tta` (None: the run's own --tta,
    as `cifarlab predict` and `evaluate` use it)."""

    def __init__(self, run_dir: str | Path, device: str = "auto", tta: str | None = None):
        from ..features.inputs import load

        self.run_dir = Path(run_dir)
        self.loaded = load(self.run_dir, device)
        self.tta = self.loaded.resolve_tta(tta)
        self.lock = threading.Lock()
        self.summary = self._summary()
        self.choice = choose_method(self.run_dir)  # the run's most faithful method, by its own measurements
        self._test = None

    def _summary(self) -> dict[str, Any]:
        """summary.json, for the test accuracy shown on the page ({} for an unfinished run)."""
        try:
            return read_summary(self.run_dir) or {}
        except CifarlabError:
            return {}

    @property
    def classes(self) -> list[str]:
        return self.loaded.classes

    def info(self) -> dict[str, Any]:
        from ..attribution.methods import describe_explainers

        return {"model": self.loaded.architecture, "run_dir": str(self.run_dir), "classes": self.classes,
                "tta": self.tta, "test_accuracy": self.summary.get("test_accuracy"),
                "default_method": self.choice.method,
                "methods": [{"name": name, "description": text, **self.trust(name)}
                            for name, text in describe_explainers().items()]}

    def trust(self, method: str) -> dict[str, Any]:
        """How far to trust `method` on this run: its measured deletion AUC against random order (from the
        run's explain results), and the checks it fails; "not measured" without them."""
        auc, random_auc = self.choice.deletion_auc.get(method), self.choice.deletion_auc.get(RANDOM_ROW)
        if not self.choice.measured or auc is None or random_auc is None:
            return {"measured": False, "measurement": "not measured for this run (cifarlab explain RUN_DIR --method "
                                                      "all --evaluate 200 measures it)", "marks": []}
        measurement = (self.choice.measurement if method == self.choice.method else  # it names the image count
                       f"deletion AUC {auc:.3f} against {random_auc:.3f} for random order (lower is more faithful)")
        return {"measured": True, "marks": self.choice.marks.get(method, []), "measurement": measurement}

    def predict(self, image: np.ndarray, top_k: int = 5, target: str | None = None,
                method: str | None = None) -> dict[str, Any]:
        """Top-k classes (Run.predict with the app's test-time augmentation) and the overlay of `method`
        (default: the run's chosen one) for `target` (default: the top class)."""
        from ..attribution.api import explain, resolve_target
        from ..attribution.methods import explainer_class
        from ..attribution.plots import overlay
        from ..features.plots import enlarge

        # a class name or index; an unknown one fails before any work
        chosen = None if target is None else self.classes[resolve_target(target, self.classes)]
        method = method or self.choice.method
        if method not in list_explainers():
            raise CifarlabError(EXPLAINERS.unknown_message(method))
        with self.lock:
            top = self.loaded.predict(image, top_k=top_k, tta=self.tta)[0]["predictions"]
            cls = chosen if chosen is not None else top[0]["class"]
            e = explain(self.loaded.model, image, method, target=cls, trust_checks=False, classes=self.classes)
        big = enlarge(image, SCALE)
        return {"predictions": top, "tta": self.tta, "image": png_data_url(big),
                "overlay": {"class": cls, "method": method, "measurement": self.trust(method)["measurement"],
                            "marks": self.trust(method)["marks"], "layer": e.layer,
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

"""The FastAPI app of `cifarlab serve`: the page, `POST /api/predict` for scripts, a random test image,
and the OpenAPI schema at FastAPI's default /openapi.json. Uploads are checked for size, type and
integrity; every refusal is a 4xx with a message. Requests naming a host the app was not started for get a
400 before anything else (hosts.py)."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

from fastapi import FastAPI, File, Form, HTTPException, Query, UploadFile
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.middleware.trustedhost import TrustedHostMiddleware

from .. import __version__
from ..attribution.methods import list_explainers
from ..errors import CifarlabError
from .hosts import LOOPBACK_HOSTS
from .limits import BODY_SECONDS, BodyLimit
from .page import PAGE
from .predictor import ALLOWED_FORMATS, Predictor, UploadError, decode_upload, upload_name

DEFAULT_MAX_UPLOAD_BYTES = 5 * 2**20
MULTIPART_SLACK = 64 * 1024  # form boundaries and headers around the file


class Prediction(BaseModel):
    model_config = ConfigDict(populate_by_name=True)
    class_: str = Field(alias="class", description="class name")
    probability: float = Field(description="softmax probability")


class Overlay(BaseModel):
    model_config = ConfigDict(populate_by_name=True)
    class_: str = Field(alias="class", description="the class explained")
    method: str = Field(description="the attribution method: the run's most faithful by its own measurements "
                                    "(gradcam for a run without them)")
    measurement: str = Field(description="why this method: its measured faithfulness, or 'not measured'")
    marks: list[str] = Field(description="checks the method fails (randomization, worse than random order)")
    layer: str | None = Field(description="the CAM layer, for the methods that use one")
    image: str = Field(description="the overlay: a data: URL of a PNG (256x256)")


TTA_HELP = "the test-time augmentation of the probabilities (serve --tta; default: the run's own)"


class PredictResponse(BaseModel):
    predictions: list[Prediction] = Field(description="the top classes, most probable first")
    tta: str = Field(description=TTA_HELP)
    image: str = Field(description="the 32x32 image the model saw, enlarged to 256x256 (PNG data: URL)")
    overlay: Overlay


class Method(BaseModel):
    name: str
    description: str
    measured: bool = Field(description="whether the run's explain results measured it")
    measurement: str = Field(description="its deletion AUC against random order, or 'not measured'")
    marks: list[str] = Field(description="checks it fails (randomization, worse than random order)")


class Info(BaseModel):
    model: str
    run_dir: str
    classes: list[str]
    tta: str = Field(description=TTA_HELP)
    test_accuracy: float | None
    default_method: str = Field(description="the method shown unless one is asked for: the run's most faithful")
    methods: list[Method] = Field(description="every explanation method, with how far to trust it on this run")
    max_upload_bytes: int
    accepted_formats: list[str]


class RandomImage(BaseModel):
    image: str = Field(description="the 32x32 test image (PNG data: URL)")
    label: str = Field(description="its true class")
    source: str = Field(description="its file in the run's data")
    index: int


class Problem(BaseModel):
    detail: str


def create_app(run_dir: str | Path, *, device: str = "auto", max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
               allowed_hosts: Sequence[str] = LOOPBACK_HOSTS, body_seconds: float = BODY_SECONDS,
               tta: str | None = None) -> FastAPI:
    """The app for one run directory (its model is loaded here, once: a bad run directory fails now),
    answering requests whose Host is one of `allowed_hosts`; it predicts with `tta` (None: the run's own)."""
    predictor = Predictor(run_dir, device, tta)
    # No /docs or /redoc: FastAPI's pages for them load Swagger UI from a CDN, and this app works offline.
    app = FastAPI(title="cifarlab serve", version=__version__, docs_url=None, redoc_url=None,
                  description=f"Classify an image with the {predictor.loaded.architecture} model of {run_dir} and "
                              "see where it looks (an explanation method of your choice).")
    app.state.predictor = predictor
    refusals = {413: {"model": Problem, "description": "the file is too large"},
                415: {"model": Problem, "description": "not an image, or a format not accepted"},
                400: {"model": Problem, "description": "a malformed image, an unknown class or method"}}

    # Bodies are read by BodyLimit, which stops at the limit even when no Content-Length was sent, and
    # gives a client that stalls its body a 408 after body_seconds.
    app.add_middleware(BodyLimit, limit=max_upload_bytes + MULTIPART_SLACK, shown_limit=max_upload_bytes,
                       body_seconds=body_seconds)
    # Added last, so it runs first: a request for an unknown host is refused before its body is read.
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts), www_redirect=False)

    # The page and the info are async: they need no worker thread, so uploads queued for the model (each
    # holding one) never keep them waiting.
    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> str:
        return PAGE

    @app.get("/api/info", response_model=Info, summary="the model and its classes")
    async def info() -> dict:
        return {**predictor.info(), "max_upload_bytes": max_upload_bytes,
                "accepted_formats": list(ALLOWED_FORMATS.values())}

    @app.post("/api/predict", response_model=PredictResponse, responses=refusals,
              summary="top classes and an explanation overlay for an uploaded image")
    def predict(file: Annotated[UploadFile, File(description="an image file (PNG, JPEG, GIF, BMP, WebP, TIFF)")],
                target: Annotated[str | None, Form(description="explain this class (a name or an index) instead "
                                                               "of the top one")] = None,
                top_k: Annotated[int, Form(ge=1, le=1000, description="how many classes")] = 5,
                method: Annotated[str | None, Form(description="the explanation method (see /api/info); default: "
                                                               "the run's most faithful")] = None) -> dict:
        if method and method not in list_explainers():  # refused before the upload is decoded
            raise HTTPException(400, f"unknown explanation method {method!r}; choose one of: "
                                     f"{', '.join(list_explainers())}")
        try:
            image = decode_upload(file.file.read(max_upload_bytes + 1), max_upload_bytes, upload_name(file.filename))
            return predictor.predict(image, top_k=top_k, target=target or None, method=method or None)
        except UploadError as e:
            raise HTTPException(e.status, str(e)) from None
        except CifarlabError as e:  # an unknown target class
            raise HTTPException(400, str(e)) from None

    @app.get("/api/random", response_model=RandomImage, responses={404: {"model": Problem}},
             summary="a random image of the run's test split")
    def random_image(seed: Annotated[int | None, Query(ge=0, le=2**32 - 1, description="for a repeatable pick")]
                     = None) -> dict:
        try:
            return predictor.random_test_image(seed)
        except UploadError as e:
            raise HTTPException(e.status, str(e)) from None

    return app

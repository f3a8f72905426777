"""`cifarlab serve`: a small local web app to try a trained run. Drop or choose an image, or pick a random
test image; see it enlarged, the top-5 classes with probability bars and the explanation overlay of the
top class (or of a class clicked), by the method picked (default: the run's most faithful), with how far
to trust it. `POST /api/predict` (multipart, field `file`) answers scripts in JSON. The classes come from
Run.predict with the run's own test-time augmentation (or `tta=`), as `cifarlab predict` and `evaluate`
compute them; /api/info says which.

    serve(run_dir, host="127.0.0.1", port=8000)   runs the app with uvicorn until Ctrl+C
    create_app(run_dir) -> FastAPI                 the app itself (tests, or another ASGI server)

The app binds to this machine only unless another host is given, and answers only requests that name a
host it was started for (hosts.py: against DNS rebinding). (Named `webapp`, not `serve`, so that
`cifarlab.serve` stays the function.)
"""
from __future__ import annotations

import socket
import warnings
from collections.abc import Sequence
from pathlib import Path

from ..errors import CifarlabError
from .hosts import LOOPBACK_HOSTS, accepted_hosts, allowed_host, is_local


def _require_web() -> None:
    try:
        import fastapi  # noqa: F401
        import multipart  # noqa: F401  (python-multipart: FastAPI's form parser)
        import uvicorn  # noqa: F401
    except ImportError as e:
        raise CifarlabError(f"cifarlab serve needs {e.name}: pip install -e '.[serve]'") from None


def create_app(run_dir: str | Path, *, device: str = "auto", max_upload_bytes: int | None = None,
               allowed_hosts: Sequence[str] = LOOPBACK_HOSTS, body_seconds: float | None = None,
               tta: str | None = None):
    """The FastAPI app serving one run directory, to requests whose Host header names one of
    `allowed_hosts` (Starlette's patterns: a name, *.example.com, or * for any). `tta`: the test-time
    augmentation of its predictions (None: the run's own --tta)."""
    _require_web()
    from .app import DEFAULT_MAX_UPLOAD_BYTES
    from .app import create_app as _create
    from .limits import BODY_SECONDS

    return _create(run_dir, device=device, max_upload_bytes=max_upload_bytes or DEFAULT_MAX_UPLOAD_BYTES,
                   allowed_hosts=[allowed_host(name) for name in allowed_hosts],
                   body_seconds=body_seconds or BODY_SECONDS, tta=tta)


def serve(run_dir: str | Path, host: str = "127.0.0.1", port: int = 8000, *, device: str = "auto",
          max_upload_mb: float = 5.0, allowed_hosts: Sequence[str] = (), log_level: str = "info",
          tta: str | None = None) -> None:
    """Serve the app until interrupted. The model is loaded and the port checked before anything listens.
    Requests must name `host` (or, bound to loopback or to every address, localhost) or one of
    `allowed_hosts` as their Host. `tta`: the test-time augmentation of the predictions (None: the run's own)."""
    _require_web()
    if tta is not None:
        from ..choices import TTA

        TTA.entry(tta)  # a bad name fails before the model is loaded
    if not 1 <= port <= 65535:
        raise CifarlabError(f"--port must be between 1 and 65535, got {port}")
    if max_upload_mb <= 0:
        raise CifarlabError(f"--max-upload-mb must be > 0, got {max_upload_mb}")
    hosts = accepted_hosts(host, allowed_hosts)
    _check_port(host, port)
    app = create_app(run_dir, device=device, max_upload_bytes=int(max_upload_mb * 2**20), allowed_hosts=hosts,
                     tta=tta)
    if not is_local(host):
        warnings.warn(f"binding to {host}: anyone who can reach this machine on port {port} can use the app; it "
                      f"answers requests for {', '.join(hosts)} (--allowed-host adds the name clients use)",
                      stacklevel=2)
    import uvicorn

    shown = f"[{host}]" if ":" in host else host
    predictor = app.state.predictor
    print(f"serving {run_dir} ({predictor.loaded.architecture}, tta {predictor.tta}) at http://{shown}:{port}/ "
          f"(API schema: /openapi.json; Ctrl+C stops)", flush=True)
    uvicorn.run(app, host=host, port=port, log_level=log_level)


def _check_port(host: str, port: int) -> None:
    """A one-line error for a port in use or an address this machine does not have."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise CifarlabError(f"cannot bind to {host}: {e.strerror}") from None
    family, _, _, _, address = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(address)
        except OSError as e:
            raise CifarlabError(f"cannot listen on {host}:{port}: {e.strerror} (choose another --port)") from None


__all__ = ["create_app", "serve"]

"""Images from outside (class folders, predict, explain, features, web uploads) are checked before they are
decoded: a decompression bomb is refused with one line naming the file, never Pillow's traceback; and the
web app bounds what one request can cost. Also the quick version of benchmarks/load_serve.py."""
from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cifarlab.cli import main
from cifarlab.data import load_data
from cifarlab.data.folder import read_image_folder
from cifarlab.data.images import (
    MAX_IMAGE_PIXELS,
    ImageFormatError,
    ImageTooLargeError,
    NotAnImageError,
    load_rgb_image,
    open_image,
)
from cifarlab.errors import DataError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bomb(tmp_path_factory) -> Path:
    """A 14000x14000 one-colour PNG: ~24 KB on disk, 588 MB as RGB. Pillow itself refuses its header."""
    path = tmp_path_factory.mktemp("bomb") / "bomb.png"
    Image.new("1", (14000, 14000)).save(path)
    assert path.stat().st_size < 100_000
    return path


@pytest.fixture(scope="module")
def big(tmp_path_factory) -> Path:
    """9000x9000: over cifarlab's limit, within the range where Pillow only warns."""
    path = tmp_path_factory.mktemp("big") / "big.png"
    Image.new("1", (9000, 9000)).save(path)
    assert 9000 * 9000 > MAX_IMAGE_PIXELS > 0 and 2 * Image.MAX_IMAGE_PIXELS > 9000 * 9000
    return path


def one_line(err) -> str:
    message = str(err.value)
    assert "\n" not in message
    return message


# ------------------------------------------------------------------------------------ the shared opener


@pytest.mark.parametrize("which", ["bomb", "big"])
def test_too_many_pixels_are_refused_before_decoding(request, which):
    path = request.getfixturevalue(which)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no DecompressionBombWarning either
        with pytest.raises(ImageTooLargeError) as err:
            load_rgb_image(path)
    message = one_line(err)
    assert str(path) in message and f"{MAX_IMAGE_PIXELS:,} pixels" in message and "shrink" in message
    assert isinstance(err.value, DataError)


def test_the_limit_is_exact_and_checked_on_the_header(tmp_path, monkeypatch):
    path = tmp_path / "a.png"
    Image.new("RGB", (100, 50), (10, 20, 30)).save(path)
    arr, resized, converted = load_rgb_image(path, max_pixels=5000)
    assert arr.shape == (32, 32, 3) and resized and not converted and (arr == (10, 20, 30)).all()
    with pytest.raises(ImageTooLargeError, match=r"100x50 pixels \(5,000\); the limit is 4,999 pixels"):
        load_rgb_image(path, max_pixels=4999)

    def no_decoding(self, *args, **kwargs):
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(Image.Image, "load", no_decoding)
    monkeypatch.setattr("PIL.ImageFile.ImageFile.load", no_decoding)
    with pytest.raises(ImageTooLargeError):
        load_rgb_image(path, max_pixels=4999)


def test_other_bad_files_name_themselves(tmp_path):
    text = tmp_path / "notes.png"
    text.write_text("not a picture")
    with pytest.raises(NotAnImageError) as err:
        load_rgb_image(text)
    assert one_line(err) == f"cannot read {text}: not an image"
    good = tmp_path / "good.png"
    Image.new("RGB", (64, 64)).save(good)
    cut = tmp_path / "cut.png"
    cut.write_bytes(good.read_bytes()[:60])
    with pytest.raises(DataError) as err:
        load_rgb_image(cut)
    assert str(cut) in one_line(err) and "corrupt image" in str(err.value)
    with pytest.raises(DataError, match="image not found"):
        load_rgb_image(tmp_path / "missing.png")
    with pytest.raises(ImageFormatError, match="PNG images are not accepted"):
        load_rgb_image(good, formats={"JPEG"})
    with open_image(good.read_bytes(), "upload 'x'") as img:  # bytes work too, named as told
        assert img.size == (64, 64)
    with pytest.raises(NotAnImageError, match="cannot read upload 'x': not an image"):
        load_rgb_image(b"nope", name="upload 'x'")


# ----------------------------------------------------------------------------- everywhere images come in


@pytest.fixture
def tree_with_bomb(tiny_tree, tmp_path, bomb) -> tuple[Path, Path]:
    root = tmp_path / "data"
    shutil.copytree(tiny_tree, root)
    target = root / "train" / "cat" / "zzz_bomb.png"
    shutil.copy(bomb, target)
    return root, target


def test_a_bomb_in_a_class_folder(tree_with_bomb, capsys, tmp_path):
    root, target = tree_with_bomb
    with pytest.raises(ImageTooLargeError) as err:
        read_image_folder(root, workers=1)
    assert str(target) in one_line(err)
    with pytest.raises(DataError, match="zzz_bomb.png"):
        load_data(root)
    out = tmp_path / "run"
    assert main(["train", "--data", str(root), "--epochs", "1", "--out", str(out)]) == 2
    err_text = capsys.readouterr().err.strip()
    assert "\n" not in err_text and "Traceback" not in err_text and str(target) in err_text
    assert "8,192x8,192" not in err_text and "(8192x8192)" in err_text


@pytest.mark.parametrize("command", ["predict", "explain", "features"])
def test_a_bomb_given_to_a_command(trained_run, bomb, tmp_path, capsys, command):
    out = tmp_path / "out"
    argv = {
        "predict": ["predict", str(trained_run), str(bomb)],
        "explain": ["explain", str(trained_run), "--image", str(bomb), "--out", str(out)],
        "features": ["features", str(trained_run), "--image", str(bomb), "--out", str(out)],
    }[command]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err
    assert str(bomb) in err and "pixels" in err
    assert not out.exists() or not any(out.iterdir())


def test_a_bomb_in_a_folder_given_to_explain(trained_run, bomb, tmp_path, capsys):
    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.new("RGB", (32, 32)).save(folder / "a.png")
    shutil.copy(bomb, folder / "b.png")
    assert main(["explain", str(trained_run), "--images", str(folder), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and str(folder / "b.png") in err


# ------------------------------------------------------------------- image modes, as a viewer shows them

MODES = ["I;16 PNG", "I;16 TIFF", "I TIFF", "F TIFF", "EXIF 6 JPEG", "EXIF 8 JPEG"]


@pytest.fixture(scope="module")
def mode_files(tmp_path_factory):
    from image_modes_helper import mode_images

    return mode_images(tmp_path_factory.mktemp("modes"))


@pytest.mark.parametrize("mode", MODES)
def test_every_intake_sees_an_image_as_a_viewer_shows_it(trained_run, mode_files, mode, tmp_path, capsys):
    """16-bit and 32-bit grey are not fed as pure white or black, a sideways-stored photo is turned upright:
    the pixels predict sees are the 8-bit picture, and so are its classes (Run.predict, cifarlab predict)."""
    from cifarlab.rundir.run import image_batch, load_run

    path, expected = mode_files[mode]
    with Image.open(path) as img:  # a path, and a PIL image the caller opened
        for source in (path, img):
            pixels, _ = image_batch(source)
            assert np.array_equal(pixels[0].permute(1, 2, 0).numpy(), expected), source
    assert np.array_equal(load_rgb_image(path)[0], expected)  # class folders, explain, features, export
    run = load_run(trained_run, "cpu")
    np.testing.assert_allclose(run.predict(path).probabilities, run.predict(expected).probabilities, atol=1e-6)
    view = tmp_path / "view.png"
    Image.fromarray(expected).save(view)
    assert main(["predict", str(trained_run), str(path), str(view), "--json", "--device", "cpu"]) == 0
    got, want = json.loads(capsys.readouterr().out)
    assert [p["class"] for p in got["predictions"]] == [p["class"] for p in want["predictions"]]
    assert [p["probability"] for p in got["predictions"]] == pytest.approx(
        [p["probability"] for p in want["predictions"]], abs=1e-6)


@pytest.mark.parametrize("case", ["constant I", "constant F", "all-NaN F"])
def test_a_32_bit_image_with_nothing_to_show_is_refused(trained_run, tmp_path, capsys, case):
    from image_modes_helper import blank_images

    path = blank_images(tmp_path)[case]
    assert main(["predict", str(trained_run), str(path), "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err
    assert str(path) in err and "nothing to show" in err
    with pytest.raises(DataError) as e:
        load_rgb_image(path)
    assert "32-bit" in one_line(e)


# ------------------------------------------------------------------------------------------ the web app

fastapi = pytest.importorskip("fastapi", reason="the serve extra is not installed")
pytest.importorskip("multipart", reason="the serve extra is not installed")
from fastapi.testclient import TestClient  # noqa: E402

import cifarlab  # noqa: E402
from cifarlab.webapp import limits, predictor  # noqa: E402

CLASSES = ["cat", "dog", "frog"]


@pytest.fixture(scope="module")
def client(trained_run):
    return TestClient(cifarlab.create_app(trained_run, device="cpu"), base_url="http://127.0.0.1")


def png(size=(32, 32)) -> bytes:
    import io

    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(
        buf, format="PNG")
    return buf.getvalue()


def post(client, data: bytes, **form):
    return client.post("/api/predict", files={"file": ("x.png", data, "image/png")}, data=form)


@pytest.mark.parametrize("index", range(3))
def test_a_target_given_as_a_class_index(client, index):
    r = post(client, png(), target=str(index))
    assert r.status_code == 200, r.text
    assert r.json()["overlay"]["class"] == CLASSES[index]
    by_name = post(client, png(), target=CLASSES[index]).json()
    assert by_name["overlay"] == r.json()["overlay"]


@pytest.mark.parametrize("target", ["3", "-1", "1.0", "²", "١١", "9" * 5000, " 1", "cat\n", "\x00"])
def test_bad_targets_are_a_400(client, target):
    r = post(client, png(), target=target)
    assert r.status_code == 400, r.text
    assert "unknown target class" in r.json()["detail"]


def test_an_arabic_indic_digit_is_an_index(client):
    assert post(client, png(), target="١").json()["overlay"]["class"] == "dog"  # int("١") == 1


@pytest.mark.parametrize("seed", ["-1", "4294967296", "99999999999999999999999", "1.5", "abc", ""])
def test_bad_seeds_are_a_4xx(client, seed):
    r = client.get(f"/api/random?seed={seed}")
    assert 400 <= r.status_code < 500, r.text
    assert r.json()["detail"]


@pytest.mark.parametrize("seed", ["0", "4294967295"])
def test_seeds_at_the_bounds(client, seed):
    assert client.get(f"/api/random?seed={seed}").status_code == 200


def test_a_bomb_upload_is_a_413_naming_it(client, bomb):
    r = client.post("/api/predict", files={"file": ("cat.png", bomb.read_bytes(), "image/png")})
    assert r.status_code == 413
    assert "'cat.png'" in r.json()["detail"] and "pixels" in r.json()["detail"]


def test_an_upload_without_a_length_gets_a_413_stating_the_limit(client):
    """(The test client hands the app the whole body at once: that reading stops at the limit is tested
    on BodyLimit by hand below, and on a real server by the quick load test.)"""
    sent = []

    def body():
        yield b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x.png\"\r\n\r\n"
        for _ in range(30):
            sent.append(1)
            yield b"\x89PNG" + bytes(2**20 - 4)
        yield b"\r\n--b--\r\n"

    r = client.post("/api/predict", content=body(), headers={"Content-Type": "multipart/form-data; boundary=b"})
    assert r.status_code == 413
    assert r.json()["detail"] == "the upload is over the limit of 5 MB (it was not read further)"
    assert "content-length" not in {k.lower() for k in r.request.headers}


def test_an_announced_size_is_stated_correctly(client):
    r = client.post("/api/predict", content=b"x" * (30 * 2**20),
                    headers={"Content-Type": "multipart/form-data; boundary=b"})
    assert r.status_code == 413 and r.json()["detail"] == "the upload is 30 MB; the limit is 5 MB"


def _run_body_limit(chunks: list[bytes], limit: int) -> tuple[list[dict], int, bool]:
    """Drive BodyLimit by hand: what it sent, how many chunks it pulled, whether the app was reached."""
    pulled = 0
    reached = False
    sent: list[dict] = []

    async def app(scope, receive, send):
        nonlocal reached
        reached = True

    async def receive():
        nonlocal pulled
        pulled += 1
        if pulled > len(chunks):
            await asyncio.sleep(10)
        return {"type": "http.request", "body": chunks[pulled - 1], "more_body": pulled < len(chunks)}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "POST", "headers": [], "path": "/api/predict"}
    started = time.monotonic()
    asyncio.run(limits.BodyLimit(app, limit=limit, shown_limit=limit)(scope, receive, send))
    assert time.monotonic() - started < 2  # no wait for more body where none comes
    return sent, pulled, reached


def test_the_body_limit_stops_reading(monkeypatch):
    monkeypatch.setattr(limits, "DRAIN_BYTES", 3 * 1000)  # the bounded courtesy read before the 413
    sent, pulled, reached = _run_body_limit([bytes(1000)] * 100, limit=4500)
    assert not reached and sent[0]["status"] == 413
    assert pulled <= 5 + 3 + 1  # the limit, the drain, the chunk that crossed it; not the 100 offered
    detail = json.loads(sent[1]["body"])["detail"]
    assert detail == "the upload is over the limit of 4,500 bytes (it was not read further)"
    sent, pulled, reached = _run_body_limit([bytes(1000)] * 4, limit=4500)
    assert reached and pulled == 4
    sent, pulled, reached = _run_body_limit([bytes(9000)], limit=4500)  # all in one message: nothing to drain
    assert not reached and pulled == 1 and sent[0]["status"] == 413


@pytest.fixture
def live_server(trained_run):
    """A function starting the app on a free 127.0.0.1 port (uvicorn, in a thread), with settings; its port."""
    import uvicorn

    servers = []

    def start(**settings) -> int:
        config = uvicorn.Config(cifarlab.create_app(trained_run, device="cpu", **settings), host="127.0.0.1",
                                port=0, log_level="warning")
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        servers.append((server, thread))
        deadline = time.monotonic() + 30
        while not server.started:
            assert time.monotonic() < deadline and thread.is_alive(), "the server did not start"
            time.sleep(0.05)
        return server.servers[0].sockets[0].getsockname()[1]

    yield start
    for server, thread in servers:
        server.should_exit = True
        thread.join(10)


def _stalled(port: int, sent: int):
    """An upload that sent its headers and `sent` bytes of the 1 MB it announced, then stalls."""
    import socket

    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(b"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary=b\r\n"
              b"Content-Length: 1048576\r\n\r\n" + b"--b\r\n".ljust(sent, b"x"))
    return s


def test_stalled_uploads_get_a_408_in_time_and_keep_no_one_waiting(live_server):
    """More stalled uploads than body slots, some of them holding a slot: a valid small and a valid large
    upload and the GETs are answered at once, each stalled upload gets its 408 when its time is up."""
    import http.client

    seconds = 2.0
    port = live_server(body_seconds=seconds)
    big = png((256, 256))  # ~200 KB: it needs a slot
    assert len(big) > limits.SMALL_BODY_BYTES

    def ask(method: str, path: str, data: bytes | None = None) -> int:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        body = None if data is None else (b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x.png\""
                                          b"\r\n\r\n" + data + b"\r\n--b--\r\n")
        conn.request(method, path, body=body, headers={"Content-Type": "multipart/form-data; boundary=b"})
        status = conn.getresponse().status
        conn.close()
        return status

    assert ask("POST", "/api/predict", png()) == 200  # warm: the first prediction imports what explain needs
    started = time.monotonic()
    stalled = [_stalled(port, 16) for _ in range(limits.BODY_SLOTS + 4)]
    stalled += [_stalled(port, 100 * 1024) for _ in range(limits.BODY_SLOTS // 2)]  # these take a slot each
    time.sleep(0.3)
    for method, path, data in (("POST", "/api/predict", png()), ("POST", "/api/predict", big), ("GET", "/", None),
                               ("GET", "/api/info", None), ("GET", "/api/random?seed=1", None)):
        assert ask(method, path, data) == 200, path
    assert time.monotonic() - started < seconds  # answered before any stalled upload was given up on
    for s in stalled:
        with s:
            assert s.recv(4096).startswith(b"HTTP/1.1 408 ")
        assert seconds - 0.1 < time.monotonic() - started < seconds + 1.5


def test_decoding_runs_on_two_threads_at_most(monkeypatch):
    from cifarlab.data import images

    running, peak, threads = 0, 0, set()
    lock = threading.Lock()
    real = images.to_rgb_array

    def slow(img, name, size=32):
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
            threads.add(threading.current_thread().name)
        time.sleep(0.05)
        with lock:
            running -= 1
        return real(img, name, size)

    monkeypatch.setattr(images, "to_rgb_array", slow)
    data = png((64, 64))
    results = []
    workers = [threading.Thread(target=lambda: results.append(predictor.decode_upload(data, 2**20)))
               for _ in range(8)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert len(results) == 8 and all(r.shape == (32, 32, 3) for r in results)
    assert peak <= 2 and all(name.startswith("cifarlab-decode") for name in threads)


def test_pixels_are_bounded_per_upload(client):
    import io

    buf = io.BytesIO()
    Image.new("1", (4097, 4096)).save(buf, format="PNG")
    r = post(client, buf.getvalue())
    assert r.status_code == 413 and "4097x4096 pixels" in r.json()["detail"]
    buf = io.BytesIO()
    Image.new("1", (4096, 4096)).save(buf, format="PNG")
    assert post(client, buf.getvalue()).status_code == 200


# ----------------------------------------------------------------------------------- the load test, quick


def test_quick_load_test_of_serve(trained_run, tmp_path):
    """benchmarks/load_serve.py, small: a real `cifarlab serve` on a free 127.0.0.1 port, every kind of
    request at least once, 6 at a time, then 4 large images at once, twice; no 5xx, no dropped
    connection, every status as expected, memory back within the bound; and before that, more stalled
    uploads than body slots: the valid requests sent meanwhile answered within 5 s, the stalled ones a 408
    within the body time limit."""
    out = tmp_path / "load.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "load_serve.py"), str(trained_run), "--requests", "30",
         "--concurrency", "6", "--burst", "4", "--big-mb", "8", "--rest", "1", "--deadline", "120",
         "--json", str(out)],
        capture_output=True, text=True, timeout=240, env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["requests"] == 30 + 2 * 4 and result["n_5xx"] == 0 and result["n_dropped"] == 0
    assert all(r["sent"] >= 1 and r["ok"] for r in result["kinds"])
    assert result["rss_after_mb"] <= result["rss_before_mb"] + 150
    assert "5xx: 0" in proc.stdout
    stall = result["stall"]
    assert stall["stalled"] > limits.BODY_SLOTS + 3 and stall["stalled_statuses"] == {"408": stall["stalled"]}
    assert stall["stalled_ok"] and stall["stalled_max_s"] <= limits.BODY_SECONDS + 2
    assert len(stall["valid"]) == 10 and all(r["ok"] and r["seconds"] <= 5 for r in stall["valid"])


# ------------------------------------------------------------------------------- generated requests

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_GOOD = png((40, 30))
uploads = st.one_of(
    st.just(_GOOD),
    st.binary(max_size=300),
    st.binary(max_size=300).map(lambda b: b"\x89PNG\r\n\x1a\n" + b),
    st.integers(1, len(_GOOD) - 1).map(lambda n: _GOOD[:n]),
    st.tuples(st.integers(0, len(_GOOD) - 1), st.integers(0, 7)).map(
        lambda p: _GOOD[:p[0]] + bytes([_GOOD[p[0]] ^ (1 << p[1])]) + _GOOD[p[0] + 1:]),
)
form_text = st.one_of(st.none(), st.text(max_size=20), st.integers(-5, 2000).map(str))


@settings(max_examples=40, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=uploads, target=form_text, top_k=form_text, filename=st.text(max_size=40))
def test_generated_uploads_never_get_a_5xx(client, data, target, top_k, filename):
    form = {k: v for k, v in (("target", target), ("top_k", top_k)) if v is not None}
    r = client.post("/api/predict", files={"file": (filename or "x", data, "application/octet-stream")}, data=form)
    assert r.status_code < 500, r.text
    if r.status_code >= 400:
        assert r.json()["detail"]


@settings(max_examples=40, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.one_of(st.text(max_size=30), st.integers(-2**70, 2**70).map(str)))
def test_generated_seeds_never_get_a_5xx(client, seed):
    r = client.get("/api/random", params={"seed": seed})
    assert r.status_code < 500, r.text

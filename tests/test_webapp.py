"""`cifarlab serve`: the API (TestClient): good images, and every bad upload a 4xx with a message, never a
500; and the page driven in headless Chromium as a person would use it."""
from __future__ import annotations

import base64
import io
import json
import shutil

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi", reason="the serve extra is not installed (pip install -e '.[serve]')")
pytest.importorskip("multipart", reason="the serve extra is not installed (pip install -e '.[serve]')")
from fastapi.testclient import TestClient  # noqa: E402

import cifarlab  # noqa: E402
from cifarlab.cli import main  # noqa: E402
from cifarlab.errors import CifarlabError  # noqa: E402
from cifarlab.webapp import serve  # noqa: E402
from cifarlab.webapp.hosts import accepted_hosts, is_local  # noqa: E402
from cifarlab.webapp.predictor import UploadError, decode_upload  # noqa: E402

CLASSES = ["cat", "dog", "frog"]


def local(app) -> TestClient:
    """A client whose requests name localhost as their Host, as a browser on this machine does."""
    return TestClient(app, base_url="http://localhost")


@pytest.fixture(scope="module")
def client(trained_run):
    return local(cifarlab.create_app(trained_run, device="cpu"))


def image_bytes(fmt: str = "PNG", size=(32, 32), mode: str = "RGB", seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    img = Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).convert(mode)
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def a_test_file(train_tree, cls: str = "dog"):
    return sorted((train_tree / "test" / cls).iterdir())[0]


def decoded(url: str) -> Image.Image:
    assert url.startswith("data:image/png;base64,")
    return Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))


def post(client, data: bytes, name="image.png", mime="image/png", **form):
    return client.post("/api/predict", files={"file": (name, data, mime)}, data=form)


def test_predict_a_good_image(client, train_tree):
    r = post(client, a_test_file(train_tree).read_bytes())
    assert r.status_code == 200
    body = r.json()
    preds = body["predictions"]
    assert [p["class"] for p in preds] and {p["class"] for p in preds} == set(CLASSES)  # top-5 of 3 classes
    probs = [p["probability"] for p in preds]
    assert probs == sorted(probs, reverse=True) and sum(probs) == pytest.approx(1, abs=1e-4)
    assert body["overlay"]["class"] == preds[0]["class"] and body["overlay"]["method"] == "gradcam"
    assert body["overlay"]["layer"]
    assert decoded(body["image"]).size == (256, 256) and decoded(body["overlay"]["image"]).size == (256, 256)
    # the same numbers as `cifarlab predict` for the same file
    path = a_test_file(train_tree)
    cli = cifarlab.predict(client.app.state.predictor.run_dir, [path], top_k=3, device="cpu")[0]["predictions"]
    assert [p["class"] for p in cli] == [p["class"] for p in preds]
    assert [p["probability"] for p in cli] == pytest.approx(probs, abs=1e-5)


def test_any_size_and_mode_is_accepted(client):
    for fmt, size, mode in (("JPEG", (64, 48), "RGB"), ("PNG", (20, 20), "RGBA"), ("GIF", (32, 32), "P"),
                            ("BMP", (33, 31), "L"), ("WEBP", (40, 40), "RGB")):
        r = post(client, image_bytes(fmt, size, mode), name=f"x.{fmt.lower()}", mime="application/octet-stream")
        assert r.status_code == 200, (fmt, r.json())


def test_a_chosen_class_gets_its_own_overlay(client, train_tree):
    top = post(client, a_test_file(train_tree).read_bytes()).json()
    other = next(c for c in CLASSES if c != top["overlay"]["class"])
    r = post(client, a_test_file(train_tree).read_bytes(), target=other, top_k="2")
    assert r.status_code == 200
    body = r.json()
    assert body["overlay"]["class"] == other and len(body["predictions"]) == 2
    assert body["overlay"]["image"] != top["overlay"]["image"]


@pytest.mark.parametrize("case, status, message", [
    ("text", 415, "not an image"),
    ("ico", 415, "ICO images are not accepted"),
    ("truncated", 400, "malformed PNG image"),
    ("garbage-png", 400, "malformed"),
    ("empty", 400, "the file is empty"),
    ("huge-pixels", 413, "pixels"),
    ("oversized", 413, "the limit is 5 MB"),
    ("unknown-class", 400, "unknown target class 'horse'"),
])
def test_bad_uploads_get_a_4xx_with_a_message(client, case, status, message):
    good = image_bytes()
    data, form = {
        "text": (b"just some text, not a picture\n" * 10, {}),
        "ico": (image_bytes("ICO", (32, 32)), {}),
        "truncated": (good[: len(good) // 2], {}),
        "garbage-png": (b"\x89PNG\r\n\x1a\n" + b"\x00garbage" * 50, {}),
        "empty": (b"", {}),
        "huge-pixels": (image_bytes("PNG", (5000, 4000), "1"), {}),
        "oversized": (b"\x89PNG" + bytes(6 * 2**20), {}),
        "unknown-class": (good, {"target": "horse"}),
    }[case]
    r = post(client, data, **form)
    assert r.status_code == status, r.text
    assert message in r.json()["detail"]


def test_a_request_without_a_file_is_a_4xx(client):
    r = client.post("/api/predict")
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "file"]


def test_the_size_limit_holds_without_a_content_length(trained_run):
    small = local(cifarlab.create_app(trained_run, device="cpu", max_upload_bytes=2000))
    data = image_bytes("PNG", (64, 64))  # ~12 KB: passes the header check (it allows for the form), not this
    r = small.post("/api/predict", files={"file": ("a.png", data, "image/png")})
    assert r.status_code == 413 and "limit" in r.json()["detail"]
    with pytest.raises(UploadError) as e:
        decode_upload(data, 2000)
    assert e.value.status == 413


def test_random_test_image_and_info(client):
    r = client.get("/api/random", params={"seed": 3})
    assert r.status_code == 200
    body = r.json()
    assert body["label"] in CLASSES and body["source"].startswith("test/")
    assert decoded(body["image"]).size == (32, 32)
    assert client.get("/api/random", params={"seed": 3}).json()["index"] == body["index"]
    info = client.get("/api/info").json()
    assert info["classes"] == CLASSES and info["model"] == "baseline" and info["max_upload_bytes"] == 5 * 2**20


def test_random_image_without_the_data_is_a_404(trained_run, tmp_path):
    run = tmp_path / "moved"
    shutil.copytree(trained_run, run, ignore=shutil.ignore_patterns("checkpoints", "analysis"))
    info = json.loads((run / "config.json").read_text())
    info["config"]["data"] = str(tmp_path / "gone")
    (run / "config.json").write_text(json.dumps(info))
    r = local(cifarlab.create_app(run, device="cpu")).get("/api/random")
    assert r.status_code == 404 and "test images are not available" in r.json()["detail"]


def test_openapi_schema_and_a_page_without_outside_resources(client):
    schema = client.get("/openapi.json").json()
    predict = schema["paths"]["/api/predict"]["post"]
    assert "multipart/form-data" in predict["requestBody"]["content"]
    assert {"200", "400", "413", "415"} <= set(predict["responses"])
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    html = page.text
    assert "<script src" not in html and "<link" not in html and "http://" not in html and "https://" not in html
    assert 'id="file"' in html and 'id="random"' in html
    assert client.get("/docs").status_code == 404  # Swagger UI would come from a CDN


def test_serve_refuses_bad_settings_with_one_line(trained_run, tmp_path, capsys):
    assert main(["serve", str(tmp_path / "nope")]) == 2
    assert "run directory not found" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:  # argparse checks the range: one line, exit 2
        main(["serve", str(trained_run), "--port", "70000"])
    assert exit_.value.code == 2
    assert "--port must be in [0, 65535], got 70000" in capsys.readouterr().err
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        with pytest.raises(CifarlabError, match="cannot listen on 127.0.0.1"):
            serve(trained_run, port=s.getsockname()[1])


def test_only_loopback_counts_as_local():
    assert is_local("127.0.0.1") and is_local("localhost") and is_local("::1")
    assert not is_local("0.0.0.0") and not is_local("192.168.1.10")


def test_the_page_in_a_browser_upload_predict_explain(trained_run, train_tree, tmp_path):
    from browser_helper import browser, served

    image = a_test_file(train_tree)
    with served(trained_run) as url, browser() as b:
        page = b.new_page(viewport={"width": 1000, "height": 720})
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(url)
        page.wait_for_function("document.getElementById('model').textContent.includes('baseline')")
        assert page.is_hidden("#result") and page.is_hidden("#input-image")  # no broken images before an upload
        page.set_input_files("#file", str(image))
        page.wait_for_selector("#predictions li")
        page.wait_for_function("document.getElementById('overlay').naturalWidth > 0")
        assert page.evaluate("document.getElementById('input-image').naturalWidth") == 256
        rows = page.locator("#predictions li")
        assert rows.count() == 3
        top = rows.first.locator(".name").inner_text()
        assert top in CLASSES
        assert page.inner_text("#overlay-caption").startswith(f"gradcam for {top}")
        assert rows.first.locator("button").get_attribute("aria-pressed") == "true"
        shot = tmp_path / "serve.png"
        page.screenshot(path=str(shot))
        assert Image.open(shot).size == (1000, 720)

        second = rows.nth(1).locator(".name").inner_text()
        rows.nth(1).locator("button").click()  # explain another class
        page.wait_for_function(f"document.getElementById('overlay-caption').textContent.includes('for {second}')")
        assert page.locator("#predictions li").nth(1).locator("button").get_attribute("aria-pressed") == "true"

        page.click("#random")
        page.wait_for_selector("#truth:not([hidden])")
        assert page.inner_text("#truth").startswith("True class: ")

        page.set_input_files("#file", files=[{"name": "notes.txt", "mimeType": "text/plain", "buffer": b"hello"}])
        page.wait_for_selector("#error:not([hidden])")
        assert "not an image" in page.inner_text("#error")
        assert page.is_hidden("#result") and page.is_hidden("#truth")  # not the previous image's prediction
        assert not errors, errors


def test_serve_shows_the_runs_most_faithful_method_with_its_measurement(trained_run, train_tree, tmp_path):
    from test_explain import measured_copy

    run = measured_copy(trained_run, tmp_path / "run")
    client = local(cifarlab.create_app(run, device="cpu"))
    body = post(client, a_test_file(train_tree).read_bytes()).json()
    assert body["overlay"]["method"] == "saliency" and body["overlay"]["marks"] == []
    assert body["overlay"]["measurement"].startswith("lowest deletion AUC 0.300 of 3 measured methods over 50")
    assert decoded(body["overlay"]["image"]).size == (256, 256)
    unmeasured = post(local(cifarlab.create_app(trained_run, device="cpu")), a_test_file(train_tree).read_bytes())
    assert unmeasured.json()["overlay"]["measurement"].startswith("not measured")


def test_the_method_can_be_chosen_and_each_says_how_far_to_trust_it(trained_run, train_tree, tmp_path):
    from test_explain import measured_copy

    run = measured_copy(trained_run, tmp_path / "run")
    client = local(cifarlab.create_app(run, device="cpu"))
    info = client.get("/api/info").json()
    methods = {m["name"]: m for m in info["methods"]}
    assert info["default_method"] == "saliency" and {"gradcam", "saliency", "occlusion"} <= set(methods)
    assert methods["gradcam"]["measured"] and "against" in methods["gradcam"]["measurement"]
    assert methods["integrated-gradients"]["marks"]  # the fixture's IG fails the randomization check
    assert not methods["occlusion"]["measured"] and methods["occlusion"]["measurement"].startswith("not measured")
    body = post(client, a_test_file(train_tree).read_bytes(), method="gradcam").json()
    assert body["overlay"]["method"] == "gradcam" and body["overlay"]["measurement"].startswith("deletion AUC")
    assert decoded(body["overlay"]["image"]).size == (256, 256)
    marked = post(client, a_test_file(train_tree).read_bytes(), method="integrated-gradients").json()
    assert marked["overlay"]["marks"] == methods["integrated-gradients"]["marks"]


def test_an_unknown_method_is_a_400_naming_the_choices(client, train_tree):
    r = post(client, a_test_file(train_tree).read_bytes(), method="magic")
    assert r.status_code == 400
    assert "unknown explanation method 'magic'" in r.json()["detail"] and "gradcam" in r.json()["detail"]


def test_the_page_fits_the_screen_and_switches_methods(trained_run, train_tree, tmp_path):
    """No broken image and no horizontal scrolling at 1400 px and on a phone (390 px); the method select
    re-explains the same image and shows the method's trust line."""
    from browser_helper import browser, served
    from test_explain import measured_copy

    run = measured_copy(trained_run, tmp_path / "run")
    with served(run) as url, browser() as b:
        page = b.new_page(viewport={"width": 1400, "height": 900})
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(url)
        page.wait_for_function("document.querySelectorAll('#method option').length > 3")
        assert page.input_value("#method") == "saliency"  # the run's measured best
        page.set_input_files("#file", str(a_test_file(train_tree)))
        page.wait_for_function("document.getElementById('overlay').naturalWidth > 0")
        assert "lowest deletion AUC" in page.inner_text("#trust")
        page.select_option("#method", "integrated-gradients")
        page.wait_for_function("document.getElementById('overlay-caption').textContent"
                               ".startsWith('integrated-gradients')")
        assert page.inner_text("#trust").startswith("Careful: fails the randomization check")
        for width in (1400, 390):
            page.set_viewport_size({"width": width, "height": 900})
            assert page.evaluate("document.documentElement.scrollWidth <= document.documentElement.clientWidth"), width
            assert page.evaluate("Array.from(document.images).every(i => !i.offsetParent || i.naturalWidth > 0)")
        assert not errors, errors


# ------------------------------------------------------------------------------------------ image modes

MODES = ["I;16 PNG", "I;16 TIFF", "I TIFF", "F TIFF", "EXIF 6 JPEG", "EXIF 8 JPEG"]


@pytest.fixture(scope="module")
def mode_files(tmp_path_factory):
    from image_modes_helper import mode_images

    return mode_images(tmp_path_factory.mktemp("modes"))


@pytest.mark.parametrize("mode", MODES)
def test_the_page_sees_an_image_as_a_viewer_shows_it(client, mode_files, mode):
    """The image the page shows back (what the model saw, enlarged 8x) is the 8-bit picture, and the classes
    are those of that picture."""
    path, expected = mode_files[mode]
    r = post(client, path.read_bytes(), name=path.name, mime="application/octet-stream")
    assert r.status_code == 200, r.text
    seen = np.asarray(decoded(r.json()["image"]).convert("RGB"))[::8, ::8]
    assert np.array_equal(seen, expected)
    buf = io.BytesIO()
    Image.fromarray(expected).save(buf, format="PNG")
    view = post(client, buf.getvalue()).json()
    assert [p["class"] for p in r.json()["predictions"]] == [p["class"] for p in view["predictions"]]
    assert [p["probability"] for p in r.json()["predictions"]] == pytest.approx(
        [p["probability"] for p in view["predictions"]], abs=1e-6)


@pytest.mark.parametrize("case", ["constant I", "constant F", "all-NaN F"])
def test_a_32_bit_image_with_nothing_to_show_is_a_400(client, tmp_path, case):
    from image_modes_helper import blank_images

    path = blank_images(tmp_path)[case]
    r = post(client, path.read_bytes(), name="flat.tif", mime="image/tiff")
    assert r.status_code == 400
    assert "'flat.tif'" in r.json()["detail"] and "nothing to show" in r.json()["detail"]


# ------------------------------------------------------------------------------------------ Host header

@pytest.mark.parametrize("host", ["localhost", "localhost:8000", "LOCALHOST:8000", "127.0.0.1:8000", "[::1]:8000"])
def test_the_loopback_names_are_answered(client, host):
    assert client.get("/api/info", headers={"Host": host}).status_code == 200


@pytest.mark.parametrize("host", ["attacker.example", "attacker.example:8000", "localhost.attacker.example",
                                  "127.0.0.1.nip.io", "", "[::2]:8000", "localhost:80:80"])
def test_other_hosts_are_refused_before_anything_is_read(client, host):
    """A DNS-rebinding page (its own name pointed at 127.0.0.1) reads nothing: every path is a 400."""
    for method, path in (("GET", "/"), ("GET", "/api/info"), ("GET", "/api/random?seed=1"),
                         ("POST", "/api/predict"), ("GET", "/openapi.json")):
        r = client.request(method, path, headers={"Host": host}, content=b"x" if method == "POST" else None)
        assert r.status_code == 400, (method, path, r.text)
        assert "classes" not in r.text and "data:image" not in r.text


def test_the_accepted_hosts_follow_the_bound_address():
    assert accepted_hosts("127.0.0.1") == ["127.0.0.1", "localhost", "[::1]"]
    assert accepted_hosts("::1") == ["[::1]", "localhost", "127.0.0.1"]
    assert accepted_hosts("localhost") == ["localhost", "127.0.0.1", "[::1]"]
    assert accepted_hosts("192.168.1.10") == ["192.168.1.10"]  # loopback does not reach it
    assert accepted_hosts("0.0.0.0", ["Cat.LAN", "fe80::1", "*.example.org", "10.0.0.2"]) == [
        "0.0.0.0", "localhost", "127.0.0.1", "[::1]", "cat.lan", "[fe80::1]", "*.example.org", "10.0.0.2"]


@pytest.mark.parametrize("value, message", [("http://cat.lan", "not a URL"), ("cat.lan:8000", "without a port"),
                                            ("cat*.lan", "is not a host name"), ("", "is not a host name"),
                                            ("cat lan", "is not a host name")])
def test_a_bad_allowed_host_is_one_line(trained_run, capsys, value, message):
    assert main(["serve", str(trained_run), "--allowed-host", value]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "--allowed-host" in err and message in err


def test_serve_answers_the_allowed_hosts_it_was_started_for(trained_run, monkeypatch, capsys):
    """`cifarlab serve --host 0.0.0.0 --allowed-host cat.lan`: the app uvicorn gets answers cat.lan and
    localhost, not another name."""
    import socket

    import uvicorn

    served = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: served.update(app=app, **kw))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert main(["serve", str(trained_run), "--host", "0.0.0.0", "--port", str(port), "--allowed-host", "cat.lan",
                 "--device", "cpu"]) == 0
    assert served["host"] == "0.0.0.0" and "cat.lan" in capsys.readouterr().err  # the warning names them
    app = TestClient(served["app"])
    for host, status in (("cat.lan:8000", 200), ("localhost:8000", 200), ("dog.lan", 400)):
        assert app.get("/api/info", headers={"Host": host}).status_code == status, host

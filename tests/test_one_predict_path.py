"""One way to predict: evaluate, Run.predict, cifarlab.predict, `cifarlab predict`, serve and predict --onnx
compute their probabilities through Run.logits (one intake, one batched loop), with the run's own test-time
augmentation unless told otherwise, and give the same numbers for the same images and settings."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

import cifarlab
from cifarlab.choices import TTA
from cifarlab.cli import main
from cifarlab.errors import CifarlabError
from cifarlab.features.inputs import load_images
from cifarlab.rundir.run import load_run, run_from_model


@pytest.fixture(scope="module")
def flip_run(trained_run, tmp_path_factory):
    """The shared baseline run, recorded as trained with --tta flip (its own TTA is then not the default "none")."""
    run_dir = tmp_path_factory.mktemp("flip") / "baseline"
    shutil.copytree(trained_run, run_dir)
    config = run_dir / "config.json"
    info = json.loads(config.read_text())
    info["config"]["tta"] = "flip"
    config.write_text(json.dumps(info))
    return run_dir


@pytest.fixture(scope="module")
def run(flip_run):
    return load_run(flip_run, "cpu")


@pytest.fixture(scope="module")
def test_images(run):
    return run.dataset().test


def _probs(predictions, classes=("cat", "dog", "frog")) -> np.ndarray:
    """(N, C) from Predictions or their JSON, with every class listed (top_k >= the 3 classes)."""
    rows = [{p["class"]: p["probability"] for p in r["predictions"]} for r in predictions]
    return np.array([[row[c] for c in classes] for row in rows])


def test_evaluate_and_predict_give_the_same_probabilities_with_the_runs_own_tta(run, test_images):
    ev = cifarlab.evaluate(run, per_image=True)
    assert ev["tta"] == run.resolve_tta() == "flip"
    by_run = run.predict(test_images.images)
    by_api = cifarlab.predict(run, test_images.images)
    assert by_run.tta == by_api.tta == "flip" and "tta flip" in repr(by_run)
    np.testing.assert_array_equal(by_run.probabilities, ev["probabilities"])  # bit for bit: one path
    np.testing.assert_array_equal(by_api.probabilities, ev["probabilities"])
    assert ev["accuracy"] == pytest.approx(float((by_run.probabilities.argmax(1) == test_images.labels).mean()))
    np.testing.assert_array_equal(run.predict(test_images.images, tta="flip").probabilities, by_run.probabilities)
    # An explicit tta wins everywhere, and means the same thing everywhere.
    plain = cifarlab.evaluate(run, tta="none", per_image=True)
    assert plain["tta"] == "none"
    np.testing.assert_array_equal(run.predict(test_images.images, tta="none").probabilities, plain["probabilities"])
    assert not np.array_equal(plain["probabilities"], ev["probabilities"])  # the mirror does change them
    for tta in TTA:
        np.testing.assert_array_equal(run.probabilities(test_images.images, tta=tta),
                                      cifarlab.evaluate(run, tta=tta, per_image=True)["probabilities"], err_msg=tta)


def test_a_bare_model_and_a_run_without_a_tta_predict_with_none(run, trained_run):
    assert run_from_model(run.model, run.classes).resolve_tta() == "none"
    assert load_run(trained_run, "cpu").resolve_tta() == "none"


def _a_test_file(train_tree):
    return sorted((train_tree / "test" / "dog").iterdir())[0]


def test_the_cli_predicts_with_the_runs_own_tta_unless_told(run, flip_run, train_tree, capsys):
    source = _a_test_file(train_tree)
    for flags, tta in (([], "flip"), (["--tta", "none"], "none"), (["--tta", "flip"], "flip")):
        assert main(["predict", str(flip_run), str(source), "--json", "--device", "cpu", *flags]) == 0
        got = json.loads(capsys.readouterr().out)
        np.testing.assert_allclose(_probs(got), _probs(run.predict(source, tta=tta)), rtol=0, atol=1e-7,
                                   err_msg=str(flags))
    assert "(default: the run's own --tta)" in _help(capsys, "predict")
    assert "(default: the run's own --tta)" in _help(capsys, "serve")


def _help(capsys, command: str) -> str:
    with pytest.raises(SystemExit):
        main([command, "--help"])
    return " ".join(capsys.readouterr().out.split())


def test_serve_predicts_with_the_runs_own_tta_and_says_so(run, flip_run, trained_run, train_tree):
    pytest.importorskip("fastapi", reason="the serve extra is not installed (pip install -e '.[serve]')")
    pytest.importorskip("multipart", reason="the serve extra is not installed (pip install -e '.[serve]')")
    from fastapi.testclient import TestClient

    source = _a_test_file(train_tree)
    for kwargs, tta in (({}, "flip"), ({"tta": "none"}, "none")):
        client = TestClient(cifarlab.create_app(flip_run, device="cpu", **kwargs), base_url="http://localhost")
        assert client.get("/api/info").json()["tta"] == tta
        r = client.post("/api/predict", files={"file": ("dog.png", source.read_bytes(), "image/png")})
        assert r.status_code == 200 and r.json()["tta"] == tta
        want = run.predict(source, top_k=5, tta=tta)
        np.testing.assert_allclose(_probs([r.json()]), _probs(want), rtol=0, atol=1e-7)  # the same as predict
    plain = TestClient(cifarlab.create_app(trained_run, device="cpu"), base_url="http://localhost")
    assert plain.get("/api/info").json()["tta"] == "none"


def test_onnx_predicts_with_the_same_tta(run, flip_run, test_images, tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    exported = cifarlab.export(flip_run, out=tmp_path / "flip.onnx")
    assert exported.metadata["tta"] == "flip" and exported.max_abs_diff < 1e-4  # checked against tta none
    images = test_images.images[:7]
    default = cifarlab.predict(None, images, onnx=exported.path)
    assert default.tta == "flip"
    np.testing.assert_allclose(default.probabilities, run.predict(images).probabilities, rtol=1e-4, atol=1e-7)
    for tta in TTA:
        theirs = cifarlab.predict(None, images, onnx=exported.path, tta=tta)
        ours = run.predict(images, tta=tta)
        assert theirs.tta == tta and [r["predictions"][0]["class"] for r in theirs] == \
            [r["predictions"][0]["class"] for r in ours], tta
        np.testing.assert_allclose(theirs.probabilities, ours.probabilities, rtol=1e-4, atol=1e-7, err_msg=tta)
    with pytest.raises(CifarlabError, match="ONNX models run in fp32"):
        cifarlab.predict(None, images, onnx=exported.path, precision="bf16")


def test_a_bad_tta_is_one_line_naming_it(run, trained_run, capsys):
    image = np.zeros((32, 32, 3), np.uint8)
    calls = {"Run.predict": lambda: run.predict(image, tta="flp"),
             "Run.logits": lambda: run.logits(image, tta="flp"),
             "evaluate": lambda: cifarlab.evaluate(run, tta="flp"),
             "predict": lambda: cifarlab.predict(trained_run / "no-such-run", image, tta="flp"),  # before loading
             "predict onnx": lambda: cifarlab.predict(None, image, onnx="no.onnx", tta="flp")}
    pytest.importorskip("fastapi")
    calls["create_app"] = lambda: cifarlab.create_app(trained_run, device="cpu", tta="flp")
    for what, call in calls.items():
        with pytest.raises(CifarlabError) as e:
            call()
        message = str(e.value)
        assert message.startswith("unknown tta='flp' (did you mean flip?)") and "\n" not in message, (what, message)
    with pytest.raises(SystemExit):
        main(["predict", str(trained_run), "x.png", "--tta", "flp"])
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--tta" in err and "did you mean flip?" in err, err


def test_float_images_in_0_1_are_read_as_their_uint8_pixels(run, test_images):
    pixels = test_images.images[:4]
    unit = pixels.astype(np.float32) / 255
    np.testing.assert_array_equal(load_images(unit), pixels)  # explain / features: the same intake
    for floats in (unit, torch.from_numpy(unit).permute(0, 3, 1, 2)):
        result = run.predict(floats)
        np.testing.assert_allclose(result.probabilities, run.predict(pixels).probabilities, atol=1e-5)


@pytest.mark.parametrize("bad", [np.full((32, 32, 3), 255.0, np.float32),  # 0..255 as floats: refused, not guessed
                                 np.full((32, 32, 3), -0.1, np.float64),
                                 torch.full((3, 32, 32), 1.5)])
def test_float_images_outside_0_1_are_refused_in_one_line(run, bad):
    for intake in (run.predict, load_images):
        with pytest.raises(CifarlabError) as e:
            intake(bad)
        message = str(e.value)
        assert "must hold values in [0, 1]" in message and "pass uint8 for 0..255" in message and "\n" not in message

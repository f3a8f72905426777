"""`cifarlab export --format onnx` and `predict --onnx`: the exported graph answers as PyTorch does."""
from __future__ import annotations

import builtins
import json
import shutil

import numpy as np
import pytest

import cifarlab
from cifarlab.cli import main
from cifarlab.errors import CifarlabError

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")
import onnx  # noqa: E402

from cifarlab.deploy import load_onnx, normalize, run_session  # noqa: E402


@pytest.fixture(scope="module")
def exported(trained_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("onnx") / "baseline.onnx"
    return cifarlab.export(trained_run, out=out)


def _test_images(train_tree, n=4):
    return [p for c in ("cat", "dog", "frog") for p in sorted((train_tree / "test" / c).iterdir())[:n]]


def test_export_writes_a_checked_model_with_its_metadata(exported, trained_run):
    info = json.loads((trained_run / "config.json").read_text())
    assert exported.path.is_file() and exported.size_bytes == exported.path.stat().st_size
    assert exported.max_abs_diff < 1e-4 and exported.top1_agreement == 1.0
    model = onnx.load(str(exported.path))
    onnx.checker.check_model(model)
    props = {p.key: json.loads(p.value) for p in model.metadata_props}
    assert props["cifarlab.classes"] == info["classes"]
    assert len(props["cifarlab.mean"]) == len(props["cifarlab.std"]) == 3
    assert props["cifarlab.model"] == "baseline"


def test_the_batch_axis_is_dynamic(exported):
    session, meta = load_onnx(exported.path)
    for n in (1, 7, 300):  # 300 > one inference batch
        x = normalize(np.zeros((n, 32, 32, 3), np.uint8), meta["mean"], meta["std"])
        assert run_session(session, x).shape == (n, len(meta["classes"]))


def test_onnx_runtime_predictions_equal_pytorch(exported, trained_run, train_tree):
    images = _test_images(train_tree)
    ours = cifarlab.predict(trained_run, images, top_k=3, device="cpu")
    theirs = cifarlab.predict(None, images, top_k=3, onnx=exported.path)
    assert type(theirs) is type(ours)  # Predictions, as the docs promise: a table in a notebook, with thumbnails
    assert theirs.probabilities.shape == ours.probabilities.shape and theirs.pixels.shape == ours.pixels.shape
    np.testing.assert_allclose(theirs.probabilities, ours.probabilities, atol=1e-5)
    assert "<img" in theirs._repr_html_() and repr(theirs).startswith("Predictions(")
    for a, b in zip(ours, theirs):
        assert a["image"] == b["image"]
        assert [p["class"] for p in a["predictions"]] == [p["class"] for p in b["predictions"]]
        np.testing.assert_allclose([p["probability"] for p in a["predictions"]],
                                   [p["probability"] for p in b["predictions"]], atol=1e-5)


def test_export_defaults_to_the_run_directory(trained_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    result = cifarlab.export(run, verify=False)
    assert result.path == run / "model.onnx" and result.path.is_file()


def test_cli_export_and_predict(exported, trained_run, train_tree, tmp_path, capsys):
    out = tmp_path / "m.onnx"
    assert main(["export", str(trained_run), "--out", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["path"] == str(out) and report["max_abs_diff"] < 1e-4
    image = _test_images(train_tree, 1)[0]
    assert main(["predict", "--onnx", str(out), str(image), "--json"]) == 0
    via_onnx = json.loads(capsys.readouterr().out)
    assert main(["predict", str(trained_run), str(image), "--json"]) == 0
    via_torch = json.loads(capsys.readouterr().out)
    assert via_onnx[0]["predictions"][0]["class"] == via_torch[0]["predictions"][0]["class"]


def _one_line_error(capsys, args, *fragments):
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    for f in fragments:
        assert f in err, err


def test_bad_format(trained_run, tmp_path, capsys):
    _one_line_error(capsys, ["export", str(trained_run), "--format", "tflite", "--out", str(tmp_path / "m")],
                    "unknown --format 'tflite'", "onnx")
    assert not (tmp_path / "m").exists()


def test_missing_run_directory(tmp_path, capsys):
    _one_line_error(capsys, ["export", str(tmp_path / "nope")], "run directory not found")


def test_corrupt_onnx_file(tmp_path, train_tree, capsys):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"this is not a protobuf" * 10)
    image = _test_images(train_tree, 1)[0]
    _one_line_error(capsys, ["predict", "--onnx", str(bad), str(image)], "cannot load ONNX model", str(bad))
    _one_line_error(capsys, ["predict", "--onnx", str(tmp_path / "none.onnx"), str(image)], "ONNX model not found")


def test_onnx_file_without_cifarlab_metadata(exported, tmp_path, train_tree, capsys):
    model = onnx.load(str(exported.path))
    del model.metadata_props[:]
    plain = tmp_path / "plain.onnx"
    onnx.save(model, str(plain))
    image = _test_images(train_tree, 1)[0]
    _one_line_error(capsys, ["predict", "--onnx", str(plain), str(image)], "has no cifarlab metadata")


def test_predict_needs_an_image(trained_run, capsys):
    _one_line_error(capsys, ["predict", str(trained_run)], "at least one IMAGE")


def test_a_failed_export_leaves_no_file(trained_run, tmp_path, monkeypatch):
    import torch

    def fail(*args, **kwargs):
        raise RuntimeError("unsupported operator aten::magic\nlong details")

    monkeypatch.setattr(torch.onnx, "export", fail)
    with pytest.raises(CifarlabError, match="cannot export baseline to ONNX: unsupported operator aten::magic$"):
        cifarlab.export(trained_run, out=tmp_path / "m.onnx")
    assert list(tmp_path.iterdir()) == []


def test_missing_onnx_packages(trained_run, tmp_path, monkeypatch):
    real_import = builtins.__import__

    def no_onnxscript(name, *args, **kwargs):
        if name == "onnxscript":
            raise ImportError("No module named 'onnxscript'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_onnxscript)
    with pytest.raises(CifarlabError, match=r"need onnxscript: pip install -e '\.\[onnx\]'"):
        cifarlab.export(trained_run, out=tmp_path / "m.onnx")


@pytest.mark.slow  # about a minute for the whole zoo on 2 cores
@pytest.mark.parametrize("name", [*cifarlab.list_models(), "tv:resnet18", "timm:resnet18"])
def test_every_zoo_model_exports_with_a_dynamic_batch(name, tmp_path):
    import torch

    from cifarlab.deploy import _session, export_onnx_model
    from cifarlab.rundir.inference import preprocessing

    if name.startswith("timm:"):
        pytest.importorskip("timm")
    torch.manual_seed(0)
    model = cifarlab.create_model(name, num_classes=10).eval()
    mean, std = preprocessing(model)
    meta = {"classes": [str(i) for i in range(10)], "mean": list(mean), "std": list(std), "input_size": [3, 32, 32],
            "model": name}
    export_onnx_model(model, tmp_path / "m.onnx", meta, None)
    x = normalize(np.random.default_rng(0).integers(0, 256, (5, 32, 32, 3), dtype=np.uint8), mean, std)
    got = run_session(_session(tmp_path / "m.onnx"), x)
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    assert np.abs(got - want).max() <= 1e-3 * max(1.0, np.abs(want).max())

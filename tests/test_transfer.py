"""Transfer learning on tiny synthetic data: weight loading (matching, partly matching, mismatched),
freezing, the unfreeze schedule, the feature cache, --classes / --label-fraction, and offline
--pretrained without weights. Nothing here touches the network: downloads are patched to fail."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

import cifarlab
from cifarlab.cli import main
from cifarlab.config import TrainConfig
from cifarlab.data.cache import cache_root
from cifarlab.errors import CifarlabError
from cifarlab.models import create_model
from cifarlab.training.optim import build_optimizer
from cifarlab.training.resolve import resolve
from cifarlab.transfer import Freezer, init_from, linear_probe, load_matching

RUN_KW = dict(model="resnet20", val_size=6, precision="fp32", verbose=False, batch_size=16, lr=0.05)


def _resnet20(num_classes=3, seed=0):
    torch.manual_seed(seed)
    return create_model("resnet20", num_classes=num_classes)


def _state(model):
    return {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}


# Weight loading -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_init_from_a_matching_state_dict_loads_every_layer(tmp_path, suffix):
    source = _state(_resnet20(seed=1))
    path = tmp_path / f"w{suffix}"
    save_file(source, str(path)) if suffix == ".safetensors" else torch.save({"state_dict": source}, path)
    model = _resnet20(seed=2)
    report = init_from(model, path, ["cat", "dog", "frog"])
    # A plain file records no classes: the head stays new, everything else is the file's.
    assert report.head_kept_new == ["fc.weight", "fc.bias"] and not report.missing and not report.shape_mismatch
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, source[name]) != name.startswith("fc."), name


def test_partly_matching_state_dict_reports_what_it_skipped(tmp_path):
    source = _state(_resnet20(num_classes=10, seed=1))
    del source["layer1.0.conv1.weight"]
    source["layer3.0.conv1.weight"] = torch.zeros(1, 2, 3, 3)
    model = _resnet20(seed=2)
    before = _state(model)
    report = load_matching(model, source, "test")
    assert "layer1.0.conv1.weight" in report.missing
    assert any(s.startswith("layer3.0.conv1.weight (file 1x2x3x3, model 64x32x3x3)") for s in report.shape_mismatch)
    assert any(s.startswith("fc.weight (file 10x64") for s in report.shape_mismatch)  # 10 classes vs 3
    assert torch.equal(model.state_dict()["layer1.0.conv1.weight"], before["layer1.0.conv1.weight"])
    assert torch.equal(model.state_dict()["layer2.0.conv1.weight"], source["layer2.0.conv1.weight"])
    assert "layer1.0.conv1.weight (not in the file)" in report.skipped()


def test_mismatched_shapes_everywhere_is_a_clear_error(tmp_path):
    source = {k: torch.zeros(*(s + 1 for s in v.shape)) for k, v in _resnet20().state_dict().items() if v.ndim}
    path = tmp_path / "other.safetensors"
    save_file(source, str(path))
    with pytest.raises(CifarlabError, match=r"none of its \d+ tensors fits resnet20 .*other shapes"):
        init_from(_resnet20(), path, ["a", "b", "c"], label="resnet20")
    save_file({"totally.different": torch.zeros(3)}, str(tmp_path / "names.safetensors"))
    with pytest.raises(CifarlabError, match="no tensor names in common"):
        init_from(_resnet20(), tmp_path / "names.safetensors", ["a", "b", "c"])


def test_init_from_through_train_and_cli(tiny_tree, tmp_path, capsys):
    source = _resnet20(num_classes=10, seed=1)
    path = tmp_path / "w.pt"
    torch.save(_state(source), path)
    r = cifarlab.train(**RUN_KW, data=str(tiny_tree), epochs=1, init_from=str(path), freeze="backbone",
                       out=str(tmp_path / "run"))
    info = r.summary["transfer"]["init_from"]
    assert info["loaded"] == len(source.state_dict()) - 2
    assert info["skipped"] == [f"fc.{p} (new head for this run's classes)" for p in ("weight", "bias")]
    assert torch.equal(r.model.layer2[0].conv1.weight.detach(), source.layer2[0].conv1.weight.detach())
    # A second run from that run directory: same classes, so its head is loaded too.
    r2 = cifarlab.train(**RUN_KW, data=str(tiny_tree), epochs=1, init_from=str(r.run_dir), out=str(tmp_path / "r2"))
    assert r2.summary["transfer"]["init_from"]["skipped"] == []
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    code = main(["train", "--model", "resnet20", "--data", str(tiny_tree), "--init-from", str(bad), "--epochs", "1",
                 "--out", str(tmp_path / "r3")])
    err = capsys.readouterr().err
    assert code == 2 and "cannot read" in err and str(bad) in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r3").exists()


# Freezing -----------------------------------------------------------------------------------------------------

def _one_step(model, cfg):
    optimizer = build_optimizer(model, cfg)
    x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 3, (8,))
    loss = torch.nn.functional.cross_entropy(model(x), y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_freezing_really_freezes(optimizer):
    model = _resnet20()
    cfg = resolve(TrainConfig(model="resnet20", freeze="backbone", optimizer=optimizer, weight_decay=0.1))
    model.train()
    Freezer(model, "backbone").start_epoch(0)
    before = _state(model)
    _one_step(model, cfg)
    for name, p in model.named_parameters():
        if name.startswith("fc."):
            assert p.requires_grad and not torch.equal(p.detach(), before[name]), name
        else:
            assert not p.requires_grad and p.grad is None, name
    for name, t in model.state_dict().items():  # weights and batch-norm statistics alike
        if not name.startswith("fc."):
            assert torch.equal(t, before[name]), name


def test_freeze_bn_keeps_statistics_while_weights_train():
    model = _resnet20()
    cfg = resolve(TrainConfig(model="resnet20", freeze_bn=True))
    model.train()
    Freezer(model, "none", freeze_bn=True).start_epoch(0)
    before = _state(model)
    _one_step(model, cfg)
    after = model.state_dict()
    assert torch.equal(after["bn1.running_mean"], before["bn1.running_mean"])
    assert not torch.equal(after["conv1.weight"], before["conv1.weight"])


def test_backbone_lr_scale_gives_the_backbone_its_own_lr():
    model = _resnet20()
    cfg = resolve(TrainConfig(model="resnet20", lr=0.1, backbone_lr_scale=0.01))
    groups = build_optimizer(model, cfg).param_groups
    head = {id(p) for p in model.fc.parameters()}
    for g in groups:
        is_head = all(id(p) in head for p in g["params"])
        assert g["base_lr"] == pytest.approx(0.1 if is_head else 0.001)


def test_stage_per_epoch_unfreezes_from_the_top_down():
    model = _resnet20()
    freezer = Freezer(model, "backbone", "stage-per-epoch")
    trained = [freezer.trainable(epoch) for epoch in range(5)]
    assert trained[0] == {"fc.weight", "fc.bias"}
    assert "layer3.0.conv1.weight" in trained[1] and "layer2.0.conv1.weight" not in trained[1]
    assert "layer2.0.conv1.weight" in trained[2] and "layer1.0.conv1.weight" not in trained[2]
    assert "conv1.weight" in trained[3] and "bn1.weight" in trained[3]  # the stem goes with the first stage
    assert trained[3] == {n for n, _ in model.named_parameters()} == trained[4]
    assert [freezer.unfrozen_at(e) for e in (1, 2, 3)] == [["layer3"], ["layer2"], ["layer1"]]


def test_explicit_unfreeze_schedule_in_training(tiny_tree, tmp_path):
    torch.save(_state(_resnet20(seed=1)), tmp_path / "w.pt")
    start = _resnet20(seed=1)
    r = cifarlab.train(**RUN_KW, data=str(tiny_tree), epochs=2, init_from=str(tmp_path / "w.pt"), freeze="backbone",
                       unfreeze_schedule="1:layer3", out=str(tmp_path / "run"))
    trained = r.model.state_dict()
    assert torch.equal(trained["layer1.0.conv1.weight"], start.state_dict()["layer1.0.conv1.weight"])
    assert torch.equal(trained["layer1.0.bn1.running_mean"], start.state_dict()["layer1.0.bn1.running_mean"])
    assert not torch.equal(trained["layer3.0.conv1.weight"], start.state_dict()["layer3.0.conv1.weight"])
    with pytest.raises(CifarlabError, match="no module 'layer9'; its stages are layer1, layer2, layer3"):
        Freezer(_resnet20(), "backbone", "2:layer9")


# The feature cache ---------------------------------------------------------------------------------------------

def test_feature_cache_is_reused_and_invalidated_when_the_backbone_changes(tiny_tree, tmp_path):
    for seed in (1, 2):
        torch.save(_state(_resnet20(seed=seed)), tmp_path / f"w{seed}.pt")
    kw = dict(model="resnet20", data=str(tiny_tree), val_size=6, precision="fp32", verbose=False, probe_epochs=5)
    first = linear_probe(init_from=str(tmp_path / "w1.pt"), out=str(tmp_path / "probe"), **kw)
    assert first.cache_hits == {"train": False, "val": False, "test": False}
    assert len(list((cache_root() / "features").glob(f"{first.cache_key}-*.npy"))) == 3  # one file per split
    again = linear_probe(init_from=str(tmp_path / "w1.pt"), **kw)
    assert again.cache_hits == {"train": True, "val": True, "test": True} and again.cache_key == first.cache_key
    assert again.logistic["test_accuracy"] == first.logistic["test_accuracy"]
    other = linear_probe(init_from=str(tmp_path / "w2.pt"), **kw)  # other weights: other features
    assert other.cache_hits == {"train": False, "val": False, "test": False} and other.cache_key != first.cache_key
    resized = linear_probe(init_from=str(tmp_path / "w1.pt"), input_size=48, **kw)  # other preprocessing
    assert not any(resized.cache_hits.values())
    saved = json.loads((tmp_path / "probe" / "probe.json").read_text())
    assert saved["feature_dim"] == 64 and 0 <= saved["logistic"]["test_accuracy"] <= 1
    assert first.train_images == 3 * 20 - 6


# --classes and --label-fraction ----------------------------------------------------------------------------------

def test_classes_are_selected_relabelled_and_recorded(tiny_tree, tmp_path):
    r = cifarlab.train(**RUN_KW, data=str(tiny_tree), epochs=1, classes=["frog", "cat"], label_fraction=0.5,
                       out=str(tmp_path / "run"))
    assert r.summary["classes"] == ["frog", "cat"] and r.summary["test_images"] == 2 * 6
    assert r.summary["train_images"] == round(0.5 * (2 * 20 - 6))
    config = json.loads((r.run_dir / "config.json").read_text())
    assert config["classes"] == ["frog", "cat"] and config["config"]["classes"] == ["frog", "cat"]
    assert cifarlab.evaluate(r.run_dir)["images"] == 12  # evaluate applies the run's class selection


def test_unknown_class_and_bad_flags_are_one_line_errors(tiny_tree, tmp_path, capsys):
    cases = [
        (["--classes", "cat,zebra"], "zebra not in the data's classes"),
        (["--weights", str(tmp_path)], "--weights is the local file of the --pretrained weights"),
        (["--unfreeze-schedule", "stage-per-epoch"], "add --freeze backbone"),
        (["--freeze", "backbone", "--unfreeze-schedule", "layer3"], "cannot read 'layer3'"),
        (["--pretrained", "imagenet"], "needs a tv:NAME or timm:NAME model"),
        (["--label-fraction", "1.5"], "--label-fraction must be in (0, 1]"),
        (["--backbone-lr-scale", "0"], "--backbone-lr-scale must be > 0"),
        (["--init-from", str(tmp_path / "nope")], "--init-from: no such run directory or weights file"),
    ]
    for flags, fragment in cases:
        code = main(["train", "--model", "resnet20", "--data", str(tiny_tree), "--epochs", "1",
                     "--out", str(tmp_path / "never"), *flags])
        err = capsys.readouterr().err
        assert code == 2 and fragment in err and len(err.strip().splitlines()) == 1, (flags, err)
        assert not (tmp_path / "never").exists()


# --pretrained ----------------------------------------------------------------------------------------------------

@pytest.fixture
def no_network(tmp_path, monkeypatch):
    """An empty torch hub and HF cache, and every download path patched to fail the test if called."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setattr(torch.hub, "_hub_dir", None, raising=False)

    def download(*args, **kwargs):
        raise AssertionError("a download was attempted")

    import torchvision.models._api as tv_api

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", download)
    monkeypatch.setattr(torch.hub, "download_url_to_file", download)
    monkeypatch.setattr(tv_api, "load_state_dict_from_url", download, raising=False)


def test_offline_pretrained_without_weights_fails_with_the_documented_message(no_network, monkeypatch, tiny_tree,
                                                                             tmp_path, capsys):
    monkeypatch.setenv("CIFARLAB_OFFLINE", "1")
    code = main(["train", "--model", "tv:mobilenet_v3_small", "--pretrained", "imagenet", "--data", str(tiny_tree),
                 "--epochs", "1", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "no ImageNet weights for tv:mobilenet_v3_small: MobileNet_V3_Small_Weights.IMAGENET1K_V1 is not in the " \
           "torch hub cache" in err
    assert str(tmp_path / "torch-home") in err and "pass --weights FILE" in err and "offline" in err
    assert not (tmp_path / "run").exists()


def test_failed_download_is_the_same_clear_error(no_network, monkeypatch, tmp_path):
    import torchvision.models._api as tv_api

    def refuse(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(tv_api, "load_state_dict_from_url", refuse, raising=False)
    monkeypatch.delenv("CIFARLAB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    from cifarlab.pretrained.weights import _tv_state_dict

    with pytest.raises(CifarlabError, match=r"the download failed \(OSError: network unreachable\).*weights=FILE"):
        _tv_state_dict("mobilenet_v3_small", None)


def test_pretrained_from_a_weights_file_loads_the_backbone_and_its_preprocessing(no_network, tiny_tree, tmp_path):
    import torchvision

    torch.manual_seed(3)
    imagenet = torchvision.models.mobilenet_v3_small(num_classes=1000)  # stands in for the published file
    weights = tmp_path / "mobilenet_v3_small.pth"
    torch.save(imagenet.state_dict(), weights)
    r = cifarlab.train(model="tv:mobilenet_v3_small", pretrained="imagenet", weights=str(weights),
                       input_size=40, freeze="backbone", data=str(tiny_tree), epochs=1, val_size=6, batch_size=16,
                       precision="fp32", verbose=False, out=str(tmp_path / "run"))
    info = r.summary["transfer"]
    assert info["pretrained"]["weights"] == "MobileNet_V3_Small_Weights.IMAGENET1K_V1"
    assert info["input_size"] == 40
    assert info["pretrained"]["skipped"] == ["classifier.weight (new head for this run's classes)",
                                             "classifier.bias (new head for this run's classes)"]
    frozen = r.model.model.features[0][0].weight.detach()
    assert torch.equal(frozen, imagenet.features[0][0].weight)  # frozen: still the file's weights
    run = cifarlab.load_run(r.run_dir)
    model = run.model
    assert run.mean == (0.485, 0.456, 0.406) and run.input_size == 40
    assert model.default_cfg["mean"] == (0.485, 0.456, 0.406) and model.default_cfg["input_size"] == (3, 40, 40)
    seen = []
    model.model.features.register_forward_pre_hook(lambda m, args: seen.append(args[0].shape[-1]))
    model(torch.zeros(1, 3, 32, 32))
    assert seen == [40]  # the reloaded run upsamples like the training run did
    assert cifarlab.evaluate(r.run_dir)["images"] == 18


def test_pretrained_weights_of_another_architecture_are_refused(no_network, tmp_path):
    import torchvision

    torch.save(torchvision.models.resnet18(num_classes=1000).state_dict(), tmp_path / "resnet18.pth")
    cfg = resolve(TrainConfig(model="tv:mobilenet_v3_small", pretrained="imagenet",
                      weights=str(tmp_path / "resnet18.pth")))
    from cifarlab.pretrained.weights import load_pretrained

    with pytest.raises(CifarlabError, match="do not fit tv:mobilenet_v3_small"):
        load_pretrained(create_model(cfg.model, num_classes=3), cfg)


def test_timm_pretrained_from_a_file_with_cifar_stem(no_network, monkeypatch, tmp_path):
    timm = pytest.importorskip("timm")
    from safetensors.torch import save_file as save

    from cifarlab.pretrained.setup import prepare_model

    monkeypatch.setenv("CIFARLAB_OFFLINE", "1")
    torch.manual_seed(0)
    source = timm.create_model("resnet18", num_classes=1000)
    save({k: v.contiguous() for k, v in source.state_dict().items()}, str(tmp_path / "r18.safetensors"))
    cfg = resolve(TrainConfig(model="timm:resnet18", pretrained="imagenet", weights=str(tmp_path / "r18.safetensors"),
                      cifar_stem=True, input_size=32))
    model = create_model(cfg.model, num_classes=3, **cfg.model_kwargs)
    _, info = prepare_model(model, cfg, ["a", "b", "c"], log=lambda s: None)
    # The 7x7 stem conv was replaced by --cifar-stem: the only backbone tensor allowed to differ.
    assert info["pretrained"]["skipped"][0] == "model.conv1.weight (file 64x3x7x7, model 64x3x3x3)"
    assert torch.equal(model.model.layer4[1].conv2.weight, source.layer4[1].conv2.weight)
    assert model.default_cfg["mean"] == (0.485, 0.456, 0.406)
    with pytest.raises(CifarlabError, match="no pretrained weights for timm:resnet18: not in the Hugging Face cache"):
        prepare_model(create_model("timm:resnet18", num_classes=3),
                      resolve(TrainConfig(model="timm:resnet18", pretrained="imagenet")), ["a", "b", "c"])


@pytest.mark.parametrize("precision", ["bf16", "fp32"])
def test_input_size_reaches_the_network_when_the_head_runs_apart(precision):
    """bf16 evaluation runs forward_features and the head apart (fp32 logits); the --input-size upsampling is
    a forward pre-hook, so it once never ran there: a run trained at 96 px was validated at 32 px (0.30
    instead of 0.79 in the notebook). Logits, embeddings and probe features must all see the upsampled image."""
    from cifarlab.features.embedding import penultimate_features
    from cifarlab.pretrained.setup import apply_preprocessing
    from cifarlab.rundir.inference import fp32_logits
    from cifarlab.transfer.probe import compute_features

    torch.manual_seed(0)
    model = create_model("resnet20").eval()
    apply_preprocessing(model, TrainConfig(model="resnet20", input_size=48))
    seen = []
    model.conv1.register_forward_pre_hook(lambda m, args: seen.append(tuple(args[0].shape[-2:])))
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        expected = model(x)
        got = fp32_logits(model, x, precision)
    assert seen == [(48, 48), (48, 48)]
    assert torch.allclose(got, expected, atol=0.1 if precision == "bf16" else 1e-5)
    images = torch.randint(0, 256, (3, 32, 32, 3), dtype=torch.uint8).numpy()
    seen.clear()
    penultimate_features(model, images)
    compute_features(model, images, torch.device("cpu"), precision)
    assert seen == [(48, 48), (48, 48)]

"""The fast recipe (airbench94): alternating flip and translation in the loader, the patch-whitening
initialization, Muon + SGD, the lr horizon, test-time augmentation, and `--recipe fast` end to end."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import cifarlab
from cifarlab._flags import config_from_flags
from cifarlab.augment import create_augment
from cifarlab.augment.geometric import AlternatingFlip, Translate
from cifarlab.cli import build_parser, main
from cifarlab.config import TrainConfig
from cifarlab.data.loader import DeviceLoader
from cifarlab.errors import CifarlabError
from cifarlab.models import create_model
from cifarlab.models.airbench import FrozenScaleBatchNorm, patch_whitening_weights
from cifarlab.recipes import list_recipes, recipe_settings
from cifarlab.rundir.inference import (
    TTA_MODES,
    UNSURE_SHARE,
    predict_logits,
    tta_flip_translate,
    tta_flip_translate_unsure,
    tta_logits,
)
from cifarlab.training import muon
from cifarlab.training.muon import MuonSGD, orthogonalize
from cifarlab.training.optim import build_optimizer, restore_gradients, schedule_lr, stop_gradients_past_horizon
from cifarlab.training.resolve import resolve

CPU = torch.device("cpu")


def random_images(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)


def raw_loader(images: np.ndarray, augment, batch_size: int = 16, seed: int = 3) -> DeviceLoader:
    """A loader whose batches are the uint8 pixels as floats (mean 0, std 1/255) and whose labels are
    the dataset indices, so each output image can be matched to its source."""
    return DeviceLoader(images, np.arange(len(images)), batch_size=batch_size, device=CPU, mean=(0.0,) * 3,
                        std=(1 / 255,) * 3, shuffle=True, seed=seed, augment=augment, channels_last=False)


def flipped_per_image(loader: DeviceLoader, images: np.ndarray, epoch: int) -> torch.Tensor:
    source = torch.from_numpy(images).permute(0, 3, 1, 2).float()
    loader.set_epoch(epoch)
    flipped = torch.zeros(len(images), dtype=torch.bool)
    seen = torch.zeros(len(images), dtype=torch.bool)
    for x, idx in loader:
        same, mirrored = (x == source[idx]).flatten(1).all(1), (x == source[idx].flip(-1)).flatten(1).all(1)
        assert (same ^ mirrored).all()  # each image exactly as it was, or exactly mirrored
        flipped[idx], seen[idx] = mirrored, True
    assert seen.all()
    return flipped


def test_alternating_flip_alternates_every_epoch():
    images = random_images(64)
    loader = raw_loader(images, create_augment("altflip"))
    first = flipped_per_image(loader, images, 0)
    assert 10 < first.sum() < 54  # random in the first epoch: about half
    for epoch in range(1, 4):
        assert torch.equal(flipped_per_image(loader, images, epoch), first ^ bool(epoch % 2))
    # The same seed flips the same way (a resumed run); another seed does not.
    assert torch.equal(flipped_per_image(raw_loader(images, create_augment("altflip")), images, 0), first)
    assert not torch.equal(flipped_per_image(raw_loader(images, create_augment("altflip"), seed=4), images, 0),
                           first)


def test_alternating_flip_without_an_index_flips_at_random():
    x = torch.from_numpy(random_images(200)).permute(0, 3, 1, 2)
    out = AlternatingFlip()(x, torch.Generator().manual_seed(0))
    flipped = (out == x.flip(-1)).flatten(1).all(1)
    assert 60 < flipped.sum() < 140 and ((out == x).flatten(1).all(1) ^ flipped).all()


def test_translation_stays_within_two_pixels():
    images = random_images(64, seed=1)
    source = torch.from_numpy(images).permute(0, 3, 1, 2).float()
    padded = F.pad(source, (2, 2, 2, 2), mode="reflect")
    loader = raw_loader(images, create_augment("translate"))
    shifts = set()
    for x, idx in loader:
        for out, i in zip(x, idx):
            found = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)
                     if torch.equal(out, padded[i, :, 2 + dy:34 + dy, 2 + dx:34 + dx])]
            assert found, "a translated image is not a shift of at most 2 pixels of its source"
            shifts.add(found[0])
    assert len(shifts) > 10  # the shifts vary
    assert Translate().pad == 2 and not Translate().flip


def correlated_images(n: int = 300) -> torch.Tensor:
    """Smooth, colour-correlated images: their 2×2 patches are far from white."""
    g = torch.Generator().manual_seed(0)
    x = F.avg_pool2d(torch.randn(n, 3, 36, 36, generator=g), 5, stride=1)
    mix = torch.tensor([[1.0, 0.8, 0.6], [0.0, 0.5, 0.4], [0.0, 0.0, 0.3]])
    return torch.einsum("dc,nchw->ndhw", mix, x) + 0.3


def patch_covariance(outputs: torch.Tensor) -> torch.Tensor:
    flat = outputs.permute(1, 0, 2, 3).reshape(outputs.shape[1], -1).double()
    return flat @ flat.T / flat.shape[1]


def test_whitened_patches_have_identity_covariance():
    images = correlated_images()
    raw = patch_covariance(F.unfold(images, 2).transpose(1, 2).reshape(-1, 12, 1, 1))
    assert (raw - torch.eye(12, dtype=torch.float64)).abs().max() > 0.5  # not white to begin with
    weights = patch_whitening_weights(images, eps=1e-9)
    assert weights.shape == (24, 3, 2, 2)
    torch.testing.assert_close(weights[12:], -weights[:12])  # each filter and its negative
    cov = patch_covariance(F.conv2d(images, weights[:12]))
    torch.testing.assert_close(cov, torch.eye(12, dtype=torch.float64), atol=2e-3, rtol=0)
    # With airbench's eps the tiny directions are damped, never amplified past 1.
    damped = patch_covariance(F.conv2d(images, patch_whitening_weights(images)[:12])).diagonal()
    assert (damped <= 1 + 1e-3).all() and damped.max() > 0.99


def test_airbench_initializes_from_data_and_freezes_what_airbench_freezes():
    torch.manual_seed(0)
    model = create_model("airbench")
    images = correlated_images(100)
    model.initialize_from_data(images)
    torch.testing.assert_close(model.whiten.weight, patch_whitening_weights(images))
    assert not model.whiten.weight.requires_grad
    norms = [m for m in model.modules() if isinstance(m, FrozenScaleBatchNorm)]
    assert len(norms) == 6 and all(not m.weight.requires_grad and m.bias.requires_grad for m in norms)
    conv = model.block2.conv2.weight  # dirac: the identity on its first in_channels filters
    torch.testing.assert_close(conv[:, :, 1, 1][:, :conv.shape[1]], torch.eye(conv.shape[1]))
    assert model.head.weight.std().item() == pytest.approx(1.0, abs=1e-4)


def test_airbench_param_groups_cover_every_trainable_parameter_once():
    model = create_model("airbench")
    cfg = resolve(TrainConfig(model="airbench"))
    optimizer = build_optimizer(model, cfg)
    assert isinstance(optimizer, MuonSGD)
    grouped = [p for g in optimizer.param_groups for p in g["params"]]
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert len(grouped) == len(trainable) and {id(p) for p in grouped} == {id(p) for p in trainable}
    muon = [g for g in optimizer.param_groups if g["muon"]]
    assert len(muon) == 1 and all(p.ndim == 4 for p in muon[0]["params"])
    # airbench sums the loss: SGD lr per image × batch 2000, e.g. the head's 0.67.
    head = next(g for g in optimizer.param_groups if any(p is model.head.weight for p in g["params"]))
    assert head["lr"] == pytest.approx(0.67 * 2000)


def test_muon_works_for_any_model_filters_by_muon_the_rest_by_sgd():
    model = create_model("resnet20")
    optimizer = build_optimizer(model, resolve(TrainConfig(model="resnet20", optimizer="muon")))
    grouped = {id(p): g["muon"] for g in optimizer.param_groups for p in g["params"]}
    assert set(grouped) == {id(p) for p in model.parameters()}
    assert all(grouped[id(p)] == (p.ndim == 4) for p in model.parameters())
    loss = model(torch.randn(4, 3, 32, 32)).logsumexp(1).mean()
    loss.backward()
    optimizer.step()
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_lr_horizon_freezes_a_group_after_its_share_of_training():
    p, q = nn.Parameter(torch.ones(2)), nn.Parameter(torch.ones(2))
    opt = torch.optim.SGD([{"params": [p], "base_lr": 1.0}, {"params": [q], "base_lr": 1.0, "lr_horizon": 0.375}],
                          lr=1.0)
    schedule_lr(opt, 0.25, "linear")
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.75, 1 - 0.25 / 0.375])
    schedule_lr(opt, 0.5, "linear")
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.5, 0.0])


def test_a_group_past_its_lr_horizon_stops_needing_gradients_until_restored():
    p, q = nn.Parameter(torch.ones(2)), nn.Parameter(torch.ones(2))
    opt = torch.optim.SGD([{"params": [p]}, {"params": [q], "lr_horizon": 0.375}], lr=1.0)
    stop_gradients_past_horizon(opt, 0.37)
    assert p.requires_grad and q.requires_grad
    stop_gradients_past_horizon(opt, 0.375)
    assert p.requires_grad and not q.requires_grad  # the group without a horizon runs to the end
    restore_gradients(opt)
    assert p.requires_grad and q.requires_grad


def test_the_whitening_bias_stops_its_backward_after_its_epochs_and_trains_the_same_weights(train_tree, tmp_path,
                                                                                            monkeypatch):
    """airbench's bias learns for 3 epochs; after them its gradient (and the first block's input gradient
    that feeds it) is skipped, which changes the time and nothing else."""
    import cifarlab.training.loop as loop
    args = dict(model="airbench", data=str(train_tree), epochs=4, batch_size=100, val_size=0, seed=1,
                evaluate_test=False, verbose=False)
    seen = []
    original = loop.stop_gradients_past_horizon

    def watch(optimizer, progress):
        original(optimizer, progress)
        bias_group = next(g for g in optimizer.param_groups if "lr_horizon" in g)
        seen.append(bias_group["params"][0].requires_grad)

    monkeypatch.setattr(loop, "stop_gradients_past_horizon", watch)
    fast = cifarlab.train(**args, out=str(tmp_path / "fast"))
    assert seen == [True] * 9 + [False] * 3  # 3 steps an epoch; the bias's horizon is 3 of 4 epochs
    assert fast.model.whiten.bias.requires_grad  # restored: the model leaves train() as it came in
    monkeypatch.setattr(loop, "stop_gradients_past_horizon", lambda optimizer, progress: None)
    full = cifarlab.train(**args, out=str(tmp_path / "full"))
    for (name, a), b in zip(fast.model.state_dict().items(), full.model.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)


def test_freeze_out_gives_each_named_block_its_own_horizon_then_stops_its_weights(train_tree, tmp_path,
                                                                                   monkeypatch):
    """model_kwargs freeze_out {block1: 0.5}: block1's filters and BN shifts learn for the first half of the
    steps (their lr schedule run over that half), then stay as they are; the other blocks learn to the end."""
    model = create_model("airbench", freeze_out={"block1": 0.5})
    groups = model.param_groups(lr=0.24, batch_size=100, weight_decay=2e-6, momentum=0.85, epochs=4)
    by_param = {id(p): g for g in groups for p in g["params"]}
    assert sorted(by_param) == sorted(id(p) for p in model.parameters() if p.requires_grad)  # each once
    assert {by_param[id(p)].get("lr_horizon") for p in model.block1.parameters() if p.requires_grad} == {0.5}
    assert all("lr_horizon" not in by_param[id(p)] for p in [*model.block2.parameters(), model.head.weight]
               if p.requires_grad)
    assert groups[0]["muon"] and "lr_horizon" not in groups[0]  # the logged lr is the rest's
    scaled = create_model("airbench", freeze_out={"block1": 0.5}, freeze_out_scaled=True).param_groups(
        lr=0.24, batch_size=100, weight_decay=2e-6, momentum=0.85, epochs=4)
    assert [g["base_lr"] / u["base_lr"] for g, u in zip(scaled, groups)] == pytest.approx([1, 1, 1, 1, 2, 2])
    import cifarlab.training.loop as loop
    original, seen = loop.stop_gradients_past_horizon, []

    def watch(optimizer, progress):  # called before each step: the weights the step starts from
        original(optimizer, progress)
        block1 = next(g for g in optimizer.param_groups if g.get("lr_horizon") == 0.5 and g["muon"])["params"][0]
        last = optimizer.param_groups[0]["params"][-1]  # block3.conv2: no horizon
        seen.append((progress, block1.detach().clone(), last.detach().clone(), block1.requires_grad))

    monkeypatch.setattr(loop, "stop_gradients_past_horizon", watch)
    frozen = cifarlab.train(model="airbench", data=str(train_tree), epochs=4, batch_size=100, val_size=0, seed=1,
                            evaluate_test=False, verbose=False, model_kwargs={"freeze_out": {"block1": 0.5}},
                            out=str(tmp_path / "run"))
    assert [needs for *_, needs in seen] == [True] * 6 + [False] * 6  # 3 steps an epoch, 2 of 4 epochs
    assert not torch.equal(seen[0][1], seen[6][1])  # block1 learned until its horizon ...
    assert all(torch.equal(seen[6][1], later[1]) for later in seen[7:])  # ... and not after it
    assert not torch.equal(seen[6][2], seen[-1][2])  # the last block learned to the end
    assert all(p.requires_grad for p in frozen.model.block1.parameters() if p.ndim == 4)  # restored


@pytest.mark.parametrize("freeze_out, problem", [({"block4": 0.5}, "no block 'block4'"),
                                                 ({"block1": 1.5}, "block1 must be a fraction"),
                                                 ({"block1": "half"}, "block1 must be a fraction"),
                                                 (["block1"], "freeze_out must map blocks to fractions")])
def test_bad_freeze_out_is_a_one_line_error(freeze_out, problem):
    with pytest.raises(CifarlabError, match=problem):
        create_model("airbench", freeze_out=freeze_out)


def test_airbench_settings_the_2025_record_retuned_come_from_model_kwargs():
    """activation, BN momentum, Muon momentum, the whitening bias's epochs and the SGD groups' per-image lrs:
    airbench's by default, the given ones otherwise; a given bias_lr or head_lr is not rescaled by --lr."""
    default = create_model("airbench")
    record = create_model("airbench", activation="silu", bn_momentum=0.5566, muon_momentum=0.655,
                          whiten_bias_epochs=0.19, bias_lr=0.0573, head_lr=0.5415)
    for model, activation, bn in ((default, nn.GELU, 0.4), (record, nn.SiLU, 1 - 0.5566)):
        assert isinstance(model.activ, activation) and isinstance(model.block3.activ, activation)
        norms = [m for m in model.modules() if isinstance(m, FrozenScaleBatchNorm)]
        assert len(norms) == 6 and all(m.momentum == pytest.approx(bn) for m in norms)

    def groups(model, lr):
        found = model.param_groups(lr=lr, batch_size=1000, weight_decay=1e-6, momentum=0.825, epochs=8)
        muon, bias, norm, head = found
        assert bias["params"] == [model.whiten.bias] and head["params"] == [model.head.weight]
        return muon, bias, norm, head

    muon, bias, norm, head = groups(default, 0.12)  # half airbench's lr: the SGD lrs follow it
    assert (muon["momentum"], bias["lr_horizon"]) == (0.6, pytest.approx(3 / 8))
    assert (bias["lr"], norm["lr"], head["lr"]) == pytest.approx((0.053 * 500, 0.053 * 500, 0.67 * 500))
    muon, bias, norm, head = groups(record, 0.205)
    assert (muon["lr"], muon["momentum"], bias["lr_horizon"]) == (0.205, 0.655, pytest.approx(0.19 / 8))
    assert (bias["lr"], norm["lr"], head["lr"]) == pytest.approx((57.3, 57.3, 541.5))
    assert head["weight_decay"] == pytest.approx(1e-6 / 0.5415)  # coupled decay per image / lr per image
    images = torch.randn(2, 3, 24, 24)
    assert record(images).shape == (2, 10)


@pytest.mark.parametrize("kwargs, problem", [
    ({"activation": "tanh"}, "no activation 'tanh' \\(choose from gelu, silu, relu\\)"),
    ({"bn_momentum": 1.0}, "bn_momentum must be a number in \\[0, 1\\), got 1.0"),
    ({"muon_momentum": True}, "muon_momentum must be a number in \\[0, 1\\), got True"),
    ({"whiten_bias_epochs": 0}, "whiten_bias_epochs must be a number in \\(0, ∞\\), got 0"),
    ({"head_lr": "0.5"}, "head_lr must be a number in \\(0, ∞\\), got '0.5'"),
    ({"bias_lr": -0.05}, "bias_lr must be a number in \\(0, ∞\\), got -0.05")])
def test_bad_airbench_settings_are_one_line_errors(kwargs, problem):
    with pytest.raises(CifarlabError, match=problem):
        create_model("airbench", **kwargs)


def test_muon_sgd_groups_match_torch_sgd_and_muon_updates_are_orthogonal():
    torch.manual_seed(0)
    a = torch.randn(5, 3, requires_grad=True)
    b = a.detach().clone().requires_grad_()
    ours = MuonSGD([{"params": [a], "weight_decay": 0.01}], lr=0.1, momentum=0.85)
    ref = torch.optim.SGD([b], lr=0.1, momentum=0.85, nesterov=True, weight_decay=0.01)
    for step in range(3):
        grad = torch.randn(5, 3, generator=torch.Generator().manual_seed(step))
        a.grad, b.grad = grad.clone(), grad.clone()
        ours.step()
        ref.step()
    torch.testing.assert_close(a, b)
    s = torch.linalg.svdvals(orthogonalize(torch.randn(64, 200)).float())
    assert s.min() > 0.3 and s.max() < 1.7  # near-orthogonal: every singular value near 1
    w = nn.Parameter(torch.randn(8, 4, 3, 3))
    opt = MuonSGD([{"params": [w], "muon": True}], lr=0.1, momentum=0.6)
    w.grad = torch.randn_like(w)
    opt.step()
    assert torch.isfinite(w).all()


def test_newton_schulz_runs_in_bf16_only_where_the_cpu_multiplies_bf16_natively(monkeypatch):
    g = torch.randn(64, 200, generator=torch.Generator().manual_seed(0))

    def by_hand(dtype):  # the iteration written out in one precision
        a, b, c = muon.NS_COEFFICIENTS
        x = g.to(dtype)
        x = x / (x.norm() + 1e-7)
        for _ in range(3):
            s = x @ x.T
            x = a * x + (b * s + c * s @ s) @ x
        return x.float()

    monkeypatch.setattr(muon, "cpu_has_fast_bf16", lambda: True)
    assert muon.newton_schulz_dtype(torch.device("cpu")) == torch.bfloat16
    assert torch.equal(orthogonalize(g), by_hand(torch.bfloat16))  # airbench's, bit for bit
    monkeypatch.setattr(muon, "cpu_has_fast_bf16", lambda: False)  # an AVX2 CPU: bf16 would be emulated
    assert muon.newton_schulz_dtype(torch.device("cpu")) == torch.float32
    fp32 = orthogonalize(g)
    assert fp32.dtype == torch.float32 and torch.equal(fp32, by_hand(torch.float32))
    assert not torch.equal(fp32, by_hand(torch.bfloat16))


class FlipInvariant(nn.Module):
    """Global average pooling then a linear layer: blind to a horizontal flip."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 4)

    def forward(self, x):
        return self.fc(x.mean((2, 3)))


def test_tta_shapes_and_flip_tta_of_a_flip_invariant_model_equals_plain_eval():
    torch.manual_seed(0)
    model, images = FlipInvariant(), random_images(10, seed=2)
    x = torch.randn(6, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    for tta in TTA_MODES:
        assert tta_logits(model, x, tta).shape == (6, 4)
        assert predict_logits(model, images, device=CPU, batch_size=4, tta=tta).shape == (10, 4)
    plain = predict_logits(model, images, device=CPU, batch_size=4)
    torch.testing.assert_close(predict_logits(model, images, device=CPU, batch_size=4, tta="flip"), plain)
    # A model that is not flip-invariant sees a different average.
    conv = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.LazyLinear(4))
    conv(x)
    assert not torch.allclose(tta_logits(conv, x, "flip"), tta_logits(conv, x, "none"))
    with pytest.raises(CifarlabError, match="unknown tta='mirror'"):
        predict_logits(model, images, device=CPU, tta="mirror")


def test_unsure_tta_spends_the_views_on_the_least_sure_fifth_of_the_batch():
    torch.manual_seed(0)
    conv = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.LazyLinear(4))
    x = torch.randn(10, 3, 8, 8).contiguous(memory_format=torch.channels_last)
    conv(x)
    calls = []

    def logits(v):
        calls.append(len(v))
        return conv(v)

    with torch.no_grad():
        out = tta_flip_translate_unsure(logits, x)
        plain, full = conv(x), tta_flip_translate(conv, x)
    k = int(np.ceil(UNSURE_SHARE * len(x)))
    assert calls == [10] + [k] * 5  # the plain view once for all, five more views for the unsure ones
    unsure = plain.softmax(1).amax(1).argsort()[:k]
    sure = torch.ones(10, dtype=torch.bool)
    sure[unsure] = False
    torch.testing.assert_close(out[unsure], full[unsure])
    torch.testing.assert_close(out[sure], plain[sure])
    assert tta_flip_translate_unsure(logits, x[:0]).shape == (0, 4)


def test_fast_recipe_one_epoch_end_to_end(train_tree, tmp_path, capsys):
    out = tmp_path / "fast"
    code = main(["train", "--recipe", "fast", "--data", str(train_tree), "--epochs", "1", "--batch-size", "100",
                 "--out", str(out), "--quiet"])
    assert code == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["model"] == "airbench" and summary["recipe"] == "fast" and summary["tta"] == "flip-translate"
    assert summary["optimizer"] == "muon" and summary["val_images"] == 0 and summary["train_images"] == 300
    assert summary["test_accuracy"] == printed["test_accuracy"] and summary["test_seconds"] > 0
    config = json.loads((out / "config.json").read_text())["config"]
    assert config["augment"] == "altflip+translate" and config["schedule"] == "linear"
    assert config["label_smoothing"] == 0.2
    # evaluate() uses the run's own TTA by default, so it reproduces the training's test accuracy.
    again = cifarlab.evaluate(out)
    assert again["tta"] == "flip-translate" and again["accuracy"] == pytest.approx(summary["test_accuracy"])
    assert cifarlab.evaluate(out, tta="none")["tta"] == "none"


def test_recipe_settings_yield_to_flags():
    cfg = resolve(TrainConfig(recipe="fast", tta="flip", augment="standard", val_size=500, epochs=3))
    assert (cfg.model, cfg.tta, cfg.augment, cfg.val_size, cfg.epochs) == ("airbench", "flip", "standard", 500, 3)
    assert cfg.batch_size == 2000 and cfg.optimizer == "muon"
    assert resolve(TrainConfig(model="resnet9")).tta == "none"  # other models' defaults are unchanged


def test_recipe_keeps_an_explicit_none_or_zero():
    """A value the user gave that equals "nothing" (--tta none, --augment none, --val-size 0) is still a choice:
    the recipe fills only what was left out, from flags, a YAML file or the API alike."""
    cfg = resolve(TrainConfig(recipe="fast", tta="none", augment="none", val_size=0))
    assert (cfg.tta, cfg.augment, cfg.val_size) == ("none", "none", 0)
    plain = resolve(TrainConfig(recipe="fast"))
    assert (plain.tta, plain.augment) == ("flip-translate", "altflip+translate")
    args = build_parser().parse_args(["train", "--recipe", "fast-progressive", "--tta", "none", "--augment", "none"])
    flagged = resolve(config_from_flags(args))
    assert (flagged.tta, flagged.augment, flagged.progressive_resize) == ("none", "none", "24:4")
    # Every setting a recipe fills (but the model, checked apart) must default to None, or the bug comes back.
    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    for name in list_recipes():
        assert all(defaults[k] is None for k in recipe_settings(name) if k not in ("model", "model_kwargs")), name
    # model_kwargs merge: the user's arguments over the recipe's, one by one
    merged = resolve(TrainConfig(recipe="fast-record", model_kwargs={"activation": "gelu"})).model_kwargs
    assert merged["activation"] == "gelu" and merged["bn_momentum"] == recipe_settings("fast-record")[
        "model_kwargs"]["bn_momentum"]


@pytest.mark.parametrize("argv, problem", [
    (["train", "--recipe", "slow"], "invalid choice: 'slow'"),
    (["train", "--recipe", "fast", "--model", "resnet20"], "--recipe fast trains the airbench model"),
    (["train", "--tta", "mirror"], "invalid choice: 'mirror'"),
    (["evaluate", "runs/x", "--tta", "mirror"], "invalid choice: 'mirror'"),
])
def test_bad_recipe_and_tta_are_one_line_errors(argv, problem, capsys):
    try:
        code = main(argv)
    except SystemExit as e:  # argparse's choices
        code = e.code
    assert code == 2
    err = capsys.readouterr().err
    assert problem in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_unknown_recipe_from_the_api():
    with pytest.raises(CifarlabError, match="unknown recipe='slow'; choose one of: fast"):
        resolve(TrainConfig(recipe="slow"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (none here)")
def test_fast_recipe_on_cuda(train_tree, tmp_path):
    result = cifarlab.train(recipe="fast", data=str(train_tree), epochs=1, batch_size=100, device="cuda",
                            out=str(tmp_path / "cuda"), verbose=False)
    assert result.summary["device"].startswith("cuda") and result.summary["test_accuracy"] is not None
    assert next(result.model.parameters()).is_cuda


def test_compile_auto_follows_the_measured_default_per_device():
    from cifarlab.rundir.device import COMPILE_BY_DEFAULT, resolve_compile

    assert resolve_compile("auto", CPU) is COMPILE_BY_DEFAULT["cpu"] is False  # measured slower on this CPU
    assert resolve_compile("auto", torch.device("cuda")) is COMPILE_BY_DEFAULT["cuda"] is False  # and on an H200
    assert resolve_compile("on", CPU) is True and resolve_compile("off", CPU) is False
    with pytest.raises(CifarlabError, match="unknown compile='fast'; choose one of: auto, on, off"):
        resolve_compile("fast", CPU)
    with pytest.raises(CifarlabError, match="unknown compile='yes'"):
        resolve(TrainConfig(compile="yes"))


@pytest.mark.parametrize("mode, compiled", [("on", True), ("auto", False)])
def test_compile_wraps_only_the_training_forward(train_tree, tmp_path, monkeypatch, mode, compiled):
    calls = []

    def fake_compile(module, **kwargs):  # the real one needs minutes of C++ compilation here
        calls.append(module)
        return module

    monkeypatch.setattr(torch, "compile", fake_compile)
    result = cifarlab.train(model="baseline", data=str(train_tree), epochs=1, val_size=0, compile=mode,
                            out=str(tmp_path / mode), verbose=False)
    assert result.summary["compile"] is compiled and len(calls) == int(compiled)
    assert json.loads((tmp_path / mode / "config.json").read_text())["config"]["compile"] == mode
    assert not hasattr(result.model, "_orig_mod")  # the saved and returned model is the plain one


@pytest.mark.slow
def test_compile_on_really_compiles_and_trains(train_tree, tmp_path):
    result = cifarlab.train(model="baseline", data=str(train_tree), epochs=1, val_size=0, compile="on",
                            out=str(tmp_path / "compiled"), verbose=False)
    assert result.summary["compile"] is True and result.summary["test_accuracy"] is not None
    assert cifarlab.evaluate(tmp_path / "compiled")["accuracy"] == pytest.approx(result.summary["test_accuracy"])


def test_bad_compile_flag_is_a_one_line_error(capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "--compile", "maybe"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'maybe'" in err and len(err.strip().splitlines()) == 1


def test_cudnn_autotuning_is_switched_on_for_cuda_runs_only(monkeypatch):
    from cifarlab.rundir.device import use_fastest_kernels

    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    use_fastest_kernels(CPU)
    assert torch.backends.cudnn.benchmark is False
    use_fastest_kernels(torch.device("cuda"))  # only sets a flag: no GPU needed to check it
    assert torch.backends.cudnn.benchmark is True


def test_timings_wait_for_a_gpu_but_not_for_the_cpu(monkeypatch):
    from cifarlab.rundir import device

    waited = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda d=None: waited.append(d))
    device.synchronize(CPU)
    assert waited == []
    device.synchronize(torch.device("cuda", 1))
    assert waited == [torch.device("cuda", 1)]

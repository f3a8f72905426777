"""Augmentation policies on tiny batches: shape, dtype, range, bounds, reproducibility; mixing losses;
the registry and specs; training with augmentation; augment-preview."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import cifarlab
from cifarlab.augment import AUGMENTS, create_augment, list_augments, parse_augment_spec, register_augment
from cifarlab.augment.color import BrightnessContrast
from cifarlab.augment.geometric import Cutout, KerasAffine, PadCropFlip
from cifarlab.augment.mix import CutMix, Mixup, mixed_cross_entropy, soft_targets
from cifarlab.cli import main
from cifarlab.errors import CifarlabError

IMAGE_POLICIES = [n for n in AUGMENTS.names() if AUGMENTS.entry(n).meta["kind"] == "image"]
MIXERS = [n for n in AUGMENTS.names() if AUGMENTS.entry(n).meta["kind"] == "mix"]


def batch(n: int = 48, low: int = 0, high: int = 256, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(low, high, (n, 3, 32, 32), generator=g, dtype=torch.uint8)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_registry_lists_every_policy():
    assert {"none", "keras", "standard", "cutout", "autoaugment", "randaugment", "trivialaugment", "mixup",
            "cutmix"} <= set(list_augments())
    assert list_augments()[0] == "none"


@pytest.mark.parametrize("name", IMAGE_POLICIES)
def test_image_policies_keep_shape_dtype_and_are_reproducible(name):
    x = batch(64)
    aug = create_augment(name)
    rng_before = torch.get_rng_state()
    a, b, c = aug(x, gen(1)), aug(x, gen(1)), aug(x, gen(2))
    assert torch.equal(torch.get_rng_state(), rng_before)  # only the generator is used
    assert a.shape == x.shape and a.dtype == torch.uint8 and a.device == x.device
    assert torch.equal(a, b)
    if name != "none":
        assert not torch.equal(a, c) and not torch.equal(a, x)
    else:
        assert torch.equal(a, x)


@pytest.mark.parametrize("name", ["keras", "standard"])
def test_geometric_policies_stay_within_the_input_value_range(name):
    x = batch(32, 40, 200)
    out = create_augment(name)(x, gen(0))
    assert out.min() >= 40 and out.max() < 200


def reflect_crop(img: torch.Tensor, dy: int, dx: int, pad: int = 4) -> torch.Tensor:
    padded = F.pad(img[None].float(), (pad, pad, pad, pad), mode="reflect")[0]
    return padded[:, pad + dy:pad + dy + 32, pad + dx:pad + dx + 32].to(torch.uint8)


def test_standard_is_a_reflect_padded_crop_within_4_pixels_maybe_flipped():
    x = batch(24)
    out = PadCropFlip()(x, gen(3))
    flips = 0
    for img, res in zip(x, out):
        matches = [(dy, dx, f) for dy in range(-4, 5) for dx in range(-4, 5) for f in (False, True)
                   if torch.equal(res.flip(-1) if f else res, reflect_crop(img, dy, dx))]
        assert len(matches) == 1
        flips += matches[0][2]
    assert 0 < flips < len(x)  # both flipped and unflipped images


def test_keras_flip_only_is_exact_and_shift_stays_within_10_percent():
    x = batch(16)
    out = KerasAffine(rotation=0, shift=0)(x, gen(0))
    flipped = [torch.equal(o, i.flip(-1)) for o, i in zip(out, x)]
    assert all(f or torch.equal(o, i) for f, o, i in zip(flipped, out, x)) and 0 < sum(flipped) < len(x)
    # A bright 4x4 block at the centre: after rotation (about the centre) and a shift of at most 3.2
    # pixels each way, its centre of mass stays within 3.2·√2 pixels of the image centre.
    img = torch.zeros(64, 3, 32, 32, dtype=torch.uint8)
    img[:, :, 14:18, 14:18] = 255
    res = create_augment("keras")(img, gen(5)).float()[:, 0]
    grid = torch.arange(32).float() - 15.5
    mass = res.sum((1, 2))
    cy, cx = (res.sum(2) * grid).sum(1) / mass, (res.sum(1) * grid).sum(1) / mass
    assert (cy.abs() <= 3.2 + 0.01).all() and (cx.abs() <= 3.2 + 0.01).all()
    assert cx.abs().max() > 1  # it does shift


def test_cutout_masks_one_square_of_at_most_16x16_with_the_mean_colour():
    x = batch(32, 0, 100)  # no pixel can equal the fill colour (125, 123, 114)
    out = Cutout()(x, gen(0))
    fill = torch.tensor([125, 123, 114], dtype=torch.uint8).view(3, 1, 1)
    for res in out:
        mask = (res == fill).all(0)
        rows, cols = mask.any(1).nonzero().flatten(), mask.any(0).nonzero().flatten()
        h, w = len(rows), len(cols)
        assert 8 <= h <= 16 and 8 <= w <= 16 and mask.sum() == h * w  # one rectangle, clipped at the edge
        assert rows.max() - rows.min() + 1 == h


def test_color_is_one_brightness_shift_and_contrast_scale_per_image_in_normalized_units():
    from cifarlab.data.types import CIFAR10_MEAN, CIFAR10_STD

    x = batch(64, 60, 190)  # away from 0 and 255, so nothing is clipped
    out = BrightnessContrast(brightness=0.14, contrast=0.13)(x, gen(3))
    mean, std = torch.tensor(CIFAR10_MEAN).view(1, 3, 1, 1), torch.tensor(CIFAR10_STD).view(1, 3, 1, 1)
    xn, yn = (x / 255 - mean) / std, (out / 255 - mean) / std
    # Fit yn = s·xn + s·b per image (all channels together): one (s, b) per image within the ranges.
    design = torch.stack([xn.flatten(1), torch.ones_like(xn.flatten(1))], -1).double()
    coef = torch.linalg.lstsq(design, yn.flatten(1).unsqueeze(-1).double()).solution.squeeze(-1)
    scale, shift = coef[:, 0], coef[:, 1] / coef[:, 0]
    assert scale.min() >= 0.87 - 0.01 and scale.max() <= 1.13 + 0.01 and scale.std() > 0.03
    assert shift.abs().max() <= 0.14 + 0.02 and shift.std() > 0.03
    residual = (yn - (scale.view(-1, 1, 1, 1) * (xn + shift.view(-1, 1, 1, 1)))).abs().max()
    assert residual < 2 * 0.5 / 255 / 0.24  # only the rounding to uint8 (and the fit to it) is left
    assert torch.equal(BrightnessContrast(0, 0)(x, gen(3)), x)
    assert BrightnessContrast()(torch.full((4, 3, 2, 2), 255, dtype=torch.uint8), gen(0)).max() == 255


def test_torchvision_policies_work_in_chunks_and_leave_the_global_rng_alone():
    aug = create_augment("autoaugment")
    assert aug.transforms[0].chunk == 16
    x = batch(64)
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    aug(x, gen(0))
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize("mixer", [Mixup(), CutMix(), Mixup(alpha=0.4)])
def test_mixed_labels_sum_to_one_and_the_loss_is_the_soft_target_loss(mixer):
    x = torch.randn(16, 3, 32, 32)
    y = torch.arange(16) % 5
    xm, y_a, y_b, lam = mixer(x, y, gen(0))
    again = mixer(x, y, gen(0))
    assert torch.equal(xm, again[0]) and again[3] == lam  # reproducible
    assert 0 <= lam <= 1 and xm.shape == x.shape and torch.equal(y_a, y)
    assert sorted(y_b.tolist()) == sorted(y.tolist())  # partners are a permutation of the batch
    soft = soft_targets(y_a, y_b, lam, 5)
    assert torch.allclose(soft.sum(1), torch.ones(16))
    logits = torch.randn(16, 5)
    for smoothing in (0.0, 0.1):
        assert torch.allclose(mixed_cross_entropy(logits, y_a, y_b, lam, smoothing),
                              F.cross_entropy(logits, soft, label_smoothing=smoothing), atol=1e-6)


def test_cutmix_lam_is_the_share_of_pixels_kept():
    x = torch.randn(8, 3, 32, 32)
    xm, _, y_b, lam = CutMix()(x, torch.arange(8), gen(4))
    kept = (xm == x).all(1).float().mean().item()
    assert kept == pytest.approx(lam, abs=1e-6)


def test_specs_combine_and_bad_specs_fail_with_the_choices():
    aug = create_augment("standard+cutout+mixup")
    assert len(aug.transforms) == 2 and len(aug.mixers) == 1
    x, y = torch.randn(4, 3, 32, 32), torch.arange(4)
    out = create_augment("standard").mix(x, y, gen(0))
    assert out[0] is x and out[3] == 1.0
    assert parse_augment_spec("none") == [] and parse_augment_spec(" Standard + cutout ") == ["standard", "cutout"]
    for bad, match in (("warp", "unknown augment='warp'.*keras"), ("none+standard", "stands alone"),
                       ("cutout+cutout", "twice"), ("", "needs a policy")):
        with pytest.raises(CifarlabError, match=match):
            create_augment(bad)


def test_cli_rejects_an_unknown_policy(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--augment", "warp"])
    assert "choose one of: none, keras" in capsys.readouterr().err


def test_only_training_batches_are_augmented_and_mixing_trains(train_tree, tmp_path, request):
    seen = []

    def counting():
        def augment(x, generator):
            seen.append(len(x))
            return x
        return augment

    register_augment("counting", counting)
    request.addfinalizer(lambda: AUGMENTS.unregister("counting"))
    result = cifarlab.train(model="baseline", data=str(train_tree), epochs=1, train_size=96, val_size=30,
                            batch_size=32, augment="counting+cutmix", precision="fp32", verbose=False,
                            out=str(tmp_path / "run"))
    assert sum(seen) == 96 and seen == [32, 32, 32]  # not the 30 validation or 60 test images
    config = json.loads((tmp_path / "run" / "config.json").read_text())["config"]
    assert config["augment"] == "counting+cutmix" and result.history[0]["augment"] == "counting+cutmix"
    assert np.isfinite(result.history[0]["train_loss"])


def test_resume_may_change_the_augmentation(train_tree, tmp_path):
    kw = dict(model="baseline", data=str(train_tree), train_size=64, val_size=30, batch_size=32, precision="fp32",
              verbose=False)
    cifarlab.train(**kw, epochs=1, out=str(tmp_path / "run"))
    resumed = cifarlab.train(resume=tmp_path / "run", epochs=2, augment="keras", verbose=False)
    assert [h["augment"] for h in resumed.history] == ["none", "keras"]
    assert json.loads((tmp_path / "run" / "config.json").read_text())["config"]["augment"] == "keras"
    with pytest.raises(CifarlabError, match="only epochs may change, plus augment"):
        cifarlab.train(resume=tmp_path / "run", epochs=3, lr=0.1, verbose=False)


def test_augment_preview_writes_a_png(tiny_tree, tmp_path, capsys):
    out = tmp_path / "grid.png"
    assert main(["augment-preview", "--augment", "standard+cutout", "--data", str(tiny_tree), "--out", str(out),
                 "--n", "3", "--views", "2", "--scale", "2"]) == 0
    with Image.open(out) as img:
        assert img.format == "PNG" and img.width > 3 * 64 and img.height > 3 * 64
    assert main(["augment-preview", "--augment", "mixup", "--data", str(tiny_tree), "--out",
                 str(tmp_path / "mix.png"), "--n", "2", "--views", "1"]) == 0
    assert str(out) in capsys.readouterr().out


def test_register_augment_refuses_duplicates():
    with pytest.raises(ValueError):
        register_augment("keras", lambda: None)


def test_augment_preview_shows_every_class_in_turn():
    from cifarlab.augment.preview import _one_per_class

    labels = np.repeat(np.arange(4), 5)
    pick = _one_per_class(labels, 6, seed=0)
    assert [int(labels[i]) for i in pick] == [0, 1, 2, 3, 0, 1]
    assert len(set(pick.tolist())) == 6
    assert _one_per_class(labels, 6, seed=0).tolist() == pick.tolist()  # seeded
    assert len(_one_per_class(labels, 50, seed=0)) == 20  # never more than there are

"""One config pipeline: each setting's range and choices are declared once on its TrainConfig field and
refused the same way from the Python API, a --config file and the command line; resolve() is pure."""
from __future__ import annotations

import dataclasses

import pytest

from cifarlab.cli import main
from cifarlab.config import TrainConfig, field_range, load_yaml_config, setting_flag, with_overrides
from cifarlab.errors import CifarlabError
from cifarlab.training.resolve import resolve


def _out_of_range(name: str):
    r = field_range(name)
    hint = dataclasses.fields(TrainConfig)[[f.name for f in dataclasses.fields(TrainConfig)].index(name)].type
    whole = "int" in str(hint)
    if r.gt is not None:
        return int(r.gt) if whole else r.gt
    if r.ge is not None:
        return int(r.ge) - 1 if whole else r.ge - 0.5
    if r.lt is not None:
        return int(r.lt) if whole else r.lt
    return int(r.le) + 1 if whole else r.le + 0.5


RANGED = [f.name for f in dataclasses.fields(TrainConfig) if field_range(f.name) is not None]


def test_most_numeric_settings_declare_a_range():
    assert {"epochs", "lr", "momentum", "input_size", "backbone_lr_scale", "label_fraction", "seed"} <= set(RANGED)


@pytest.mark.parametrize("name", RANGED)
def test_a_range_declared_on_the_field_is_refused_alike_everywhere(name, tmp_path, capsys):
    bad = _out_of_range(name)
    with pytest.raises(CifarlabError, match=f"{name} must be"):
        resolve(with_overrides(None, {name: bad}))
    config = tmp_path / "c.yaml"
    config.write_text(f"{name}: {bad}\n")
    with pytest.raises(CifarlabError, match=f"{config}: {name} must be"):
        load_yaml_config(config)
    flag = setting_flag(name)
    try:
        code = main(["train", flag, str(bad), "--out", str(tmp_path / "run")])
    except SystemExit as e:  # a flag argparse checks itself (the seed, early for --resume)
        code = e.code
    assert code == 2
    assert f"{flag} must be" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("name, value", [("freeze", "everything"), ("pretrained", "imagenet21k"),
                                         ("optimizer", "adagrad"), ("tta", "mirror")])
def test_fixed_choices_are_checked_from_the_field(name, value):
    with pytest.raises(CifarlabError, match=f"unknown (--)?{name}[ =]'{value}'"):
        resolve(with_overrides(None, {name: value, "model": "tv:resnet18"}))


def test_resolve_is_pure():
    cfg = TrainConfig(classes="cat, dog", recipe="fast")
    before = dataclasses.asdict(cfg)
    resolved = resolve(cfg)
    assert dataclasses.asdict(cfg) == before
    assert resolved.classes == ["cat", "dog"] and resolved.model == "airbench" and resolved.tta == "flip-translate"


def test_resolve_fills_each_stage_in_order():
    """user values win over the recipe, the recipe over the model's defaults."""
    cfg = resolve(TrainConfig(recipe="fast", tta="none", epochs=3))
    assert (cfg.tta, cfg.epochs, cfg.augment) == ("none", 3, "altflip+translate")
    assert resolve(TrainConfig(model="baseline")).optimizer == "adam"


def test_with_overrides_refuses_unknown_names_and_keeps_what_is_not_given():
    base = TrainConfig(lr=0.5)
    assert with_overrides(base, {"lr": None, "epochs": 2}).lr == 0.5
    with pytest.raises(CifarlabError, match="unknown setting"):
        with_overrides(base, {"learning_rate": 0.1})

"""The command line's --help and the flags generated from TrainConfig."""
from __future__ import annotations

import argparse
import dataclasses
import subprocess
import sys

import pytest

from cifarlab._flags import config_from_flags, flag_fields
from cifarlab.cli import build_parser
from cifarlab.config import TrainConfig


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices


@pytest.mark.parametrize("command", sorted(_subcommands()))
def test_every_subcommand_has_a_description_an_example_and_helped_flags(command):
    parser = _subcommands()[command]
    assert parser.description and len(parser.description) > 20, command
    assert f"cifarlab {command}" in (parser.epilog or ""), command
    text = parser.format_help()
    assert "example:" in text and parser.epilog.splitlines()[1].strip() in text
    for action in parser._actions:
        if action.dest == "help":
            continue
        assert action.help and action.help.strip(), (command, action.dest)
        if not action.option_strings:
            assert action.metavar != "run_dir" and (action.dest != "run_dir" or action.metavar == "RUN_DIR")
            continue
        shown = parser.formatter_class("x")._get_help_string(action) % {**vars(action), "prog": "x"}
        if action.default is not None and not (action.nargs == 0 and action.default is False):
            assert "default" in shown, (command, action.option_strings, shown)


def test_the_flags_named_in_issue_19_show_their_defaults():
    helps = {name: p.format_help() for name, p in _subcommands().items()}
    for command, flag, default in [("train", "--epochs", "the model's recipe"), ("train", "--optimizer", "recipe"),
                                   ("train", "--schedule", "recipe"), ("train", "--seed", "default: 0"),
                                   ("evaluate", "--split", "default: test"), ("evaluate", "--json", "as JSON"),
                                   ("predict", "--top-k", "default: 3"), ("serve", "--port", "default: 8000")]:
        block = helps[command].split("\n  " + flag, 1)[1].split("\n  -", 1)[0]
        assert default in " ".join(block.split()), (command, flag, block)


def test_commands_show_only_the_settings_meaningful_to_them():
    flags = {name: {a.dest for a in p._actions} for name, p in _subcommands().items()}
    every = set(flag_fields())
    assert every <= flags["train"] and every <= flags["run"]
    for command, absent in [("lr-find", {"epochs", "lr", "schedule", "ema", "tta", "early_stopping", "tensorboard"}),
                            ("probe", {"epochs", "lr", "optimizer", "augment", "ema", "schedule", "grad_accum"}),
                            ("tune", {"tta", "tensorboard", "sync_bn"}), ("ablate", {"seed", "sync_bn"}),
                            ("compare", {"model", "seed", "tensorboard"})]:
        assert not flags[command] & absent, (command, flags[command] & absent)
    assert "model_kwargs" not in every and "evaluate_test" not in every


def test_one_field_is_one_flag_and_parsed_flags_make_the_config():
    declared = {f.name: f for f in dataclasses.fields(TrainConfig)}
    for name in flag_fields():
        assert declared[name].metadata["help"] and declared[name].metadata["group"], name
    args = _subcommands()["train"].parse_args(["--model", "resnet20", "--lr", "0.05", "--no-nesterov",
                                               "--classes", "cat,dog", "--cifar-stem", "--augment", "standard"])
    cfg = config_from_flags(args)
    assert (cfg.model, cfg.lr, cfg.nesterov, cfg.classes, cfg.cifar_stem, cfg.augment) == \
        ("resnet20", 0.05, False, ["cat", "dog"], True, "standard")
    assert cfg.epochs is None and cfg.seed == 0  # flags not given keep the field's default


def test_registry_choices_come_from_the_registries():
    from cifarlab.attribution.methods import list_explainers
    from cifarlab.recipes import list_recipes

    train = {a.dest: a for a in _subcommands()["train"]._actions}
    assert list(train["recipe"].choices) == list_recipes()
    explain = {a.dest: a for a in _subcommands()["explain"]._actions}
    assert list(explain["method"].choices) == [*list_explainers(), "all"]


def test_help_does_not_import_torch():
    code = ("import sys; from cifarlab.cli import main\ntry: main(['train', '--help'])\nexcept SystemExit: pass\n"
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)

"""The one Registry type behind every named choice."""
from __future__ import annotations

import pytest

from cifarlab.choices import OPTIMIZERS, SCHEDULES, TTA
from cifarlab.errors import CifarlabError, cli_messages, python_words
from cifarlab.registry import Registry
from cifarlab.training.resolve import resolve


def test_register_by_decorator_by_name_and_lazily():
    reg = Registry("widget", flag="--widget", package="cifarlab")

    @reg.register
    def first():
        """The first widget."""
        return 1

    @reg.register(name="second", description="number two", colour="red")
    def make_second():
        return 2

    reg.register("lazy", "cifarlab.errors:CifarlabError", description="imported on first use")
    assert reg.names() == ["first", "second", "lazy"]
    assert reg.create("first") == 1 and reg.create("second") == 2
    assert reg.entry("first").description == "The first widget."
    assert reg.entry("second").meta == {"colour": "red"}
    assert reg.get("lazy") is CifarlabError
    assert "first" in reg and "nosuch" not in reg and 3 not in reg
    assert reg.describe() == {"first": "The first widget.", "second": "number two", "lazy": "imported on first use"}
    assert reg.names("s*") == ["second"]
    assert len(reg) == 3 and list(reg) == reg.names() == [e.name for e in reg.entries()]
    assert reg.unregister("lazy").target == "cifarlab.errors:CifarlabError" and reg.names() == ["first", "second"]


def test_relative_targets_resolve_against_the_package():
    reg = Registry("error", package="cifarlab")
    reg.register("data", ".errors:DataError")
    from cifarlab.errors import DataError

    assert reg.get("data") is DataError


def test_unknown_names_fail_with_the_choices_and_duplicates_are_refused():
    reg = Registry("schedule", flag="--schedule")
    reg.register("cosine", lambda: "c")
    reg.register("linear", lambda: "l")
    with pytest.raises(CifarlabError, match=r"unknown schedule='step'; choose one of: cosine, linear$"):
        reg.get("step")
    with pytest.raises(ValueError, match="already registered"):
        reg.register("cosine", lambda: "again")
    with pytest.raises(ValueError, match="not a valid name"):
        reg.register("a:b", lambda: None)


def test_prefixes_resolve_names_they_do_not_list():
    reg = Registry("model", flag="--model")
    reg.register("baseline", lambda num_classes=10: ("baseline", num_classes))
    reg.register_prefix("tv", lambda name, num_classes=10: ("tv", name, num_classes), recipe="sgd")
    assert reg.names() == ["baseline"] and reg.prefixes() == ["tv"]
    assert "tv:resnet18" in reg and "tv:" not in reg and "hub:x" not in reg
    assert reg.create("tv:resnet18", num_classes=3) == ("tv", "resnet18", 3)
    assert reg.entry("tv:resnet18").meta == {"recipe": "sgd"}
    with pytest.raises(CifarlabError, match=r"\(or tv:NAME\)"):
        reg.entry("hub:x")


def test_argparse_takes_a_registry_as_its_choices(capsys):
    import argparse

    reg = Registry("schedule", flag="--schedule")
    reg.register("cosine", lambda: "c")
    parser = argparse.ArgumentParser()
    parser.add_argument("--schedule", choices=reg)
    assert parser.parse_args(["--schedule", "cosine"]).schedule == "cosine"
    with pytest.raises(SystemExit):
        parser.parse_args(["--schedule", "step"])
    err = capsys.readouterr().err
    assert "invalid choice" in err and "cosine" in err


def _every_registry() -> dict:
    from cifarlab.analysis.corruptions import CORRUPTIONS
    from cifarlab.analysis_choices import LABEL_CHECK_MODELS
    from cifarlab.attribution.methods import EXPLAINERS
    from cifarlab.augment import AUGMENTS
    from cifarlab.choices import OPTIMIZERS, SCHEDULES, TTA
    from cifarlab.models import MODELS
    from cifarlab.recipes import RECIPES

    return {"MODELS": MODELS, "AUGMENTS": AUGMENTS, "EXPLAINERS": EXPLAINERS, "CORRUPTIONS": CORRUPTIONS,
            "RECIPES": RECIPES, "OPTIMIZERS": OPTIMIZERS, "SCHEDULES": SCHEDULES, "TTA": TTA,
            "LABEL_CHECK_MODELS": LABEL_CHECK_MODELS}


@pytest.mark.parametrize("name", list(_every_registry()))
def test_every_registry_fails_an_unknown_name_in_one_line_of_one_shape(name):
    reg = _every_registry()[name]
    assert isinstance(reg, Registry) and len(reg) > 0, name
    with pytest.raises(CifarlabError) as caught:
        reg.get("no-such-thing")
    with cli_messages():  # as the command line prints it
        message = str(caught.value)
    assert "\n" not in message
    named = reg.flag or reg.kind  # the flag where the command line has one
    assert message.startswith(f"unknown {named} 'no-such-thing'; choose one of: {', '.join(reg.names())}")
    assert str(caught.value) == python_words(message)  # called from Python: model='no-such-thing'


@pytest.mark.parametrize("name", list(_every_registry()))
def test_every_entry_resolves_to_an_object(name):
    """A lazy "module:attribute" target that names nothing fails here, not in a user's run."""
    reg = _every_registry()[name]
    for entry in reg.entries():
        assert entry.load() is not None, f"{name}: {entry.name}"


def test_the_registries_the_cli_lists_import_no_torch():
    import subprocess
    import sys

    code = ("import sys; import cifarlab.cli, cifarlab.choices, cifarlab.recipes, cifarlab.augment, "
            "cifarlab.attribution.methods, cifarlab.config, cifarlab.pretrained.options; "
            "from cifarlab.choices import OPTIMIZERS, SCHEDULES, TTA; "
            "from cifarlab.analysis_choices import LABEL_CHECK_MODELS; "
            "from cifarlab.recipes import RECIPES; from cifarlab.augment import AUGMENTS; "
            "from cifarlab.attribution.methods import EXPLAINERS; "
            "assert all(len(r) for r in (OPTIMIZERS, SCHEDULES, TTA, LABEL_CHECK_MODELS, RECIPES, AUGMENTS, "
            "EXPLAINERS)); "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_the_config_and_the_command_line_take_a_schedule_registered_later(request):
    from cifarlab.cli import build_parser
    from cifarlab.config import TrainConfig
    from cifarlab.training.optim import lr_factor

    SCHEDULES.register("sqrt", lambda p: (1 - p) ** 0.5)
    request.addfinalizer(lambda: SCHEDULES.unregister("sqrt"))
    assert resolve(TrainConfig(schedule="sqrt")).schedule == "sqrt"
    assert lr_factor(0.75, "sqrt") == pytest.approx(0.5)
    assert build_parser().parse_args(["train", "--schedule", "sqrt"]).schedule == "sqrt"
    with pytest.raises(CifarlabError, match=r"unknown schedule='warm'; choose one of: .*linear, sqrt$"):
        resolve(TrainConfig(schedule="warm"))


# --- the training choices (cifarlab.choices): every registered one works --------------------------------

@pytest.mark.parametrize("schedule", SCHEDULES.names())
def test_every_schedule_is_a_factor_in_0_1_that_ends_below_its_peak(schedule):
    from cifarlab.training.optim import lr_factor

    factors = [lr_factor(i / 100, schedule) for i in range(101)]
    assert all(0.0 <= f <= 1.0 for f in factors) and max(factors) == pytest.approx(1.0, abs=0.02)
    assert factors[-1] <= factors[0] or schedule == "onecycle"
    warm = [lr_factor(p, schedule, warmup=0.1) for p in (0.0, 0.05, 0.1)]
    assert warm[0] == pytest.approx(1e-3) and warm[1] == pytest.approx(0.5) and warm[2] == lr_factor(0, schedule)


def test_schedule_values():
    from cifarlab.training.optim import lr_factor

    assert [lr_factor(p, "step") for p in (0.4, 0.5, 0.8)] == pytest.approx([1.0, 0.1, 0.01])
    assert lr_factor(0.5, "cosine") == pytest.approx(0.5) and lr_factor(0.3, "linear") == pytest.approx(0.7)
    assert lr_factor(0.25, "onecycle") == pytest.approx(1.0) and lr_factor(0.625, "onecycle") == pytest.approx(0.5)
    assert lr_factor(0.9, "constant") == 1.0
    with pytest.raises(CifarlabError, match="unknown schedule='warm'; choose one of: constant, cosine"):
        lr_factor(0.5, "warm")


@pytest.mark.parametrize("optimizer", OPTIMIZERS.names())
def test_every_optimizer_builds_and_steps(optimizer):
    import torch

    from cifarlab.config import TrainConfig
    from cifarlab.training.optim import build_optimizer

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten(), torch.nn.Linear(4 * 6 * 6, 2))
    opt = build_optimizer(net, resolve(TrainConfig(model="baseline", optimizer=optimizer)))
    assert all("base_lr" in g for g in opt.param_groups)
    before = [p.detach().clone() for p in net.parameters()]
    net(torch.randn(2, 3, 8, 8)).sum().backward()
    opt.step()
    assert all(not torch.equal(a, p) for a, p in zip(before, net.parameters()))


@pytest.mark.parametrize("tta", TTA.names())
def test_every_tta_mode_gives_one_logit_row_per_image(tta):
    import torch

    from cifarlab.rundir.inference import tta_logits

    net = torch.nn.Sequential(torch.nn.Conv2d(3, 2, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
    x = torch.randn(3, 3, 8, 8)
    out = tta_logits(net, x, tta)
    assert out.shape == (3, 2) and out.dtype == torch.float32
    if tta == "none":
        assert torch.equal(out, net(x))

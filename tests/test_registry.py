"""The one Registry type behind every named choice."""
from __future__ import annotations

import pytest

from cifarlab.errors import CifarlabError
from cifarlab.registry import Registry


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
    assert reg.describe()[1] == ("second", "number two")
    assert reg.names("s*") == ["second"]
    assert len(reg) == 3 and [e.name for e in reg] == reg.names()


def test_relative_targets_resolve_against_the_package():
    reg = Registry("error", package="cifarlab")
    reg.register("data", ".errors:DataError")
    from cifarlab.errors import DataError

    assert reg.get("data") is DataError


def test_unknown_names_fail_with_the_choices_and_duplicates_are_refused():
    reg = Registry("schedule", flag="--schedule")
    reg.register("cosine", lambda: "c")
    reg.register("linear", lambda: "l")
    with pytest.raises(CifarlabError, match=r"unknown --schedule 'step'; choose one of: cosine, linear$"):
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

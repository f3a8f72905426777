"""The command line generated from TrainConfig: each field's flag (help, group, choices, range, metavar)
comes from its declaration in config.py, so adding a setting is one field. Also the flag types and the
flag groups every command shares (RUN_DIR, --device, --precision, --json, threads). No torch import:
`cifarlab --help` stays fast."""
from __future__ import annotations

import argparse
import dataclasses
import math
import types
import typing
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from ._threads import WAIT_POLICIES, parse_threads
from .augment import list_augments, parse_augment_spec
from .config import (
    FLAG_GROUPS,
    PRECISIONS,
    RECIPE_DEFAULT,
    RECIPE_FIELDS,
    TTA_MODES,
    Range,
    TrainConfig,
    field_range,
    load_yaml_config,
    setting_flag,
)
from .errors import CifarlabError, cli_messages, did_you_mean
from .recipes import list_recipes, recipe_settings

EXIT_USER_ERROR = 2
# Choices that live in a registry, named by a field's `choices` (config.py cannot import the registries).
_REGISTRY_CHOICES: dict[str, Callable[[], Iterable[str]]] = {
    "recipes": list_recipes, "augments": list_augments}


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line instead of argparse's usage block
        if message.startswith("argument ") and ": must be " in message:  # a range (num): as TrainConfig says it
            message = message.removeprefix("argument ").replace(": must be ", " must be ", 1)
        self.exit(EXIT_USER_ERROR, f"{self.prog}: error: {message} (see {self.prog} --help)\n")

    def _check_value(self, action: argparse.Action, value: Any) -> None:
        """argparse's check of a choice (a subcommand, --optimizer, ...), naming the closest one to a typo
        (what Python 3.12's suggest_on_error does)."""
        if action.choices is not None and value not in action.choices:
            choices = [str(c) for c in action.choices]
            raise argparse.ArgumentError(action, f"invalid choice: {value!r}{did_you_mean(value, choices)} "
                                                 f"(choose from {', '.join(choices)})")

    def parse_args(self, args: Sequence[str] | None = None,  # type: ignore[override]
                   namespace: argparse.Namespace | None = None) -> argparse.Namespace:
        """Unknown flags are reported by the subcommand that got them, with the closest flag it has."""
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            owner = self._subcommand_parser(parsed)
            flags = [o[2:] for a in owner._actions for o in a.option_strings if o.startswith("--")]
            hint = next((h for h in (did_you_mean(x[2:].split("=")[0], flags, "--") for x in extras
                                     if x.startswith("--")) if h), "")
            owner.error(f"unrecognized arguments: {' '.join(extras)}{hint}")
        return parsed

    def _subcommand_parser(self, parsed: argparse.Namespace) -> argparse.ArgumentParser:
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction):
                return action.choices.get(getattr(parsed, action.dest, None) or "", self)
        return self


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions and examples as written; every default shown (unless the help already says it)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if "default" in text or default in (None, argparse.SUPPRESS) or (action.nargs == 0 and default is False):
            return text
        shown = ",".join(map(str, default)) if isinstance(default, list) else "%(default)s"
        return f"{text} (default: {shown})"


# --- flag types -------------------------------------------------------------------------------------------------

def num(kind: type, **bounds: float) -> Callable[[str], float]:
    """An argparse type: an int or a finite float within bounds (config.Range: gt, ge, lt, le)."""
    limits = Range(**bounds)

    def parse(text: str) -> float:
        value = kind(text)  # a ValueError: argparse's own "invalid int value" message
        if not math.isfinite(value) or value not in limits:
            raise argparse.ArgumentTypeError(f"must be {limits}, got {text}")
        return value
    parse.__name__ = kind.__name__
    return parse


SEED = num(int, **dataclasses.asdict(field_range("seed")))  # numpy's 32-bit seeds, as TrainConfig.seed


def names(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def seeds(flag: str) -> Callable[[str], list[int]]:
    def parse(text: str) -> list[int]:
        try:
            values = [SEED(t) for t in names(text)]
        except (ValueError, argparse.ArgumentTypeError):
            values = []
        if not values:
            raise argparse.ArgumentTypeError(f"{flag} takes comma-separated integers {field_range('seed')}, got "
                                             f"{text!r}")
        return values
    return parse


def checked_by(check: Callable[[str], Any], prefix: str) -> Callable[[str], str]:
    """An argparse type from a check that raises CifarlabError: the text itself when it passes, else the
    check's message without `prefix` (argparse names the flag itself)."""
    def parse(text: str) -> str:
        try:
            check(text)
        except CifarlabError as e:
            with cli_messages():  # a flag's value: the message names the flag
                raise argparse.ArgumentTypeError(str(e).removeprefix(prefix)) from None
        return text
    return parse


augment_spec = checked_by(parse_augment_spec, "unknown --augment ")


def at_least_one(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"takes a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


_threads = checked_by(parse_threads, "--threads ")


# --- TrainConfig fields as flags --------------------------------------------------------------------------------

def flag_fields(*excluded: str) -> list[str]:
    """The TrainConfig fields that have a flag, in declaration order, less `excluded`."""
    return [f.name for f in dataclasses.fields(TrainConfig) if f.metadata.get("flag", True)
            and f.name not in excluded]


def add_config_flags(p: argparse.ArgumentParser, fields: Iterable[str], **overrides: dict[str, Any]) -> None:
    """A flag for each named TrainConfig field, grouped as declared, plus --config FILE. Every flag defaults to
    None ("not given"), so a --config file's value stays unless the flag is given; the field's own default
    is shown in the help. `overrides`: argparse arguments per field (required, help, metavar)."""
    declared = {f.name: f for f in dataclasses.fields(TrainConfig)}
    hints = typing.get_type_hints(TrainConfig)
    groups = {key: p.add_argument_group(title) for key, title in FLAG_GROUPS.items()}
    for name in fields:
        f = declared[name]
        groups[f.metadata["group"]].add_argument(setting_flag(name), **{**_flag_kwargs(f, hints[name]),
                                                                       **overrides.get(name, {})})
    groups["execution"].add_argument("--config", metavar="FILE", help="YAML file of settings; flags override it")


def _flag_kwargs(f: dataclasses.Field, hint: Any) -> dict[str, Any]:
    meta = f.metadata
    kind = next(t for t in (typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType)
                            else (hint,)) if t is not type(None))
    kind = typing.get_origin(kind) or kind
    text = meta["help"]
    kwargs: dict[str, Any] = {"default": None}
    choices = meta.get("choices")
    if isinstance(choices, str):  # a registry
        names_ = list(_REGISTRY_CHOICES[choices]())
        if choices == "augments":  # a spec: parts joined with +
            kwargs["type"] = augment_spec
            text += f"; parts: {', '.join(names_)}"
        else:
            kwargs["choices"] = names_
    elif choices:
        kwargs["choices"] = choices
    if kind is bool:
        kwargs["action"] = "store_true" if f.default is False else argparse.BooleanOptionalAction
    elif kind in (int, float):  # ranges: checked by TrainConfig with the field's hint; the seed early (--resume)
        kwargs["type"] = SEED if f.name == "seed" else kind
    elif kind is list:
        kwargs["type"] = names
    if meta.get("metavar") and kind is not bool:
        kwargs["metavar"] = meta["metavar"]
    if f.name in RECIPE_FIELDS:
        text += f" (default: {RECIPE_DEFAULT})"
    elif not any(f.default is v for v in (None, False, dataclasses.MISSING)) and "default" not in text:
        text += f" (default: {str(f.default).lower() if isinstance(f.default, bool) else f.default})"
    kwargs["help"] = text.replace("%", "%%")
    return kwargs


def config_values(args: argparse.Namespace) -> dict[str, Any]:
    """The settings of a --config file (if any) with the given flags on top, checked against the models."""
    values = load_yaml_config(args.config) if getattr(args, "config", None) else {}
    if values.get("model_kwargs"):  # against the file's model, naming the file; a --model flag: in resolve()
        from .training.resolve import check_model_builds, check_model_kwargs

        model = _model_of(values, args)
        try:
            check_model_kwargs(model, values["model_kwargs"])
            check_model_builds(model, values["model_kwargs"])  # before the data is read
        except CifarlabError as e:
            raise CifarlabError(f"{args.config}: {e}") from None
    values.update(given_flags(args))
    return values


def _model_of(values: dict[str, Any], args: argparse.Namespace) -> str:
    """The model a --config file's model_kwargs are for: the file's, else its recipe's (file or flag)."""
    recipe = values.get("recipe") or getattr(args, "recipe", None)
    if values.get("model") or not recipe:
        return values.get("model") or TrainConfig.model
    return recipe_settings(recipe)["model"]


def given_flags(args: argparse.Namespace) -> dict[str, Any]:
    """The TrainConfig fields given as flags (a flag left out is None)."""
    return {name: getattr(args, name) for name in flag_fields() if getattr(args, name, None) is not None}


def config_from_flags(args: argparse.Namespace) -> TrainConfig:
    """The TrainConfig of a command's --config file and flags."""
    return TrainConfig.from_dict(config_values(args))


# --- flag groups shared by many commands ------------------------------------------------------------------------

_SHARED: dict[str, tuple[tuple[str, ...], dict[str, Any]]] = {
    "run_dir": (("run_dir",), {"metavar": "RUN_DIR", "help": "a run directory written by cifarlab train"}),
    "data": (("--data",), {"metavar": "PATH", "help": "data to read (default: the run's own)"}),
    "split": (("--split",), {"choices": ("test", "val"), "default": "test", "help": "which split of the data"}),
    "device": (("--device",), {"default": "auto", "help": "auto (cuda, then mps, then cpu), cpu, cuda, cuda:N, mps"}),
    "precision": (("--precision",), {"choices": PRECISIONS, "default": "auto",
                                     "help": "auto: fp32 (exact logits); bf16/fp16 run the body in low precision, "
                                             "the head in fp32"}),
    "tta": (("--tta",), {"choices": TTA_MODES, "help": "test-time augmentation (default: the run's own --tta)"}),
    "json": (("--json",), {"action": "store_true", "help": "print the result as JSON"}),
}


def add_shared(p: argparse.ArgumentParser, *keys: str, **overrides: dict[str, Any]) -> None:
    """Flags many commands take, declared once: run_dir, data, device, precision, json, threads."""
    for key in keys:
        if key == "threads":
            _add_thread_flags(p)
            continue
        flags, kwargs = _SHARED[key]
        p.add_argument(*flags, **{**kwargs, **overrides.get(key, {})})


def _add_thread_flags(p: argparse.ArgumentParser) -> None:
    """--threads and --thread-wait, for every command that computes (applied once, in main)."""
    g = p.add_argument_group("threads (see the README's Several jobs on one machine)")
    g.add_argument("--threads", type=_threads, metavar="N|auto",
                   help="CPU threads for this process's computing; auto (default): the cores it may use (affinity "
                        "mask, cgroup quota), fewer while other processes keep some of them busy; N: exactly N")
    g.add_argument("--thread-wait", choices=WAIT_POLICIES,  # None: not given (train --resume repeats the run's)
                   help="how idle threads wait: active spins, passive sleeps (gives the core to other processes), "
                        "default: OpenMP's own; auto (default): passive when other processes are busy on these "
                        "cores at start, else OpenMP's own")


def add_worker_flags(p: argparse.ArgumentParser, flag: str, what: str) -> None:
    p.add_argument(flag, type=at_least_one, default=1, metavar="N",
                   help=f"{what} side by side on this machine, the cores divided among them")
    p.add_argument("--pin-cores", action="store_true",
                   help=f"with {flag} N: give each process CPUs of its own (affinity) instead of sharing them all")


def add_command(sub, name: str, func: Callable, help: str, example: str, **kwargs) -> argparse.ArgumentParser:
    """A subcommand with its one-line help, a description and an example in its --help."""
    p = sub.add_parser(name, help=help, description=help[0].upper() + help[1:] + ".", epilog="example:\n  " + example,
                       formatter_class=HelpFormatter, **kwargs)
    p.set_defaults(func=func)
    return p

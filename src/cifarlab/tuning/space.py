"""Search spaces: TrainConfig field -> how Optuna samples it. The default space centres on the model's
own recipe; a YAML file replaces it:

    lr:              {type: float, low: 1.0e-4, high: 1.0e-1, log: true}
    batch_size:      {type: categorical, choices: [64, 128, 256]}
    label_smoothing: {type: float, low: 0.0, high: 0.2}
    augment:         {type: categorical, choices: [none, standard, standard+cutout]}
    epochs:          {type: int, low: 2, high: 6}
    model_kwargs.bn_momentum: {type: float, low: 0.4, high: 0.8}    # one argument of the model's factory
"""
from __future__ import annotations

import dataclasses
import reprlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import TrainConfig, read_yaml_file
from ..errors import CifarlabError
from ..training.resolve import check_model_builds, resolve

TYPES = ("float", "int", "categorical")
KEYS = {"type", "low", "high", "log", "choices"}
NOT_TUNABLE = {"model", "data", "out", "device", "model_kwargs", "evaluate_test", "val_size"}
DEFAULT_AUGMENTS = ["none", "keras", "standard", "standard+cutout"]
MODEL_KWARG = "model_kwargs."  # a space entry named model_kwargs.KEY tunes the model's argument KEY


@dataclass(frozen=True)
class Param:
    name: str
    type: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: tuple | None = None

    def suggest(self, trial) -> Any:
        if self.type == "float":
            return trial.suggest_float(self.name, self.low, self.high, log=self.log)
        if self.type == "int":
            return trial.suggest_int(self.name, int(self.low), int(self.high), log=self.log)
        return trial.suggest_categorical(self.name, list(self.choices))

    def as_dict(self) -> dict[str, Any]:
        d = {"type": self.type}
        if self.type == "categorical":
            d["choices"] = list(self.choices)
        else:
            d.update(low=self.low, high=self.high, log=self.log)
        return d


def as_fields(params: dict[str, Any], model_kwargs: dict[str, Any] | None) -> dict[str, Any]:
    """A trial's parameters as TrainConfig fields: the model_kwargs.KEY ones merged into a copy of
    `model_kwargs` (the study's fixed model arguments), the others as they are."""
    fields = {name: value for name, value in params.items() if not name.startswith(MODEL_KWARG)}
    tuned = {name[len(MODEL_KWARG):]: value for name, value in params.items() if name.startswith(MODEL_KWARG)}
    if tuned:
        fields["model_kwargs"] = {**(model_kwargs or {}), **tuned}
    return fields


def with_params(base: TrainConfig, params: dict[str, Any]) -> TrainConfig:
    return dataclasses.replace(base, **as_fields(params, base.model_kwargs))


def default_space(cfg: TrainConfig) -> dict[str, Param]:
    """lr (log, a decade either side of the recipe's), weight decay (log), batch size, label smoothing,
    dropout (only for models that have one) and the augmentation policy."""
    from ..training.regularize import supports

    cfg = resolve(cfg)
    space = {
        "lr": Param("lr", "float", cfg.lr / 10, cfg.lr * 10, log=True),
        "weight_decay": Param("weight_decay", "float", 1e-6, 1e-2, log=True),
        "batch_size": Param("batch_size", "categorical", choices=(64, 128, 256, 512)),
        "label_smoothing": Param("label_smoothing", "float", 0.0, 0.2),
        "augment": Param("augment", "categorical", choices=tuple(DEFAULT_AUGMENTS)),
    }
    if supports(cfg.model, "dropout"):
        space["dropout"] = Param("dropout", "float", 0.0, 0.6)
    return space


def load_space(path: str | Path) -> dict[str, Param]:
    """Read and check a YAML space file (with the bounded, safe reader of --config files); every problem
    is one CifarlabError naming the file."""
    return parse_space(read_yaml_file(path, "space file"), str(path))


def parse_space(values: Any, source: str = "space") -> dict[str, Param]:
    def bad(problem: str) -> CifarlabError:
        return CifarlabError(f"space file {source}: {problem}")

    if not isinstance(values, dict) or not values:
        raise bad("must be a mapping of setting names to {type, low, high, log, choices}")
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    space = {}
    for raw_name, spec in values.items():
        name = str(raw_name).replace("-", "_")
        if name.startswith(MODEL_KWARG):
            if not name[len(MODEL_KWARG):].isidentifier():
                raise bad(f"{_shown(raw_name)}: model_kwargs.KEY needs the name of a model argument as KEY")
        elif name not in fields:
            raise bad(f"{_shown(raw_name)} is not a training setting (valid: "
                      f"{', '.join(sorted(fields - NOT_TUNABLE))}, or model_kwargs.KEY for an argument of the model)")
        elif name in NOT_TUNABLE:
            raise bad(f"{name!r} cannot be tuned")
        if not isinstance(spec, dict):
            raise bad(f"{name}: expected a mapping like {{type: float, low: 0.001, high: 0.1}}, got {_shown(spec)}")
        unknown = set(spec) - KEYS
        if unknown:
            raise bad(f"{name}: unknown key(s) {', '.join(sorted(map(str, unknown)))} "
                      f"(valid: {', '.join(sorted(KEYS))})")
        kind = spec.get("type")
        if kind not in TYPES:
            raise bad(f"{name}: type must be one of {', '.join(TYPES)}, got {_shown(kind)}")
        if kind == "categorical":
            choices = spec.get("choices")
            if not isinstance(choices, list) or not choices:
                raise bad(f"{name}: a categorical needs a non-empty list of choices")
            if not all(c is None or isinstance(c, (str, int, float, bool)) for c in choices):
                raise bad(f"{name}: choices must be plain values (strings, numbers, booleans)")
            if set(spec) & {"low", "high", "log"}:
                raise bad(f"{name}: a categorical takes choices, not low/high/log")
            space[name] = Param(name, kind, choices=tuple(choices))
            continue
        low, high, log = spec.get("low"), spec.get("high"), spec.get("log", False)
        if "choices" in spec:
            raise bad(f"{name}: a {kind} takes low/high, not choices")
        for key, value in (("low", low), ("high", high)):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise bad(f"{name}: {key} must be a number, got {_shown(value)}")
            if kind == "int" and value != int(value):
                raise bad(f"{name}: {key} of an int must be a whole number, got {_shown(value)}")
        if not isinstance(log, bool):
            raise bad(f"{name}: log must be true or false, got {_shown(log)}")
        if not low < high:
            raise bad(f"{name}: low must be < high, got low {low} and high {high}")
        if log and low <= 0:
            raise bad(f"{name}: a log scale needs low > 0, got {low}")
        space[name] = Param(name, kind, float(low) if kind == "float" else int(low),
                            float(high) if kind == "float" else int(high), log)
    return space


def _shown(value: Any) -> str:
    """A value as an error message quotes it: cut short (a space file may hold long strings or deep lists)."""
    return reprlib.repr(value)


def check_space(space: dict[str, Param], base: TrainConfig, label: str = "search space") -> None:
    """Every bound and choice must make a valid config (an unknown augmentation, a negative rate, ...);
    a model argument's must also build the model (an unknown activation, a momentum over 1, ...)."""
    for p in space.values():
        values = list(p.choices) if p.type == "categorical" else [p.low, p.high]
        for value in values:
            try:
                cfg = with_params(base, {p.name: value})
                model = resolve(cfg).model  # the recipe's model where base names none
                if p.name.startswith(MODEL_KWARG):
                    check_model_builds(model, cfg.model_kwargs)
            except CifarlabError as e:
                raise CifarlabError(f"{label}: {p.name} = {_shown(value)}: {e}") from None
            except (TypeError, ValueError) as e:
                raise CifarlabError(f"{label}: {p.name} = {_shown(value)} is not valid ({e})") from None

"""The training configuration: one typed dataclass. Unset fields take the model's default recipe; a
YAML file may set any field, and command-line flags override it. The resolved config is saved in every
run directory, so a run can be repeated exactly."""
from __future__ import annotations

import dataclasses
import functools
import math
import numbers
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from . import choices
from .errors import CifarlabError

# The registries of cifarlab.choices (no torch, nothing above config): `in`, iteration and argparse's choices
# read their names, so an optimizer, schedule or TTA mode registered later is accepted too.
OPTIMIZERS = choices.OPTIMIZERS
SCHEDULES = choices.SCHEDULES
COMPILE_MODES = ("auto", "on", "off")  # torch.compile of the training forward (training/device.py)
TTA_MODES = choices.TTA  # test-time augmentation views (training/inference.py)
MAX_YAML_ALIASES = 100  # config files may reuse values with &anchor / *alias, within reason
PROGRESSIVE_MIN_SIZE = 8  # the smallest --progressive-resize image side
RECIPE_FIELDS = ("epochs", "batch_size", "optimizer", "lr", "weight_decay", "momentum", "nesterov", "schedule",
                 "warmup_epochs", "label_smoothing")


@dataclass(frozen=True)
class Range:
    """The values a numeric setting may take; declared once on its TrainConfig field (`_ranged`) and
    checked for flags, YAML files and run directories alike."""

    gt: float | None = None
    ge: float | None = None
    lt: float | None = None
    le: float | None = None

    def __contains__(self, value: float) -> bool:
        return ((self.gt is None or value > self.gt) and (self.ge is None or value >= self.ge)
                and (self.lt is None or value < self.lt) and (self.le is None or value <= self.le))

    def __str__(self) -> str:
        low = f"({_num(self.gt)}" if self.gt is not None else f"[{_num(self.ge)}" if self.ge is not None else ""
        high = f"{_num(self.lt)})" if self.lt is not None else f"{_num(self.le)}]" if self.le is not None else ""
        if low and high:
            return f"in {low}, {high}"
        if low:
            return f"{'>' if low[0] == '(' else '>='} {low[1:]}"
        return f"{'<' if high[-1] == ')' else '<='} {high[:-1]}" if high else "a number"


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def _ranged(default: Any, **bounds: float) -> Any:
    return field(default=default, metadata={"range": Range(**bounds)})


@dataclass
class TrainConfig:
    model: str = "baseline"
    recipe: str | None = None  # a named preset of the settings below, e.g. "fast" (cifarlab.recipes)
    # Recipe fields: None means "the model's default" (see `cifarlab models --recipes`).
    epochs: int | None = _ranged(None, gt=0)
    batch_size: int | None = _ranged(None, gt=0)
    optimizer: str | None = None
    lr: float | None = _ranged(None, gt=0)
    weight_decay: float | None = _ranged(None, ge=0)
    momentum: float | None = _ranged(None, ge=0, lt=1)
    nesterov: bool | None = None
    schedule: str | None = None
    warmup_epochs: float | None = _ranged(None, ge=0)
    label_smoothing: float | None = _ranged(None, ge=0, lt=1)
    # Data
    data: str | None = None
    train_size: int | None = _ranged(None, gt=0)  # a stratified subset of the training split, for quick experiments
    # val_size: carved from train; None: 5,000 (10% of smaller datasets); 0: no validation
    val_size: int | None = _ranged(None, ge=0)
    budget_minutes: float | None = _ranged(None, gt=0)  # stop after this much training time (the schedule follows)
    progressive_resize: str | None = None  # "24:4": the first 4 epochs on 24x24 images (training/progressive.py)
    # Augmentation and regularization
    augment: str = "none"  # a spec of cifarlab.augment: "standard", "standard+cutout", "keras+mixup", ...
    # l1: lambda of an L1 penalty sum|w| added to the loss (conv and linear weights, not biases)
    l1: float = _ranged(0.0, ge=0)
    l2: float = _ranged(0.0, ge=0)  # lambda of the classic L2 penalty sum w^2 added to the loss (same weights)
    # dropout: the model's dropout rate (its `dropout` argument); None: the model's default
    dropout: float | None = _ranged(None, ge=0, lt=1)
    # drop_path: stochastic depth, the model's `drop_path_rate`; None: the model's default
    drop_path: float | None = _ranged(None, ge=0, lt=1)
    early_stopping: int | None = _ranged(None, gt=0)  # stop after this many epochs without a better val accuracy
    # ema: decay of an exponential moving average of the weights (evaluated and saved)
    ema: float | None = _ranged(None, gt=0, lt=1)
    evaluate_test: bool = True  # False: never touch the test split (tuning trials)
    tta: str = "none"  # test-time augmentation of the final test (and `evaluate`'s default): none, flip, flip-translate
    cifar_stem: bool = False  # tv:/timm: models: a 3x3 stride-1 first conv and no max-pool, for 32x32 inputs
    # Transfer learning (cifarlab.transfer; the README's "Transfer learning" section)
    pretrained: str | None = None  # "imagenet": tv:/timm: weights with their own mean, std and input size
    weights: str | None = None  # a local file of those --pretrained weights (offline); else the hub (cache)
    init_from: str | None = None  # a cifarlab run dir or a state-dict file: load the layers that match
    freeze: str = "none"  # "backbone": train the head only (feature extraction); "none": fine-tune everything
    unfreeze_schedule: str | None = None  # "stage-per-epoch" or "E:MODULE,...": unfreeze MODULE after E epochs
    backbone_lr_scale: float = _ranged(1.0, gt=0)  # discriminative lr: the backbone's lr is lr × this
    freeze_bn: bool = False  # keep every batch-norm layer's running statistics fixed (eval mode) in training
    # input_size: upsample batches to this size on the device; None: 32 (pretrained: its own)
    input_size: int | None = _ranged(None, ge=8, le=1024)
    # head_hidden: tv:/timm: models: head Linear(D, N)-ReLU-Dropout(0.5)-Linear(N, classes)
    head_hidden: int | None = _ranged(None, ge=1, le=65536)
    classes: list[str] | None = None  # train, validate and test on these classes only, relabelled in this order
    # label_fraction: keep this stratified fraction of the training labels (after --val-size)
    label_fraction: float | None = _ranged(None, gt=0, le=1)
    # Execution
    seed: int = _ranged(0, ge=0, le=2**32 - 1)  # numpy's seeds are 32-bit
    device: str = "auto"
    precision: str = "auto"
    channels_last: bool = True
    compile: str = "auto"  # torch.compile the training forward: on, off, auto (the measured default per device)
    tensorboard: bool = False  # also log the epoch metrics as TensorBoard scalars in RUN_DIR/tensorboard
    # eval_batch_size: measured 2x the images/s of batch 1000 on a 2-core CPU (cache-friendly)
    eval_batch_size: int = _ranged(256, gt=0)
    # Data parallelism (torchrun): batch_size is the global batch, split over ranks and accumulation steps
    grad_accum: int = _ranged(1, gt=0)  # micro-batches per optimizer step (gradients summed; same as one big batch)
    sync_bn: bool = False  # batch-norm statistics over the global batch instead of per rank (GPUs)
    dist_timeout: float = _ranged(300.0, gt=0)  # seconds a collective waits for the other ranks before failing
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    out: str | None = None

    def resolved(self) -> TrainConfig:
        """A copy with every recipe field filled from the model's recipe, validated."""
        from .models import get_recipe
        from .recipes import apply_recipe

        self._check_fields(ranges=False)  # the recipe lookups below need a model name of the right type
        cfg = apply_recipe(self) if self.recipe else self
        recipe = get_recipe(cfg.model).as_dict()
        values = {name: recipe[name] if getattr(cfg, name) is None else getattr(cfg, name)
                  for name in RECIPE_FIELDS}
        cfg = dataclasses.replace(cfg, **values)
        cfg.validate()
        kwargs = dict(cfg.model_kwargs)  # --dropout / --drop-path become model arguments
        if cfg.dropout is not None:
            kwargs[model_kwarg_name(cfg.model, "dropout")] = cfg.dropout
        if cfg.drop_path is not None:
            kwargs[model_kwarg_name(cfg.model, "drop_path")] = cfg.drop_path
        if cfg.cifar_stem:
            if ":" not in cfg.model:
                raise CifarlabError(f"--cifar-stem adapts tv:NAME and timm:NAME models; {cfg.model} is built for "
                                    "32x32 images already")
            kwargs["cifar_stem"] = True
        if cfg.head_hidden is not None:
            if ":" not in cfg.model:
                raise CifarlabError(f"--head-hidden replaces the head of tv:NAME and timm:NAME models, not {cfg.model}")
            if cfg.head_hidden < 1:
                raise CifarlabError(f"--head-hidden must be >= 1 (units of the hidden layer), got {cfg.head_hidden}")
            kwargs["head_hidden"] = cfg.head_hidden
        if cfg.pretrained:
            from .transfer.weights import pretrained_model_kwargs

            kwargs.update(pretrained_model_kwargs(cfg.model))
        return dataclasses.replace(cfg, model_kwargs=kwargs)

    def validate(self) -> None:
        if isinstance(self.ema, float) and not 0 < self.ema < 1:  # before the generic check: a better hint
            raise CifarlabError(f"--ema is a decay in (0, 1), e.g. 0.999; got {self.ema}")
        self._check_fields(ranges=True)
        check_model_kwargs(self.model, self.model_kwargs)
        _check_choice("--optimizer", self.optimizer, OPTIMIZERS)
        _check_choice("--schedule", self.schedule, SCHEDULES)
        _check_choice("--tta", self.tta, TTA_MODES)
        _check_choice("--compile", self.compile, COMPILE_MODES)
        from .augment import parse_augment_spec

        parse_augment_spec(self.augment)
        if self.early_stopping is not None and self.val_size == 0:
            raise CifarlabError("--early-stopping watches the validation accuracy: it needs --val-size > 0")
        from .transfer.options import validate_transfer

        validate_transfer(self)
        check_progressive_resize(self.progressive_resize, self.epochs,
                                 upsampled=self.input_size is not None or self.pretrained is not None)

    def _check_fields(self, ranges: bool) -> None:
        for f in dataclasses.fields(self):  # every field's declared type (and range)
            problem = field_problem(f.name, getattr(self, f.name), ranges=ranges)
            if problem:
                raise CifarlabError(f"{setting_flag(f.name)} {problem}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "config") -> TrainConfig:
        """A TrainConfig from a mapping of field values (a YAML file, a run's config.json, a study); unknown
        names and values of the wrong type fail here, naming `source`. Ranges are checked by validate()."""
        check_settings(values, source, ranges=False)
        return cls(**values)


def model_kwarg_name(model: str, setting: str) -> str:
    """The model argument behind --dropout / --drop-path: timm names the dropout rate `drop_rate`."""
    if setting == "dropout":
        return "drop_rate" if model.startswith("timm:") else "dropout"
    return "drop_path_rate"


def load_yaml_config(path: str | Path) -> dict[str, Any]:
    """Read a YAML file of TrainConfig fields (dashes or underscores), for `--config FILE`; every name,
    type and range is checked here, so a bad file fails before any work with the file and the field named."""
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
        aliases = sum(isinstance(t, yaml.AliasToken) for t in yaml.scan(text))
        if aliases > MAX_YAML_ALIASES:  # "billion laughs": a few lines that expand to gigabytes when copied
            raise CifarlabError(f"config file {path} uses {aliases} YAML aliases (*name); at most "
                                f"{MAX_YAML_ALIASES} are read")
        values = yaml.load(text, Loader=_YamlLoader)
    except FileNotFoundError:
        raise CifarlabError(f"config file not found: {path}") from None
    except UnicodeDecodeError as e:
        raise CifarlabError(f"config file {path} is not UTF-8 text (byte {e.object[e.start]:#04x} at offset "
                            f"{e.start})") from None
    except (OSError, yaml.YAMLError) as e:
        raise CifarlabError(f"cannot read config file {path}: {str(e).splitlines()[0]}") from None
    except RecursionError:
        raise CifarlabError(f"cannot read config file {path}: nested too deeply") from None
    if values is None:  # an empty file (or only comments): no settings
        return {}
    if not isinstance(values, dict):
        raise CifarlabError(f"config file {path} must hold a mapping of settings, not {_kind(values)}")
    odd = [k for k in values if not isinstance(k, str)]
    if odd:
        raise CifarlabError(f"config file {path}: setting names are text, got {_show(odd[0])}")
    values = {k.replace("-", "_"): v for k, v in values.items()}
    check_settings(values, str(path), ranges=True)
    if values.get("model_kwargs"):  # against the file's model; a --model flag is checked in validate()
        try:
            check_model_kwargs(values.get("model") or TrainConfig.model, values["model_kwargs"])
        except CifarlabError as e:
            raise CifarlabError(f"{path}: {e}") from None
    return values


class _YamlLoader(yaml.SafeLoader):
    """PyYAML follows YAML 1.1, which reads `1e-3` (no dot) as a string; read it as the number users mean."""


_YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"))


def setting_flag(name: str) -> str:
    """The command-line flag of a TrainConfig field (model_kwargs has none: its own name)."""
    return name if name == "model_kwargs" else "--" + name.replace("_", "-")


def check_settings(values: Any, source: str, ranges: bool = True) -> None:
    """Refuse unknown names and values of the wrong type (and, with `ranges`, out of range), naming `source`."""
    if not isinstance(values, dict):
        raise CifarlabError(f"{source}: the settings must be a mapping of names to values, not {_kind(values)}")
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(k if str(k).isidentifier() else repr(k) for k in set(values) - known)
    if unknown:
        raise CifarlabError(f"{source}: unknown setting(s) {', '.join(unknown)}; valid: {', '.join(sorted(known))}")
    for name, value in values.items():
        problem = field_problem(name, value, ranges=ranges)
        if problem:
            raise CifarlabError(f"{source}: {name} {problem}")


def field_problem(name: str, value: Any, ranges: bool = True) -> str | None:
    """What is wrong with `value` for the TrainConfig field `name` given its declared type (and range), or
    None. Derived from the dataclass, so a new field is checked without new code."""
    hint, bounds = _field_specs()[name]
    args = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    if value is None:
        return None if type(None) in args else f"must be {_type_name(args[0])}, got null"
    kind = next(t for t in args if t is not type(None))
    problem = _type_problem(kind, value)
    if problem is None and ranges and isinstance(value, numbers.Real) and not isinstance(value, bool):
        if not math.isfinite(value):
            problem = f"must be a finite number, got {_show(value)}"
        elif bounds is not None and value not in bounds:
            problem = f"must be {bounds}, got {_show(value)}"
    return problem


def field_range(name: str) -> Range | None:
    """The declared range of a TrainConfig field (None: any value of its type)."""
    return _field_specs()[name][1]


@functools.cache
def _field_specs() -> dict[str, tuple[Any, Range | None]]:
    hints = typing.get_type_hints(TrainConfig)
    return {f.name: (hints[f.name], f.metadata.get("range")) for f in dataclasses.fields(TrainConfig)}


def _type_problem(kind: Any, value: Any) -> str | None:
    origin = typing.get_origin(kind) or kind
    if origin is bool:
        ok = isinstance(value, bool)
    elif origin is int:
        ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    elif origin is float:
        ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    elif origin is str:
        ok = isinstance(value, str)
    elif origin is list:  # list[str]; a comma-separated string is read as the list (validate splits it)
        ok = isinstance(value, str) or (isinstance(value, list) and all(isinstance(v, str) for v in value))
    elif origin is dict:
        ok = isinstance(value, dict) and all(isinstance(k, str) for k in value)
    else:  # Any
        ok = True
    return None if ok else f"must be {_type_name(kind)}, got {_show(value)}"


def _type_name(kind: Any) -> str:
    origin = typing.get_origin(kind) or kind
    return {bool: "true or false", int: "a whole number", float: "a number", str: "text",
            list: "a list of names", dict: "a mapping of names to values"}.get(origin, str(kind))


def _kind(value: Any) -> str:
    return {str: "text", list: "a list", int: "a number", float: "a number", bool: "true/false"}.get(
        type(value), type(value).__name__)


def _show(value: Any) -> str:
    text = repr(value)
    text = text if len(text) <= 40 else text[:37] + "..."
    if isinstance(value, str):
        try:
            float(value)
            return f"{text} (text: remove the quotes)"
        except ValueError:
            pass
    return f"{text} ({_kind(value)})" if isinstance(value, str | list | dict | bool) else text


def check_model_kwargs(model: str, kwargs: Any) -> None:
    """model_kwargs must be arguments of the model's factory (or of the class it returns, when the factory
    passes **kwargs on); torchvision and timm models take any: their builders check them."""
    if not isinstance(kwargs, dict) or not kwargs:
        return
    from .models import model_arguments

    if "num_classes" in kwargs:
        raise CifarlabError("model_kwargs: num_classes is set from the data's classes (use --classes)")
    takes = model_arguments(model)
    unknown = sorted(set(kwargs) - set(takes)) if takes is not None else []
    if unknown:
        raise CifarlabError(f"model_kwargs: model {model} has no argument {', '.join(unknown)} "
                            f"(it takes: {', '.join(takes) or 'none'})")


def _check_choice(flag: str, value: str | None, choices: tuple[str, ...]) -> None:
    if value is not None and value not in choices:
        raise CifarlabError(f"unknown {flag} {value!r}; choose one of: {', '.join(choices)}")


def parse_progressive_resize(spec: str) -> list[tuple[int, int]]:
    """"16:2,24:3" → [(16, 2), (24, 3)]: 2 epochs at 16×16, then 3 at 24×24, then full size."""
    stages = []
    for part in str(spec).split(","):
        size, sep, epochs = part.strip().partition(":")
        try:
            stage = (int(size), int(epochs))
        except ValueError:
            stage = None
        if not sep or stage is None:
            raise CifarlabError(f"--progressive-resize takes SIZE:EPOCHS[,SIZE:EPOCHS...], e.g. 24:4; got {spec!r}")
        if stage[0] < PROGRESSIVE_MIN_SIZE or stage[1] <= 0:
            raise CifarlabError(f"--progressive-resize {spec!r}: each size must be >= {PROGRESSIVE_MIN_SIZE} "
                                "pixels and each epoch count > 0")
        stages.append(stage)
    return stages


def check_progressive_resize(spec: str | None, epochs: int | None, upsampled: bool) -> None:
    """Reject a schedule that leaves no epoch at full size, or one that --input-size would undo."""
    if spec is None:
        return
    stages = parse_progressive_resize(spec)
    if upsampled:
        raise CifarlabError("--progressive-resize cannot be combined with --input-size (or --pretrained, which "
                            "upsamples to the weights' size): every batch is resized to that size anyway")
    small_epochs = sum(n for _, n in stages)
    if epochs is not None and small_epochs >= epochs:
        raise CifarlabError(f"--progressive-resize {spec} covers {small_epochs} of the {epochs} epochs; leave at "
                            "least the last one at full size, the size the model is evaluated at")

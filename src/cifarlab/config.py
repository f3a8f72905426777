"""The training configuration: one typed dataclass. Unset fields take the model's default recipe; a
YAML file may set any field, and command-line flags override it. The resolved config is saved in every
run directory, so a run can be repeated exactly.

No torch, and no cifarlab imports but errors, _io's file readers and the names of choices.py (whose targets
put both in training's layer, tests/test_layers.py): each field declares its help, flag group, choices and range
once (`setting`), from which the command line is generated (cifarlab._flags) and every value is checked;
resolving a config against the models, recipes and weights is cifarlab.training.resolve."""
from __future__ import annotations

import dataclasses
import functools
import inspect
import math
import numbers
import re
import textwrap
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from . import choices
from ._io import read_bytes_bounded
from .errors import CifarlabError, did_you_mean
from .pretrained.options import FREEZE, PRETRAINED

# The registries of cifarlab.choices (no torch, nothing above config): `in`, iteration and argparse's choices
# read their names, so an optimizer, schedule or TTA mode registered later is accepted too.
OPTIMIZERS = choices.OPTIMIZERS
SCHEDULES = choices.SCHEDULES
COMPILE_MODES = ("auto", "on", "off")  # torch.compile of the training forward (rundir/device.py)
TTA_MODES = choices.TTA  # test-time augmentation views (rundir/inference.py)
PRECISIONS = ("auto", "fp32", "bf16", "fp16")  # rundir/device.py resolves auto per device
LABEL_ISSUES_ACTIONS = ("drop", "relabel")  # what --drop-label-issues does to a flagged image (data/cleaning.py)
MAX_YAML_ALIASES = 100  # config files may reuse values with &anchor / *alias, within reason
MAX_YAML_DEPTH = 100  # nesting of a settings file: a few levels (PyYAML's scanner is quadratic in it)
MAX_YAML_VALUES = 100_000  # values once every alias is copied out: a "billion laughs" under the alias cap
PROGRESSIVE_MIN_SIZE = 8  # the smallest --progressive-resize image side
# Optional fields whose value "none" is a choice of its own (no augmentation, no TTA), not "unset".
NONE_IS_A_CHOICE = ("augment", "tta")
RECIPE_FIELDS = ("epochs", "batch_size", "optimizer", "lr", "weight_decay", "momentum", "nesterov", "schedule",
                 "warmup_epochs", "label_smoothing")


@dataclass(frozen=True)
class Range:
    """The values a numeric setting may take; declared once on its TrainConfig field (`setting`) and
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


def setting(default: Any, help: str, group: str, *, choices: tuple[str, ...] | str | None = None,
            metavar: str | None = None, flag: bool = True, default_factory: Any = None, **bounds: float) -> Any:
    """A TrainConfig field with everything the command line, the YAML check and the help need, said once:
    its help text, its flag group (FLAG_GROUPS), its choices (a tuple, or the name of a registry the CLI
    reads: "recipes", "augments"), its range (gt, ge, lt, le) and its metavar."""
    metadata = {"help": help, "group": group, "choices": choices, "metavar": metavar, "flag": flag,
                "range": Range(**bounds) if bounds else None}
    if default_factory is not None:
        return field(default_factory=default_factory, metadata=metadata)
    return field(default=default, metadata=metadata)


FLAG_GROUPS = {
    "model": "model and recipe (unset: the model's default recipe)",
    "transfer": "transfer learning (see the README's Transfer learning section)",
    "regularization": "augmentation and regularization",
    "data": "data",
    "execution": "execution",
}
RECIPE_DEFAULT = "the model's recipe"  # what a None recipe field means, in --help
_F = TypeVar("_F", bound=Callable[..., Any])


@dataclass
class TrainConfig:
    model: str = setting("baseline", "registered model name, tv:NAME or timm:NAME", "model", metavar="MODEL")
    recipe: str | None = setting(None, "a named preset (cifarlab.recipes): fast = airbench94 (the airbench model, "
                                 "alternating flip + translate, flip-translate TTA, all training images); "
                                 "fast-progressive = fast with the first 4 of 9 epochs on 24x24 images (quicker on "
                                 "CPUs); fast-record = fast-progressive with the 2025 speed record's settings "
                                 "(quicker still, 93.9%); flags override it", "model", choices="recipes")
    # Recipe fields: None means "the model's default" (see `cifarlab models --recipes`).
    epochs: int | None = setting(None, "passes over the training images", "model", metavar="N", gt=0, le=1_000_000)
    batch_size: int | None = setting(None, "images per optimizer step; under torchrun the global batch, split over "
                                     "the ranks", "model", metavar="N", gt=0)
    optimizer: str | None = setting(None, "the optimizer", "model", choices=OPTIMIZERS)
    lr: float | None = setting(None, "base learning rate", "model", metavar="LR", gt=0)
    weight_decay: float | None = setting(None, "the optimizer's weight decay", "model", metavar="WD", ge=0)
    momentum: float | None = setting(None, "SGD momentum (Adam's beta1)", "model", metavar="M", ge=0, lt=1)
    nesterov: bool | None = setting(None, "Nesterov momentum (SGD)", "model")
    schedule: str | None = setting(None, "learning-rate schedule over the epochs", "model", choices=SCHEDULES)
    warmup_epochs: float | None = setting(None, "epochs of linear learning-rate warm-up", "model", metavar="E", ge=0)
    label_smoothing: float | None = setting(None, "label smoothing of the cross-entropy loss", "model", metavar="S",
                                            ge=0, lt=1)
    # Data
    data: str | None = setting(None, "image-folder tree, cifar-10-python.tar.gz or cifar-10-batches-py/ (default: "
                               "$CIFARLAB_DATA, else the download cache, else download)", "data", metavar="PATH")
    train_size: int | None = setting(None, "train on a stratified subset of N images (quick experiments)", "data",
                                     metavar="N", gt=0)
    val_size: int | None = setting(None, "validation images carved from train (default 5000, 10% of smaller "
                                   "datasets; 0: none)", "data", metavar="N", ge=0)
    budget_minutes: float | None = setting(None, "stop after this much training time (the schedule follows it)",
                                           "model", metavar="MIN", gt=0)
    progressive_resize: str | None = setting(None, "train the first EPOCHS epochs on SIZE x SIZE images (less "
                                             "arithmetic), e.g. 24:4 or 16:2,24:3; the rest, and evaluation, at "
                                             "full size (training/progressive.py)", "model", metavar="SIZE:EPOCHS")
    prune_easy: float | None = setting(None, "InfoBatch example selection: each epoch skip this share of the "
                                       "well-learned training images (loss under the mean) and upweight the rest "
                                       "of them, e.g. 0.5; 0: off, also under a recipe that prunes "
                                       "(training/selection.py)", "model", metavar="R", ge=0, lt=1)
    prune_until: float = setting(0.875, "with --prune-easy: the share of the epochs that prune; the rest see every "
                                 "image", "model", metavar="F", gt=0, le=1)
    # Augmentation and regularization
    # augment and tta: None until resolve(), so that a recipe fills them only when the user left them out
    # (an explicit `--tta none` under `--recipe fast` stays none).
    augment: str | None = setting(None, "training-batch augmentation (cifarlab.augment); combine with +, e.g. "
                                  "standard+cutout or standard+mixup (see cifarlab augment-preview; default: none, "
                                  "or the recipe's)", "regularization", choices="augments", metavar="SPEC")
    l1: float = setting(0.0, "add LAMBDA·sum|w| to the loss (conv and linear weights, not biases)", "regularization",
                        metavar="LAMBDA", ge=0)
    l2: float = setting(0.0, "add LAMBDA·sum w² to the loss, the classic L2 penalty (--weight-decay is the "
                        "optimizer's)", "regularization", metavar="LAMBDA", ge=0)
    dropout: float | None = setting(None, "the model's dropout rate (its `dropout` argument; models with dropout; "
                                    "default: the model's)", "regularization", metavar="P", ge=0, lt=1)
    drop_path: float | None = setting(None, "stochastic depth, the model's drop_path_rate (residual models; default: "
                                      "the model's)", "regularization", metavar="P", ge=0, lt=1)
    early_stopping: int | None = setting(None, "stop after PATIENCE epochs without a better validation accuracy",
                                         "regularization", metavar="PATIENCE", gt=0)
    ema: float | None = setting(None, "validate, test and save an exponential moving average of the weights with "
                                "this decay, e.g. 0.999", "regularization", metavar="DECAY", gt=0, lt=1)
    evaluate_test: bool = setting(True, "False: never touch the test split (tuning trials)", "execution", flag=False)
    tta: str | None = setting(None, "test-time augmentation of the final test (and evaluate's default): flip, "
                              "flip-translate (flip + 1-pixel shifts, 6 views), flip-translate-unsure (those 6 views "
                              "for the least sure fifth of the images only, 2 passes); default: none, or the "
                              "recipe's", "execution", choices=TTA_MODES)
    cifar_stem: bool = setting(False, "tv:/timm: models: adapt the stem to 32x32 images (3x3 stride-1 conv, no "
                               "max-pool)", "model")
    # Transfer learning (checked and applied by cifarlab.pretrained; the README's "Transfer learning" section)
    pretrained: str | None = setting(None, "tv:/timm: models: published weights with their own mean, std and input "
                                     "size", "transfer", choices=PRETRAINED)
    weights: str | None = setting(None, "a local file of the --pretrained weights (offline; default: the hub's "
                                  "cache)", "transfer", metavar="FILE")
    init_from: str | None = setting(None, "start from a cifarlab run or a state-dict file: the layers that match are "
                                    "loaded", "transfer", metavar="RUN_DIR|FILE")
    freeze: str = setting("none", "backbone: train the head only (feature extraction); none: fine-tune everything",
                          "transfer", choices=FREEZE)
    unfreeze_schedule: str | None = setting(None, "with --freeze backbone: stage-per-epoch, or E:MODULE,... (MODULE "
                                            "trains after E epochs)", "transfer", metavar="SPEC")
    backbone_lr_scale: float = setting(1.0, "discriminative lr: the backbone's lr is S x lr", "transfer",
                                       metavar="S", gt=0)
    freeze_bn: bool = setting(False, "keep every batch-norm layer's running statistics fixed while training",
                              "transfer")
    input_size: int | None = setting(None, "upsample batches to PX x PX on the device, e.g. 64, 96, 224 (default: "
                                     "32; pretrained: the weights' own)", "transfer", metavar="PX", ge=8, le=1024)
    head_hidden: int | None = setting(None, "tv:/timm: models: a head Linear(D, N)-ReLU-Dropout(0.5)-Linear(N, "
                                      "classes), e.g. 512 for the Keras notebook's Dense(512)", "transfer",
                                      metavar="N", ge=1, le=65536)
    classes: list[str] | None = setting(None, "train, validate and test on these classes only, relabelled in this "
                                        "order", "data", metavar="A,B,...")
    label_fraction: float | None = setting(None, "keep a stratified fraction F of the training labels (after the "
                                           "validation split)", "data", metavar="F", gt=0, le=1)
    drop_label_issues: str | None = setting(None, "leave out of the training images those that `cifarlab analyze "
                                            "ANALYZED_RUN --label-check` flagged, matched by file name (or relabel "
                                            "them: --label-issues-action)", "data", metavar="ANALYZED_RUN")
    label_issues_action: str = setting("drop", "with --drop-label-issues: drop the flagged images, or relabel them "
                                       "to the class the check suspects", "data", choices=LABEL_ISSUES_ACTIONS)
    # Execution
    seed: int = setting(0, "random seed of the data split, the initialization and the batches", "execution",
                        metavar="N", ge=0, le=2**32 - 1)  # numpy's seeds are 32-bit
    device: str = setting("auto", "auto (cuda, then mps, then cpu), cpu, cuda, cuda:N, mps", "execution",
                          metavar="DEVICE")
    precision: str = setting("auto", "auto: bf16 on GPUs and CPUs with native bf16, else fp32", "execution",
                             choices=PRECISIONS)
    channels_last: bool = setting(True, "NHWC memory layout for convolutions", "execution")
    compile: str = setting("auto", "torch.compile the training forward; auto: the measured choice per device (off on "
                           "CPUs, where it was slower)", "execution", choices=COMPILE_MODES)
    tensorboard: bool = setting(False, "also log the epoch metrics for TensorBoard in RUN_DIR/tensorboard (needs "
                                "tensorboard)", "execution")
    # eval_batch_size: measured 2x the images/s of batch 1000 on a 2-core CPU (cache-friendly)
    eval_batch_size: int = setting(256, "images per batch when evaluating", "execution", metavar="N", gt=0)
    # Data parallelism (torchrun): batch_size is the global batch, split over ranks and accumulation steps
    grad_accum: int = setting(1, "split each batch into K micro-batches and sum their gradients (same step, less "
                              "memory)", "execution", metavar="K", gt=0)
    sync_bn: bool = setting(False, "under torchrun: batch-norm statistics over the global batch (SyncBatchNorm, "
                            "GPUs)", "execution")
    dist_timeout: float = setting(300.0, "under torchrun: fail when other ranks stop answering for S seconds",
                                  "execution", metavar="S", gt=0)
    model_kwargs: dict[str, Any] = setting(None, "arguments of the model's factory (YAML only)", "model",
                                           flag=False, default_factory=dict)
    out: str | None = setting(None, "run directory (default: runs/MODEL-TIME)", "execution", metavar="RUN_DIR")


    def validate(self) -> None:
        """The checks this config can make alone: every field's type, range and fixed choices, and the
        settings that only make sense together (resolve() adds those that need the models and registries)."""
        self._check_fields(ranges=True)
        for f in dataclasses.fields(self):  # fixed choices: a tuple, or a registry of cifarlab.choices
            choices = f.metadata.get("choices")
            if choices is not None and not isinstance(choices, str):
                _check_choice(setting_flag(f.name), getattr(self, f.name), choices)
        if self.early_stopping is not None and self.val_size == 0:
            raise CifarlabError("--early-stopping watches the validation accuracy: it needs --val-size > 0")
        check_progressive_resize(self.progressive_resize, self.epochs,
                                 upsampled=self.input_size is not None or self.pretrained is not None)
        check_pruning(self.prune_easy, self.prune_until, self.epochs)
        classes = class_list(self.classes)
        if classes is not None:
            if len(classes) < 2:
                raise CifarlabError(f"--classes needs at least two class names, got {classes}")
            dupes = sorted({c for c in classes if classes.count(c) > 1})
            if dupes:
                raise CifarlabError(f"--classes names {', '.join(dupes)} more than once")
        if self.label_fraction is not None and self.train_size is not None:
            raise CifarlabError("--label-fraction and --train-size both subset the training labels: give one")
        if self.label_issues_action != "drop" and not self.drop_label_issues:
            raise CifarlabError(f"--label-issues-action {self.label_issues_action} has nothing to do without "
                                "--drop-label-issues ANALYZED_RUN")

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


def class_list(classes: list[str] | str | None) -> list[str] | None:
    """--classes as a list: a YAML file may write them as one comma-separated string."""
    if isinstance(classes, str):
        return [c.strip() for c in classes.split(",") if c.strip()]
    return classes


def with_overrides(cfg: TrainConfig | None, overrides: dict[str, Any], source: str = "settings") -> TrainConfig:
    """A new config: `cfg` (default: TrainConfig()) with the keyword settings of a Python call, where None
    means "not given" (cfg's value stays). Unknown names and values of the wrong type fail here, naming
    `source`; ranges and combinations are resolve()'s. The one way every API call merges its keywords."""
    given = {k: v for k, v in overrides.items() if v is not None}
    check_settings(given, source, ranges=False)
    return dataclasses.replace(cfg if cfg is not None else TrainConfig(), **given)


def model_kwarg_name(model: str, setting: str) -> str:
    """The model argument behind --dropout / --drop-path: timm names the dropout rate `drop_rate`."""
    if setting == "dropout":
        return "drop_rate" if model.startswith("timm:") else "dropout"
    return "drop_path_rate"


def load_yaml_config(path: str | Path) -> dict[str, Any]:
    """Read a YAML file of TrainConfig fields (dashes or underscores), for `--config FILE`; every name,
    type and range is checked here, so a bad file fails before any work with the file and the field named."""
    path = Path(path)
    values = read_yaml_file(path, "config file")
    if values is None:  # an empty file (or only comments): no settings
        return {}
    if not isinstance(values, dict):
        raise CifarlabError(f"config file {path} must hold a mapping of settings, not {_kind(values)}")
    odd = [k for k in values if not isinstance(k, str)]
    if odd:
        raise CifarlabError(f"config file {path}: setting names are text, got {_show(odd[0])}")
    values = {k.replace("-", "_"): v for k, v in values.items()}
    check_settings(values, str(path), ranges=True)
    return values


def read_yaml_file(path: str | Path, what: str) -> Any:
    """The plain data of a small YAML settings file (`--config`, `tune --space`), read within bounds: a
    regular file of bounded size, UTF-8, at most MAX_YAML_DEPTH levels deep, MAX_YAML_ALIASES aliases and
    MAX_YAML_VALUES values once the aliases are copied out; safe loading (no Python objects). Every problem
    is one CifarlabError naming the file as `what PATH` ("config file", "space file")."""
    path = Path(path)
    try:
        text = read_bytes_bounded(path).decode("utf-8")  # a regular file of bounded size (not /dev/zero)
        aliases = sum(isinstance(t, yaml.AliasToken) for t in yaml.scan(text, Loader=_YamlLoader))
        if aliases > MAX_YAML_ALIASES:  # "billion laughs": a few lines that expand to gigabytes when copied
            raise CifarlabError(f"{what} {path} uses {aliases} YAML aliases (*name); at most "
                                f"{MAX_YAML_ALIASES} are read")
        loader = _YamlLoader(text)
        try:
            node = loader.get_single_node()
            if node is not None and _expanded_size(node, {}) > MAX_YAML_VALUES:
                raise CifarlabError(f"{what} {path} expands to more than {MAX_YAML_VALUES:,} values through its "
                                    "YAML aliases (*name)")
            return loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except FileNotFoundError:
        raise CifarlabError(f"{what} not found: {path}") from None
    except UnicodeDecodeError as e:
        raise CifarlabError(f"{what} {path} is not UTF-8 text (byte {e.object[e.start]:#04x} at offset "
                            f"{e.start})") from None
    except (OSError, yaml.YAMLError) as e:
        raise CifarlabError(f"cannot read {what} {path}: {str(e).splitlines()[0]}") from None
    except RecursionError:
        raise CifarlabError(f"cannot read {what} {path}: nested too deeply") from None


def _expanded_size(node: yaml.Node, sizes: dict[int, int]) -> int:
    """How many values `node` holds once its aliases are copied out, as code that walks the loaded data
    (a check, an error message) would see them; shared nodes are counted once per reference, in linear time."""
    key = id(node)
    if key not in sizes:
        sizes[key] = MAX_YAML_VALUES + 1  # a node inside itself (&a [*a]) never ends: too many
        if isinstance(node, yaml.MappingNode):
            children = [part for pair in node.value for part in pair]
        else:
            children = node.value if isinstance(node, yaml.SequenceNode) else []
        sizes[key] = 1 + sum(_expanded_size(child, sizes) for child in children)
    return sizes[key]


class _YamlLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing more than MAX_YAML_DEPTH levels of nesting while it scans (each
    level makes its scanner slower for every token after it: 20,000 levels took seconds to read).
    PyYAML follows YAML 1.1, which reads `1e-3` (no dot) as a string; read it as the number users mean."""

    def fetch_flow_collection_start(self, token_class) -> None:
        if self.flow_level >= MAX_YAML_DEPTH:
            raise yaml.YAMLError(f"nested more than {MAX_YAML_DEPTH} levels deep")
        super().fetch_flow_collection_start(token_class)

    def add_indent(self, column: int) -> bool:
        if self.indent < column and len(self.indents) >= MAX_YAML_DEPTH:  # a block collection one level deeper
            raise yaml.YAMLError(f"nested more than {MAX_YAML_DEPTH} levels deep")
        return super().add_indent(column)


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


def _check_choice(flag: str, value: str | None, choices) -> None:
    if value is not None and value not in choices:
        raise CifarlabError(f"unknown {flag} {value!r}{did_you_mean(value, choices)}; choose one of: "
                            f"{', '.join(choices)}")


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


def last_pruned_epoch(epochs: int, until: float) -> int:
    """--prune-easy: the last 0-based epoch that skips images; the epochs after it see every image."""
    return math.ceil(until * epochs) - 1


def check_pruning(prune_easy: float | None, until: float, epochs: int | None) -> None:
    """--prune-until needs --prune-easy, and the two must leave an epoch that prunes (the first never does)."""
    if not prune_easy:
        if until != TrainConfig.prune_until:
            raise CifarlabError(f"--prune-until {until:g} has nothing to do without --prune-easy R (e.g. 0.5)")
        return
    if epochs is not None and last_pruned_epoch(epochs, until) < 1:
        raise CifarlabError(f"--prune-easy prunes no epoch of {epochs} with --prune-until {until:g} (the first "
                            "epoch sees every image); train more epochs or raise --prune-until")


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


# --- the settings in Python: help(), signatures, a notebook's completion -----------------------------------------

def _shown_default(f: dataclasses.Field) -> Any:
    return f.default_factory() if f.default is dataclasses.MISSING else f.default


def settings_doc(title: str, exclude: typing.Collection[str] = ()) -> str:
    """A docstring section listing each TrainConfig field (less `exclude`) with its type, default, help,
    choices and range, from the same declarations as the command line's --help."""
    hints = typing.get_type_hints(TrainConfig)
    lines = [title]
    for f in dataclasses.fields(TrainConfig):
        if f.name in exclude:
            continue
        meta = f.metadata
        text = meta["help"]
        if f.name in RECIPE_FIELDS:
            text += f" (None: {RECIPE_DEFAULT})"
        choices = meta.get("choices")
        if choices is not None and not isinstance(choices, str):  # a tuple or a registry of cifarlab.choices
            text += f"; one of: {', '.join(choices)}"
        if meta.get("range") is not None:
            text += f"; {meta['range']}"
        lines.append(f"    {f.name}: {inspect.formatannotation(hints[f.name])} = {_shown_default(f)!r}")
        lines += textwrap.wrap(text, 110, initial_indent=" " * 8, subsequent_indent=" " * 8)
    return "\n".join(lines)


def takes_settings(*only: str) -> Callable[[_F], _F]:
    """For a function that takes TrainConfig fields as `**overrides`: its signature lists them as keyword-only
    parameters with their types and defaults (inspect.signature, help(), a notebook's completion), and its
    docstring gains a section with each one's help. `only`: the fields that mean something to it (default:
    all). The function itself still receives them through **overrides."""
    unknown = set(only) - {f.name for f in dataclasses.fields(TrainConfig)}
    if unknown:
        raise ValueError(f"takes_settings: no TrainConfig field {', '.join(sorted(unknown))}")

    def decorate(fn: _F) -> _F:
        signature = inspect.signature(fn)
        params = [p for p in signature.parameters.values() if p.kind is not p.VAR_KEYWORD]
        taken = {p.name for p in params}
        hints = typing.get_type_hints(TrainConfig)
        fields = [f for f in dataclasses.fields(TrainConfig) if f.name not in taken and (not only or f.name in only)]
        params += [inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=_shown_default(f),
                                     annotation=hints[f.name]) for f in fields]
        fn.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
        excluded = {f.name for f in dataclasses.fields(TrainConfig)} - {f.name for f in fields}
        fn.__doc__ = (inspect.cleandoc(fn.__doc__ or "") + "\n\n"
                      + settings_doc("Training settings (keyword arguments: the TrainConfig fields):", excluded))
        return fn
    return decorate


TrainConfig.__doc__ = ("The settings of one training run. Unset recipe fields (None) take the model's default "
                       "recipe; a YAML file (--config) may set any field and command-line flags override it.\n\n"
                       + settings_doc("Fields:"))

"""The training configuration: one typed dataclass. Unset fields take the model's default recipe; a
YAML file may set any field, and command-line flags override it. The resolved config is saved in every
run directory, so a run can be repeated exactly."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import CifarlabError

OPTIMIZERS = ("sgd", "adam", "adamw", "muon")
SCHEDULES = ("constant", "cosine", "step", "onecycle", "linear")
COMPILE_MODES = ("auto", "on", "off")  # torch.compile of the training forward (training/device.py)
TTA_MODES = ("none", "flip", "flip-translate")  # test-time augmentation views (training/inference.py)
PROGRESSIVE_MIN_SIZE = 8  # the smallest --progressive-resize image side
RECIPE_FIELDS = ("epochs", "batch_size", "optimizer", "lr", "weight_decay", "momentum", "nesterov", "schedule",
                 "warmup_epochs", "label_smoothing")


@dataclass
class TrainConfig:
    model: str = "baseline"
    recipe: str | None = None  # a named preset of the settings below, e.g. "fast" (cifarlab.recipes)
    # Recipe fields: None means "the model's default" (see `cifarlab models --recipes`).
    epochs: int | None = None
    batch_size: int | None = None
    optimizer: str | None = None
    lr: float | None = None
    weight_decay: float | None = None
    momentum: float | None = None
    nesterov: bool | None = None
    schedule: str | None = None
    warmup_epochs: float | None = None
    label_smoothing: float | None = None
    # Data
    data: str | None = None
    train_size: int | None = None  # a stratified subset of the training split, for quick experiments
    val_size: int | None = None  # carved from train; None: 5,000 (10% of smaller datasets); 0: no validation
    budget_minutes: float | None = None  # stop after this much training time; the schedule follows the clock
    progressive_resize: str | None = None  # "24:4": the first 4 epochs on 24x24 images (training/progressive.py)
    # Augmentation and regularization
    augment: str = "none"  # a spec of cifarlab.augment: "standard", "standard+cutout", "keras+mixup", ...
    l1: float = 0.0  # lambda of an L1 penalty sum|w| added to the loss (conv and linear weights, not biases)
    l2: float = 0.0  # lambda of the classic L2 penalty sum w^2 added to the loss (same weights)
    dropout: float | None = None  # the model's dropout rate (its `dropout` argument); None: the model's default
    drop_path: float | None = None  # stochastic depth, the model's `drop_path_rate`; None: the model's default
    early_stopping: int | None = None  # stop after this many epochs without a better validation accuracy
    ema: float | None = None  # decay of an exponential moving average of the weights (evaluated and saved)
    evaluate_test: bool = True  # False: never touch the test split (tuning trials)
    tta: str = "none"  # test-time augmentation of the final test (and `evaluate`'s default): none, flip, flip-translate
    cifar_stem: bool = False  # tv:/timm: models: a 3x3 stride-1 first conv and no max-pool, for 32x32 inputs
    # Transfer learning (cifarlab.transfer; the README's "Transfer learning" section)
    pretrained: str | None = None  # "imagenet": tv:/timm: weights with their own mean, std and input size
    weights: str | None = None  # a local file of those --pretrained weights (offline); else the hub (cache)
    init_from: str | None = None  # a cifarlab run dir or a state-dict file: load the layers that match
    freeze: str = "none"  # "backbone": train the head only (feature extraction); "none": fine-tune everything
    unfreeze_schedule: str | None = None  # "stage-per-epoch" or "E:MODULE,...": unfreeze MODULE after E epochs
    backbone_lr_scale: float = 1.0  # discriminative lr: the backbone's lr is lr × this (the head's is lr)
    freeze_bn: bool = False  # keep every batch-norm layer's running statistics fixed (eval mode) in training
    input_size: int | None = None  # upsample batches to this size on the device; None: 32 (pretrained: its own)
    head_hidden: int | None = None  # tv:/timm: models: head Linear(D, N)-ReLU-Dropout(0.5)-Linear(N, classes)
    classes: list[str] | None = None  # train, validate and test on these classes only, relabelled in this order
    label_fraction: float | None = None  # keep this stratified fraction of the training labels (after --val-size)
    # Execution
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"
    channels_last: bool = True
    compile: str = "auto"  # torch.compile the training forward: on, off, auto (the measured default per device)
    tensorboard: bool = False  # also log the epoch metrics as TensorBoard scalars in RUN_DIR/tensorboard
    eval_batch_size: int = 256  # measured: 2x the images/s of batch 1000 on a 2-core CPU (cache-friendly)
    # Data parallelism (torchrun): batch_size is the global batch, split over ranks and accumulation steps
    grad_accum: int = 1  # micro-batches per optimizer step (gradients summed; same as one big batch)
    sync_bn: bool = False  # batch-norm statistics over the global batch instead of per rank (GPUs)
    dist_timeout: float = 300.0  # seconds a collective waits for the other ranks before failing
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    out: str | None = None

    def resolved(self) -> TrainConfig:
        """A copy with every recipe field filled from the model's recipe, validated."""
        from .models import get_recipe
        from .recipes import apply_recipe

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
        _check_choice("--optimizer", self.optimizer, OPTIMIZERS)
        _check_choice("--schedule", self.schedule, SCHEDULES)
        _check_positive("--epochs", self.epochs)
        _check_positive("--batch-size", self.batch_size)
        _check_positive("--eval-batch-size", self.eval_batch_size)
        _check_positive("--grad-accum", self.grad_accum)
        if not self.dist_timeout > 0:
            raise CifarlabError(f"--dist-timeout must be > 0 seconds, got {self.dist_timeout}")
        _check_choice("--tta", self.tta, TTA_MODES)
        _check_choice("--compile", self.compile, COMPILE_MODES)
        if self.lr is not None and not self.lr > 0:
            raise CifarlabError(f"--lr must be > 0, got {self.lr}")
        if self.weight_decay is not None and self.weight_decay < 0:
            raise CifarlabError(f"--weight-decay must be >= 0, got {self.weight_decay}")
        if self.label_smoothing is not None and not 0 <= self.label_smoothing < 1:
            raise CifarlabError(f"--label-smoothing must be in [0, 1), got {self.label_smoothing}")
        if self.train_size is not None and self.train_size <= 0:
            raise CifarlabError(f"--train-size must be > 0, got {self.train_size}")
        if self.budget_minutes is not None and not self.budget_minutes > 0:
            raise CifarlabError(f"--budget-minutes must be > 0, got {self.budget_minutes}")
        if self.val_size is not None and self.val_size < 0:
            raise CifarlabError(f"--val-size must be >= 0, got {self.val_size}")
        from .augment import parse_augment_spec

        parse_augment_spec(self.augment)
        for flag, value in (("--l1", self.l1), ("--l2", self.l2)):
            if value is None or not value >= 0:
                raise CifarlabError(f"{flag} must be >= 0, got {value}")
        for flag, value in (("--dropout", self.dropout), ("--drop-path", self.drop_path)):
            if value is not None and not 0 <= value < 1:
                raise CifarlabError(f"{flag} must be in [0, 1), got {value}")
        _check_positive("--early-stopping", self.early_stopping)
        if self.early_stopping is not None and self.val_size == 0:
            raise CifarlabError("--early-stopping watches the validation accuracy: it needs --val-size > 0")
        if self.ema is not None and not 0 < self.ema < 1:
            raise CifarlabError(f"--ema is a decay in (0, 1), e.g. 0.999; got {self.ema}")
        from .transfer.options import validate_transfer

        validate_transfer(self)
        check_progressive_resize(self.progressive_resize, self.epochs,
                                 upsampled=self.input_size is not None or self.pretrained is not None)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "config") -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise CifarlabError(f"{source}: unknown setting(s) {', '.join(unknown)}; valid: {', '.join(sorted(known))}")
        return cls(**values)


def model_kwarg_name(model: str, setting: str) -> str:
    """The model argument behind --dropout / --drop-path: timm names the dropout rate `drop_rate`."""
    if setting == "dropout":
        return "drop_rate" if model.startswith("timm:") else "dropout"
    return "drop_path_rate"


def load_yaml_config(path: str | Path) -> dict[str, Any]:
    """Read a YAML file of TrainConfig fields (dashes or underscores), for `--config FILE`."""
    path = Path(path)
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise CifarlabError(f"config file not found: {path}") from None
    except (OSError, yaml.YAMLError) as e:
        raise CifarlabError(f"cannot read config file {path}: {str(e).splitlines()[0]}") from None
    if not isinstance(values, dict):
        raise CifarlabError(f"config file {path} must hold a mapping of settings, not {type(values).__name__}")
    values = {str(k).replace("-", "_"): v for k, v in values.items()}
    TrainConfig.from_dict(values, source=str(path))  # reject unknown keys early, naming the file
    return values


def _check_choice(flag: str, value: str | None, choices: tuple[str, ...]) -> None:
    if value is not None and value not in choices:
        raise CifarlabError(f"unknown {flag} {value!r}; choose one of: {', '.join(choices)}")


def _check_positive(flag: str, value: int | None) -> None:
    if value is not None and value <= 0:
        raise CifarlabError(f"{flag} must be > 0, got {value}")


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

"""The `cifarlab` command: a thin layer over the Python API. Each subcommand parses its flags and calls
one function; user errors print one line (no traceback) and exit non-zero."""
from __future__ import annotations

import argparse
import dataclasses
import errno
import functools
import json
import math
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

from . import __version__
from .config import COMPILE_MODES, OPTIMIZERS, SCHEDULES, TTA_MODES, Range, TrainConfig, field_range, load_yaml_config
from .errors import CifarlabError
from .recipes import list_recipes

EXIT_USER_ERROR = 2
_FILE_SYSTEM_ERRORS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.ENOTDIR,
                       errno.EISDIR, errno.EEXIST, errno.ENOENT, errno.ENAMETOOLONG}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line instead of argparse's usage block
        if message.startswith("argument ") and ": must be " in message:  # a range (_num): as TrainConfig says it
            message = message.removeprefix("argument ").replace(": must be ", " must be ", 1)
        self.exit(EXIT_USER_ERROR, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _add_train_flags(p: argparse.ArgumentParser, single_run: bool = True) -> None:
    """The training flags, shared by every command that trains (train, compare, ...)."""
    g = p.add_argument_group("model and recipe (unset: the model's default recipe)")
    if single_run:
        g.add_argument("--model", help="registered model name, tv:NAME or timm:NAME (default: baseline)")
        g.add_argument("--recipe", choices=list_recipes(),
                       help="a named preset: fast = airbench94 (the airbench model, alternating flip + "
                            "translate, flip-translate TTA, all training images); fast-progressive = fast with "
                            "the first 4 of 9 epochs on 24x24 images (quicker on CPUs); flags override it")
    g.add_argument("--cifar-stem", action="store_true", default=None,
                   help="tv:/timm: models: adapt the stem to 32x32 images (3x3 stride-1 conv, no max-pool)")
    _add_transfer_flags(p)
    g.add_argument("--epochs", type=int)
    g.add_argument("--batch-size", type=int, help="images per optimizer step; under torchrun the global batch, "
                                                  "split over the ranks")
    g.add_argument("--optimizer", choices=OPTIMIZERS)
    g.add_argument("--lr", type=float, help="base learning rate")
    g.add_argument("--weight-decay", type=float)
    g.add_argument("--momentum", type=float)
    g.add_argument("--nesterov", action=argparse.BooleanOptionalAction, default=None)
    g.add_argument("--schedule", choices=SCHEDULES)
    g.add_argument("--warmup-epochs", type=float)
    g.add_argument("--label-smoothing", type=float)
    g.add_argument("--budget-minutes", type=float, help="stop after this much training time (schedule follows it)")
    g.add_argument("--progressive-resize", metavar="SIZE:EPOCHS",
                   help="train the first EPOCHS epochs on SIZE x SIZE images (less arithmetic), e.g. 24:4 or "
                        "16:2,24:3; the rest, and evaluation, at full size")
    _add_regularization_flags(p)
    g = p.add_argument_group("data")
    g.add_argument("--data", help="image-folder tree, cifar-10-python.tar.gz or cifar-10-batches-py/ "
                                  "(default: $CIFARLAB_DATA, else the download cache, else download)")
    g.add_argument("--train-size", type=int, help="train on a stratified subset of N images")
    g.add_argument("--label-fraction", type=float, metavar="F",
                   help="keep a stratified fraction F of the training labels (after the validation split)")
    g.add_argument("--classes", type=_names, metavar="A,B,...",
                   help="train, validate and test on these classes only, relabelled in this order")
    g.add_argument("--val-size", type=int, help="validation images carved from train (default 5000; 0: none)")
    g = p.add_argument_group("execution")
    if single_run:
        g.add_argument("--seed", type=_SEED)
    g.add_argument("--device", help="auto (cuda, then mps, then cpu), cpu, cuda, cuda:N, mps")
    g.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16"))
    g.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None)
    g.add_argument("--compile", choices=COMPILE_MODES,
                   help="torch.compile the training forward; auto (default): the measured choice per device "
                        "(off on CPUs, where it was slower)")
    g.add_argument("--eval-batch-size", type=int)
    g.add_argument("--grad-accum", type=int, metavar="K",
                   help="split each batch into K micro-batches and sum their gradients (same step, less memory)")
    g.add_argument("--sync-bn", action="store_true", default=None,
                   help="under torchrun: batch-norm statistics over the global batch (SyncBatchNorm, GPUs)")
    g.add_argument("--dist-timeout", type=float, metavar="S",
                   help="under torchrun: fail when other ranks stop answering for S seconds (default 300)")
    g.add_argument("--tta", choices=TTA_MODES, help="test-time augmentation of the final test: none (default), "
                                                    "flip, flip-translate (flip + 1-pixel shifts, 6 views)")
    g.add_argument("--config", metavar="FILE", help="YAML file of settings; flags override it")
    _add_thread_flags(p)
    if single_run:
        g.add_argument("--out", metavar="RUN_DIR", help="run directory (default: runs/MODEL-TIME)")
        g.add_argument("--tensorboard", action="store_true", default=None,
                       help="also log the epoch metrics for TensorBoard in RUN_DIR/tensorboard (needs tensorboard)")


def _threads_arg(text: str) -> str:
    from ._threads import parse_threads  # no torch

    try:
        parse_threads(text)
    except CifarlabError as e:
        raise argparse.ArgumentTypeError(str(e).removeprefix("--threads ")) from None
    return text


def _add_thread_flags(p: argparse.ArgumentParser) -> None:
    """--threads and --thread-wait, for every command that computes (applied once, in main)."""
    from ._threads import WAIT_POLICIES  # no torch

    g = p.add_argument_group("threads (see the README's Several jobs on one machine)")
    g.add_argument("--threads", type=_threads_arg, metavar="N|auto",
                   help="CPU threads for this process's computing; auto (default): the cores it may use (affinity "
                        "mask, cgroup quota), fewer while other processes keep some of them busy; N: exactly N")
    g.add_argument("--thread-wait", choices=WAIT_POLICIES, default="auto",
                   help="how idle threads wait: active spins, passive sleeps (gives the core to other processes), "
                        "default: OpenMP's own; auto (default): passive when other processes are busy on these "
                        "cores at start, else OpenMP's own")


def _at_least_one(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"takes a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _add_worker_flags(p: argparse.ArgumentParser, flag: str, what: str) -> None:
    p.add_argument(flag, type=_at_least_one, default=1, metavar="N",
                   help=f"{what} side by side on this machine, the cores divided among them (default 1)")
    p.add_argument("--pin-cores", action="store_true",
                   help=f"with {flag} N: give each process CPUs of its own (affinity) instead of sharing them all")


def _add_transfer_flags(p: argparse.ArgumentParser) -> None:
    from .transfer.options import FREEZE, PRETRAINED  # no torch

    g = p.add_argument_group("transfer learning (see the README's Transfer learning section)")
    g.add_argument("--pretrained", choices=PRETRAINED,
                   help="tv:/timm: models: published weights with their own mean, std and input size")
    g.add_argument("--weights", metavar="FILE", help="local file of the --pretrained weights (offline)")
    g.add_argument("--init-from", metavar="RUN_DIR|FILE",
                   help="start from a cifarlab run or a state-dict file: the layers that match are loaded")
    g.add_argument("--freeze", choices=FREEZE, help="backbone: train the head only (default none: fine-tune all)")
    g.add_argument("--unfreeze-schedule", metavar="SPEC",
                   help="with --freeze backbone: stage-per-epoch, or E:MODULE,... (MODULE trains after E epochs)")
    g.add_argument("--backbone-lr-scale", type=float, metavar="S", help="backbone lr = S x lr (default 1)")
    g.add_argument("--freeze-bn", action="store_true", default=None,
                   help="keep every batch-norm layer's statistics fixed while training")
    g.add_argument("--input-size", type=int, metavar="PX",
                   help="upsample batches to PX x PX on the device, e.g. 64, 96, 224 (pretrained: default theirs)")


def _augment_spec(text: str) -> str:
    from .augment import parse_augment_spec

    try:
        parse_augment_spec(text)
    except CifarlabError as e:
        raise argparse.ArgumentTypeError(str(e).removeprefix("unknown --augment ")) from None
    return text


def _add_regularization_flags(p: argparse.ArgumentParser) -> None:
    from .augment import list_augments  # no torch: the registry is light

    g = p.add_argument_group("augmentation and regularization")
    g.add_argument("--augment", type=_augment_spec, metavar="SPEC",
                   help=f"training-batch augmentation: {', '.join(list_augments())}; combine with +, e.g. "
                        "standard+cutout or standard+mixup (default none; see cifarlab augment-preview)")
    g.add_argument("--l1", type=float, metavar="LAMBDA", help="add LAMBDA·sum|w| to the loss (conv/linear weights)")
    g.add_argument("--l2", type=float, metavar="LAMBDA", help="add LAMBDA·sum w² to the loss, the classic L2 "
                                                               "penalty (--weight-decay is the optimizer's)")
    g.add_argument("--dropout", type=float, metavar="P", help="the model's dropout rate (models with dropout)")
    g.add_argument("--drop-path", type=float, metavar="P", help="stochastic depth rate (residual models)")
    g.add_argument("--early-stopping", type=int, metavar="PATIENCE",
                   help="stop after PATIENCE epochs without a better validation accuracy")
    g.add_argument("--ema", type=float, metavar="DECAY",
                   help="validate, test and save an exponential moving average of the weights, e.g. 0.999")


def _train_config(args: argparse.Namespace) -> TrainConfig:
    values = load_yaml_config(args.config) if args.config else {}
    for name in TrainConfig.__dataclass_fields__:
        value = getattr(args, name, None)
        if value is not None:
            values[name] = value
    return TrainConfig.from_dict(values)


def cmd_train(args: argparse.Namespace) -> int:
    from .training import train

    if args.resume:
        flags = {k: getattr(args, k) for k in TrainConfig.__dataclass_fields__ if getattr(args, k, None) is not None}
        result = train(resume=args.resume, verbose=not args.quiet, **flags)
    elif args.from_study:
        from .tuning import config_from_study

        flags = load_yaml_config(args.config) if args.config else {}
        flags.update({k: getattr(args, k) for k in TrainConfig.__dataclass_fields__
                      if getattr(args, k, None) is not None})
        cfg, info = config_from_study(args.from_study, args.study, flags)
        if not args.quiet:
            print(f"study {info['study']}: retraining trial {info['trial']} (val accuracy {info['val_accuracy']:.4f}) "
                  f"on train + val, then testing once: "
                  + ", ".join(f"{k}={v}" for k, v in info["params"].items()))
        result = train(cfg, overwrite=args.overwrite, verbose=not args.quiet)
    else:
        result = train(_train_config(args), overwrite=args.overwrite, verbose=not args.quiet)
    if args.quiet and os.environ.get("RANK", "0") == "0":  # under torchrun: rank 0 only
        print(json.dumps({"test_accuracy": result.summary["test_accuracy"], "run_dir": str(result.run_dir)}))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from .pipeline import run

    settings = load_yaml_config(args.config) if args.config else {}  # flags override the file
    settings.update({k: getattr(args, k) for k in TrainConfig.__dataclass_fields__
                     if getattr(args, k, None) is not None})
    data, out = settings.pop("data", None), settings.pop("out", None)
    run(data, out, model=settings.pop("model", "baseline"), epochs=settings.pop("epochs", 2),
        explain_per_class=args.explain_per_class, methods=args.methods, robustness_images=args.robustness_images,
        embed_samples=args.embed_samples, overwrite=args.overwrite, device=settings.pop("device", "auto"), **settings)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from .reporting import report

    print(report(args.path, args.out))
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from .webapp import serve

    serve(args.run_dir, host=args.host, port=args.port, device=args.device, max_upload_mb=args.max_upload_mb)
    return 0


def _num(kind: type, **bounds: float) -> Callable[[str], float]:
    """An argparse type: an int or a finite float within bounds (config.Range: gt, ge, lt, le)."""
    limits = Range(**bounds)

    def parse(text: str) -> float:
        value = kind(text)  # a ValueError: argparse's own "invalid int value" message
        if not math.isfinite(value) or value not in limits:
            raise argparse.ArgumentTypeError(f"must be {limits}, got {text}")
        return value
    parse.__name__ = kind.__name__
    return parse


_SEED = _num(int, **dataclasses.asdict(field_range("seed")))  # numpy's 32-bit seeds, as TrainConfig.seed


def _names(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _ints(flag: str):
    def parse(text: str) -> list[int]:
        try:
            seeds = [_SEED(t) for t in _names(text)]
        except (ValueError, argparse.ArgumentTypeError):
            seeds = []
        if not seeds:
            raise argparse.ArgumentTypeError(f"{flag} takes comma-separated integers {field_range('seed')}, got "
                                             f"{text!r}")
        return seeds
    return parse


def cmd_probe(args: argparse.Namespace) -> int:
    from .transfer.probe import linear_probe

    values = load_yaml_config(args.config) if args.config else {}
    values.update({k: getattr(args, k) for k in TrainConfig.__dataclass_fields__ if getattr(args, k, None) is not None})
    if args.run_dir:  # the backbone of a trained run: its model and weights
        from .training.rundir import read_run_config

        run_cfg = read_run_config(args.run_dir)["config"]
        values.setdefault("model", run_cfg["model"])
        values.setdefault("init_from", args.run_dir)
        for key in ("cifar_stem", "model_kwargs", "input_size", "data"):
            values.setdefault(key, run_cfg.get(key))
    r = linear_probe(TrainConfig.from_dict({k: v for k, v in values.items() if v is not None}), out=args.out,
                     probe_epochs=args.probe_epochs, C=args.C, use_cache=args.cache, verbose=not args.quiet)
    if args.quiet:
        print(json.dumps(r.as_dict()))
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from .experiments import compare

    rows = compare(_names(args.models), args.out, seeds=args.seeds, same_recipe=args.same_recipe,
                   budget_minutes=args.budget_minutes, base=_train_config(args), parallel=args.parallel,
                   pin_cores=args.pin_cores)
    failed = [r["model"] for r in rows if r["error"]]
    print((Path(args.out) / "compare.md").read_text())
    if failed:
        print(f"cifarlab compare: {len(failed)} model(s) failed: {', '.join(failed)} (see the table)", file=sys.stderr)
    return 1 if len(failed) == len(rows) else 0


def cmd_augment_preview(args: argparse.Namespace) -> int:
    from .augment import augment_preview

    path = augment_preview(args.augment, args.out, data=args.data, n=args.n, views=args.views, seed=args.seed,
                           scale=args.scale)
    print(f"{path}  ({args.n} training images: the original, then {args.views} views of {args.augment})")
    return 0


def cmd_lr_find(args: argparse.Namespace) -> int:
    from .training import lr_find

    r = lr_find(_train_config(args), out=args.out, start=args.start, end=args.end, steps=args.steps)
    steep = f"; steepest descent at {r.steepest_lr:.3g}" if r.steepest_lr else ""
    print(f"suggested lr {r.suggested_lr:.3g} (min/10: the smoothed loss is lowest at {r.min_loss_lr:.3g}){steep}; "
          f"{len(r.lrs)} steps{', stopped when the loss diverged' if r.diverged else ''}")
    print(f"plot: {r.figure}  numbers: {r.json}")
    return 0


def cmd_tune(args: argparse.Namespace) -> int:
    from .tuning import tune

    r = tune(_train_config(args), args.out, trials=args.trials, timeout=args.timeout, storage=args.storage,
             study_name=args.study, space=args.space, pruner=args.pruner, workers=args.workers,
             pin_cores=args.pin_cores)
    print((Path(args.out) / "trials.md").read_text())  # it names the best trial and what pruning saved
    who = f"its {args.workers} worker processes" if args.workers > 1 else "this process"
    print(f"{who} ran {len(r.ran)} trial(s): {' '.join(f'#{n}' for n in r.ran) or '-'}")
    print(f"retrain the best on train + val and test it once: cifarlab train --from-study {args.out}"
          + (f" --study {r.study_name}" if args.storage else ""))
    return 0


def cmd_ablate(args: argparse.Namespace) -> int:
    from .experiments import ablate

    rows = ablate(args.model, args.vary, args.out, seeds=args.seeds, base=_train_config(args),
                  parallel=args.parallel, pin_cores=args.pin_cores)
    print((Path(args.out) / "ablation.md").read_text())
    failed = [r["value"] for r in rows if r["error"]]
    if failed:
        print(f"cifarlab ablate: {len(failed)} value(s) failed: {', '.join(failed)} (see the table)", file=sys.stderr)
    return 1 if len(failed) == len(rows) else 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .api import evaluate

    r = evaluate(args.run_dir, args.data, split=args.split, device=args.device, precision=args.precision,
                 tta=args.tta)
    if args.json:
        print(json.dumps(r, indent=2))
    else:
        print(f"{r['split']} accuracy {r['accuracy']:.4f}  top-3 {r['top3_accuracy']:.4f}  loss {r['loss']:.4f}  "
              f"({r['images']:,} images, {r['images_per_second']:,.0f} img/s, {r['device']} {r['precision']}, "
              f"tta {r['tta']})")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from .api import predict

    images = args.images
    if args.onnx:  # no run directory: every positional is an image
        images = [args.run_dir, *images]
    elif not images:
        raise CifarlabError("give RUN_DIR and at least one IMAGE (or --onnx MODEL.onnx and images)")
    results = predict(None if args.onnx else args.run_dir, images, top_k=args.top_k, device=args.device,
                      onnx=args.onnx)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for r in results:
            print(r["image"] + ": " + ", ".join(f"{p['class']} {p['probability']:.1%}" for p in r["predictions"]))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from ._runlock import writing_into
    from .deploy import export

    target = Path(args.out).parent if args.out else Path(args.run_dir)  # default: RUN_DIR/model.onnx
    with writing_into(target, args.run_dir, lock_outside=False):
        r = export(args.run_dir, format=args.format, out=args.out, opset=args.opset)
    if args.json:
        print(json.dumps(r.as_dict(), indent=2))
    else:
        print(f"{r.path}  ({r.format} opset {r.opset}, {r.size_bytes / 1e6:.1f} MB, batch axis dynamic; "
              f"{len(r.metadata['classes'])} classes and mean/std in its metadata)")
        print(f"checked against PyTorch on random images: max abs logit difference {r.max_abs_diff:.2e} "
              f"(logits up to {r.max_abs_logit:.1f}), same top class for {r.top1_agreement:.0%}")
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from .models.profile import describe_models

    if args.summary:
        from .models.profile import model_summary

        if not args.pattern or any(ch in args.pattern for ch in "*?["):
            raise CifarlabError("--summary describes one model: name it, e.g. cifarlab models resnet20 --summary")
        describe_models(args.pattern)  # the one-line error for an unknown name
        print(model_summary(args.pattern))
        return 0
    rows = describe_models(args.pattern)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'model':<20} {'params':>12} {'MFLOPs':>10}  {'recipe':<40} description")
    for r in rows:
        rec = r["recipe"]
        recipe = f"{rec['optimizer']} lr {rec['lr']:g} bs {rec['batch_size']} {rec['schedule']} {rec['epochs']} ep"
        print(f"{r['name']:<20} {r['params']:>12,} {r['mflops']:>10,.1f}  {recipe:<40} {r['description']}")
    print("MFLOPs: forward pass of one 3x32x32 image, a multiply-add counted as 2 FLOPs (fvcore and papers that "
          "quote MACs give half)")
    print("also: tv:NAME (any torchvision classification model), timm:NAME (any timm model); --cifar-stem adapts")
    return 0


def _writes_into(name: str) -> Callable:
    """For a command that writes RUN_DIR/<name> (or its --out): the output must be writable, and the run
    directory stays locked meanwhile (no `train --overwrite` of it, no second writer)."""
    def wrap(cmd: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
        @functools.wraps(cmd)
        def run(args: argparse.Namespace) -> int:
            from ._runlock import writing_into

            with writing_into(args.out or Path(args.run_dir) / name, args.run_dir):
                return cmd(args)
        return run
    return wrap


@_writes_into("analysis")
def cmd_analyze(args: argparse.Namespace) -> int:
    from .analysis import analyze

    analyze(args.run_dir, split=args.split, data=args.data, out=args.out, label_check=args.label_check,
            label_check_folds=args.label_check_folds, label_check_epochs=args.label_check_epochs,
            robustness_images=args.robustness_images, device=args.device, precision=args.precision)
    return 0


@_writes_into("features")
def cmd_features(args: argparse.Namespace) -> int:
    from .features import channel_top_images, feature_maps, first_layer_filters
    from .features.inputs import default_out
    from .features.maps import parse_channel_spec

    if not args.image and not args.channel_top_images:
        raise CifarlabError("give --image IMG (feature maps) and/or --channel-top-images LAYER:CHANNEL")
    out = default_out(args.run_dir, args.out, "features")
    spec = parse_channel_spec(args.channel_top_images) if args.channel_top_images else None
    if args.image:
        written = list(feature_maps(args.run_dir, args.image, args.layers, top_k_channels=args.top_k_channels,
                                    out=out, device=args.device).figures.values())
    else:
        written = [first_layer_filters(args.run_dir, out=out, device=args.device)[1]]
    if spec:
        written.append(channel_top_images(args.run_dir, *spec, k=args.k, out=out, data=args.data,
                                          device=args.device)["figure"])
    print("\n".join(str(f) for f in written))
    return 0


@_writes_into("embed")
def cmd_embed(args: argparse.Namespace) -> int:
    from .features import embed
    from .features.inputs import default_out

    r = embed(args.run_dir, args.method, args.samples or None, out=default_out(args.run_dir, args.out, "embed"),
              data=args.data, seed=args.seed, device=args.device)
    print(f"{r.figure}  ({len(r.labels)} test images, accuracy {r.accuracy:.1%}, "
          f"{int((r.labels != r.preds).sum())} misclassified marked x)")
    return 0


@_writes_into("explain")
def cmd_explain(args: argparse.Namespace) -> int:
    from .attribution.api import evaluate_explanations, explain, explain_gallery, metrics_table
    from .features.inputs import default_out

    given = [f for f, v in (("--image", args.image), ("--images", args.images),
                            ("--samples-per-class", args.samples_per_class)) if v is not None]
    if len(given) > 1:
        raise CifarlabError(f"give only one of --image, --images, --samples-per-class (got {', '.join(given)})")
    if not given and not args.evaluate:
        raise CifarlabError("give --image IMG, --images DIR, --samples-per-class N or --evaluate N")
    if args.mistakes and args.samples_per_class is None:
        raise CifarlabError("--mistakes picks misclassified test images: use it with --samples-per-class N")
    out = default_out(args.run_dir, args.out, "explain")
    options = {k: getattr(args, k) for k in ("ig_steps", "smoothgrad_samples", "occlusion_window", "occlusion_stride")
               if getattr(args, k) is not None}
    common = {"layer": args.layer, "out": out, "steps": args.steps, "baseline": args.baseline,
              "device": args.device, **options}
    if args.method is None and (args.image or given):
        from .attribution.choice import choose_method

        choice = choose_method(args.run_dir)
        print(f"method {choice.caption()}")
    if args.image:
        r = explain(args.run_dir, args.image, args.method, target=args.target, trust_checks=args.trust, **common)
        print(f"{r.figure}  (top: {r.predicted} {r.probability:.1%}"
              + (f"; target {r.target} {r.target_probability:.1%}" if r.target else "") + ")")
        if r.metrics:
            print(metrics_table(r.metrics))
    elif given:
        g = explain_gallery(args.run_dir, images=args.images, samples_per_class=args.samples_per_class,
                            mistakes=args.mistakes, method=args.method, target=args.target, data=args.data,
                            trust_checks=args.trust, **common)
        print(f"{g.figure}  ({len(g.images)} images)")
        if g.metrics:
            print(metrics_table(g.metrics))
    if args.evaluate:
        ev = evaluate_explanations(args.run_dir, args.evaluate, args.method or "all", data=args.data, **common)
        print(f"evaluation over {ev['images']} test images:")
        print(metrics_table(ev["methods"]))
    print(f"numbers: {out / 'explain.json'} and {out / 'explain.md'}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="cifarlab", description="Learn, run and understand image classification on CIFAR-10.")
    parser.add_argument("--version", action="version", version=f"cifarlab {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser("train", help="train a model and write a run directory")
    _add_train_flags(p)
    p.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run from its last checkpoint")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run directory")
    p.add_argument("--quiet", action="store_true", help="no progress; print one JSON line at the end")
    p.add_argument("--from-study", metavar="DIR_OR_STORAGE",
                   help="retrain the best trial of a tune study on train + val (val size 0) and test once")
    p.add_argument("--study", metavar="NAME", help="the study's name, with --from-study (default: the only one)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("probe", help="frozen backbone, fast: cache its features once, fit a linear head and "
                                     "a logistic regression on them")
    p.add_argument("run_dir", nargs="?", help="probe the backbone of this trained run (else --model and "
                                              "--pretrained / --init-from)")
    _add_train_flags(p)
    p.add_argument("--probe-epochs", type=_num(int, ge=1), default=50, help="epochs of the linear head (default 50)")
    p.add_argument("-C", type=_num(float, gt=0), default=1.0,
                   help="inverse L2 strength of the logistic regression (default 1)")
    p.add_argument("--cache", action=argparse.BooleanOptionalAction, default=True,
                   help="read/write the feature cache under $CIFARLAB_CACHE/features (default on)")
    p.add_argument("--quiet", action="store_true", help="no progress; print the result as one JSON line")
    p.set_defaults(func=cmd_probe)
    p = sub.add_parser("run", help="the main job: train the baseline (2 epochs), analyze it, explain a sample "
                                   "and write the HTML report")
    _add_train_flags(p)
    p.add_argument("--overwrite", action="store_true", help="replace an existing run directory")
    p.add_argument("--explain-per-class", type=int, default=1, metavar="N",
                   help="test images per class to explain (default 1; 0 skips explanations and feature maps)")
    p.add_argument("--methods", default="gradcam,saliency,integrated-gradients",
                   help="explanation methods, comma-separated (default gradcam,saliency,integrated-gradients)")
    p.add_argument("--robustness-images", default="1000", metavar="N",
                   help="images to measure corruptions on (default 1000; 'all'; 0 skips)")
    p.add_argument("--embed-samples", type=int, default=2000, metavar="N",
                   help="test images in the PCA embedding (default 2000; 0 skips)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("compare", help="train several models on the same data and compare them")
    p.add_argument("--models", required=True, help="comma-separated model names, e.g. baseline,vgg11,resnet20")
    p.add_argument("--seeds", type=_ints("--seeds"), default=[0], help="comma-separated seeds (default 0)")
    p.add_argument("--same-recipe", action="store_true",
                   help="one shared recipe for every model (flags, else SGD 0.1 batch 128 cosine)")
    p.add_argument("--out", required=True, metavar="DIR")
    _add_worker_flags(p, "--parallel", "train N runs")
    _add_train_flags(p, single_run=False)
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("augment-preview", help="a PNG grid of training images and augmented views of them")
    p.add_argument("--augment", required=True, type=_augment_spec, metavar="SPEC", help="e.g. keras, standard+cutout")
    p.add_argument("--data", help="the data to take training images from (default as for train)")
    p.add_argument("--out", required=True, metavar="PNG")
    p.add_argument("--n", type=_num(int, ge=1, le=1000), default=8, help="how many images, one per row (default 8)")
    p.add_argument("--views", type=_num(int, ge=1, le=100), default=5, help="augmented views per image (default 5)")
    p.add_argument("--scale", type=_num(int, ge=1, le=64), default=4, help="nearest-neighbour enlargement (default 4)")
    p.add_argument("--seed", type=_SEED, default=0)
    _add_thread_flags(p)
    p.set_defaults(func=cmd_augment_preview)

    p = sub.add_parser("lr-find", help="learning-rate range test: loss against an exponentially growing lr")
    p.add_argument("--model", help="registered model name (default: baseline)")
    p.add_argument("--start", type=_num(float, gt=0), default=1e-6, help="first learning rate (default 1e-6)")
    p.add_argument("--end", type=_num(float, gt=0), default=1.0, help="last learning rate (default 1)")
    p.add_argument("--steps", type=_num(int, ge=5), default=100, help="mini-batches, one lr each (default 100)")
    p.add_argument("--seed", type=_SEED)
    p.add_argument("--out", required=True, metavar="DIR", help="where to write lr_find.png and lr_find.json")
    _add_train_flags(p, single_run=False)
    p.set_defaults(func=cmd_lr_find)

    p = sub.add_parser("tune", help="Optuna search over training settings on the validation split")
    p.add_argument("--model", help="registered model name (default: baseline)")
    p.add_argument("--trials", type=_num(int, ge=1), required=True,
                   help="complete + pruned trials the study should hold")
    p.add_argument("--timeout", type=_num(float, gt=0), metavar="S", help="stop starting trials after S seconds")
    p.add_argument("--storage", metavar="URL", help="Optuna storage (default: sqlite:///DIR/study.db)")
    p.add_argument("--study", metavar="NAME", help="study name (default: cifarlab-MODEL)")
    p.add_argument("--space", metavar="FILE", help="YAML search space: name: {type, low, high, log, choices} "
                                                    "(default: lr, weight decay, batch size, label smoothing, "
                                                    "dropout, augmentation)")
    p.add_argument("--pruner", choices=("median", "hyperband", "none"), default="median")
    p.add_argument("--seed", type=_SEED, help="training seed of every trial (default 0)")
    p.add_argument("--out", required=True, metavar="DIR")
    _add_worker_flags(p, "--workers", "run N worker processes sharing the study")
    _add_train_flags(p, single_run=False)
    p.set_defaults(func=cmd_tune)

    p = sub.add_parser("ablate", help="vary one training setting, everything else fixed; accuracy per value")
    p.add_argument("--model", required=True)
    p.add_argument("--vary", required=True, metavar="FIELD=V1,V2", help="e.g. augment=none,keras,standard")
    p.add_argument("--seeds", type=_ints("--seeds"), default=[0], help="comma-separated seeds (default 0)")
    p.add_argument("--out", required=True, metavar="DIR")
    _add_worker_flags(p, "--parallel", "train N runs")
    _add_train_flags(p, single_run=False)
    p.set_defaults(func=cmd_ablate)

    p = sub.add_parser("evaluate", help="accuracy and loss of a trained run on the test split")
    p.add_argument("run_dir")
    p.add_argument("--data", help="data to evaluate on (default: the run's own)")
    p.add_argument("--split", choices=("test", "val"), default="test")
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16"), default="auto",
                   help="auto: fp32 (exact logits); bf16/fp16 run the body in low precision, the head in fp32")
    p.add_argument("--tta", choices=TTA_MODES, help="test-time augmentation (default: the run's own --tta)")
    p.add_argument("--json", action="store_true")
    _add_thread_flags(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("predict", help="classify image files with a trained run (or an exported ONNX model)",
                       usage="cifarlab predict RUN_DIR IMAGE [IMAGE ...] | --onnx MODEL.onnx IMAGE [IMAGE ...]")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("images", nargs="*", metavar="IMAGE")
    p.add_argument("--top-k", type=_num(int, ge=1), default=3)
    p.add_argument("--device", default="auto")
    p.add_argument("--onnx", metavar="MODEL.onnx",
                   help="run this model (from cifarlab export) with ONNX Runtime on the CPU; no RUN_DIR")
    p.add_argument("--json", action="store_true")
    _add_thread_flags(p)
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("export", help="export a trained run's model to ONNX, checked against PyTorch")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--format", default="onnx", help="onnx (the only format so far)")
    p.add_argument("--out", metavar="FILE", help="where to write the model (default: RUN_DIR/model.onnx)")
    p.add_argument("--opset", type=_num(int, ge=7), help="ONNX opset version (default: the exporter's)")
    p.add_argument("--json", action="store_true")
    _add_thread_flags(p)
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("models", help="list the registered models with parameters and FLOPs "
                                      "(a multiply-add counted as 2 FLOPs)")
    p.add_argument("pattern", nargs="?", help="glob filter, e.g. 'resnet*', or one model name")
    p.add_argument("--summary", action="store_true",
                   help="one model's layers with output shapes and parameters, like Keras' model.summary()")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("analyze", help="error analysis of a trained run: metrics, confusions, galleries, "
                                       "calibration, robustness, label check")
    p.add_argument("run_dir")
    p.add_argument("--split", choices=("test", "val"), default="test")
    p.add_argument("--data", help="data to analyze (default: the run's own)")
    p.add_argument("--out", metavar="DIR", help="where to write the pictures and analysis.json "
                                                "(default: RUN_DIR/analysis)")
    p.add_argument("--label-check", action=argparse.BooleanOptionalAction, default=False,
                   help="look for suspected label problems in the training data by K-fold cross-validation "
                        "(trains K models; off by default)")
    p.add_argument("--label-check-folds", type=_num(int, ge=2), default=3, metavar="K")
    p.add_argument("--label-check-epochs", type=_num(int, ge=1), metavar="N",
                   help="epochs per fold model (default: the run's epochs, at most 5)")
    p.add_argument("--robustness-images", default="1000", metavar="N",
                   help="images of the split to measure corruptions on (default 1000; 'all'; 0 skips)")
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16"), default="auto",
                   help="auto: fp32 (exact logits); bf16/fp16 run the body in low precision, the head in fp32")
    _add_thread_flags(p)
    p.set_defaults(func=cmd_analyze)
    p = sub.add_parser("features", help="feature maps of chosen layers for one image, first-layer filters, "
                                        "and the test images that excite a channel most")
    p.add_argument("run_dir")
    p.add_argument("--image", metavar="IMG", help="image file (any size or mode; resized to 32x32)")
    p.add_argument("--layers", metavar="L1,L2", help="dotted module names (default: the model's stages)")
    p.add_argument("--top-k-channels", type=_num(int, ge=1), metavar="K",
                   help="only the K most active channels, most active first")
    p.add_argument("--channel-top-images", metavar="LAYER:CH", help="the test images that excite this channel most")
    p.add_argument("--k", type=_num(int, ge=1), default=16,
                   help="how many images for --channel-top-images (default 16)")
    p.add_argument("--data", help="data for --channel-top-images (default: the run's own)")
    p.add_argument("--out", metavar="DIR", help="where to write the PNGs (default: RUN_DIR/features)")
    p.add_argument("--device", default="auto")
    _add_thread_flags(p)
    p.set_defaults(func=cmd_features)

    p = sub.add_parser("embed", help="penultimate-layer features of the test split in 2-D (PCA, t-SNE, UMAP)")
    p.add_argument("run_dir")
    p.add_argument("--method", choices=("pca", "tsne", "umap"), default="pca",
                   help="umap needs the umap-learn package (default: pca)")
    p.add_argument("--samples", type=_num(int, ge=0), default=2000, metavar="N",
                   help="random test images (default 2000; 0: all)")
    p.add_argument("--seed", type=_SEED, default=0)
    p.add_argument("--data", help="data to embed (default: the run's own)")
    p.add_argument("--out", metavar="DIR", help="where to write embed_METHOD.png (default: RUN_DIR/embed)")
    p.add_argument("--device", default="auto")
    _add_thread_flags(p)
    p.set_defaults(func=cmd_embed)

    from .attribution.methods import list_explainers  # no torch: the registry is light

    p = sub.add_parser("explain", help="why the model predicts what it does: Captum heat maps (Grad-CAM, "
                                       "Integrated Gradients, ...) and how far they can be trusted")
    p.add_argument("run_dir")
    g = p.add_argument_group("what to explain (one of; --evaluate may stand alone)")
    g.add_argument("--image", metavar="IMG", help="one image file")
    g.add_argument("--images", metavar="DIR", help="a folder of image files: one gallery")
    g.add_argument("--samples-per-class", type=_num(int, ge=1), metavar="N",
                   help="N test images per class: one gallery")
    g.add_argument("--mistakes", action="store_true", help="with --samples-per-class: only misclassified images")
    g.add_argument("--evaluate", type=_num(int, ge=1), metavar="N",
                   help="deletion/insertion AUC and the randomization check over N test images, for every method "
                        "unless --method is given; later explains, run's report and serve show the most faithful")
    g = p.add_argument_group("method")
    g.add_argument("--method", choices=[*list_explainers(), "all"],
                   help="all: every method side by side (default: the run's most faithful method by its measured "
                        "deletion AUC, from an earlier explain --evaluate or run; gradcam without measurements)")
    g.add_argument("--target", metavar="CLASS", help="also explain this class (name or index)")
    g.add_argument("--layer", metavar="NAME", help="CAM layer (default: the model's default_cfg cam_layer)")
    g.add_argument("--ig-steps", type=_num(int, ge=1), metavar="N", help="integrated-gradients steps (default 32)")
    g.add_argument("--smoothgrad-samples", type=_num(int, ge=1), metavar="N",
                   help="noisy copies for smoothgrad (default 16)")
    g.add_argument("--occlusion-window", type=_num(int, ge=1, le=32), metavar="PX",
                   help="occlusion patch size (default 4)")
    g.add_argument("--occlusion-stride", type=_num(int, ge=1, le=32), metavar="PX", help="occlusion stride (default 2)")
    g = p.add_argument_group("trust checks")
    g.add_argument("--trust", action=argparse.BooleanOptionalAction, default=True,
                   help="deletion/insertion AUC and the randomization check for the explained images (default on)")
    g.add_argument("--steps", type=_num(int, ge=1), default=16, help="deletion/insertion steps (default 16)")
    g.add_argument("--baseline", choices=("mean", "blur"), default="mean",
                   help="what removed pixels become: the mean colour or a blurred image (default mean)")
    p.add_argument("--data", help="data for --samples-per-class / --evaluate (default: the run's own)")
    p.add_argument("--out", metavar="DIR",
                   help="where to write PNGs, explain.json, explain.md (default: RUN_DIR/explain)")
    p.add_argument("--device", default="auto")
    _add_thread_flags(p)
    p.set_defaults(func=cmd_explain)

    p = sub.add_parser("report", help="one self-contained HTML report of a run, compare, tune or ablate directory")
    p.add_argument("path", metavar="RUN_DIR|COMPARE_DIR")
    p.add_argument("--out", metavar="HTML", help="where to write it (default: DIR/report.html)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("serve", help="a local web page to try a trained run: upload an image, see the top-5 "
                                     "classes and the Grad-CAM overlay")
    p.add_argument("run_dir")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1: this machine only; 0.0.0.0 opens it to the network)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--device", default="auto")
    p.add_argument("--max-upload-mb", type=float, default=5.0, metavar="MB",
                   help="largest upload accepted (default 5)")
    _add_thread_flags(p)
    p.set_defaults(func=cmd_serve)
    return parser


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"cifarlab: warning: {message}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USER_ERROR
    warnings.showwarning = _one_line_warning
    func: Callable[[argparse.Namespace], int] = args.func
    for name, value in vars(args).items():  # no path or name can hold one (a shell cannot even pass it)
        if any("\0" in v for v in (value if isinstance(value, list) else [value]) if isinstance(v, str)):
            print(f"cifarlab {args.command}: error: {name} contains a NUL character", file=sys.stderr)
            return EXIT_USER_ERROR
    try:
        if hasattr(args, "threads"):  # once, before the command loads torch: the wait policy must come first
            from ._threads import configure

            configure(args.threads, args.thread_wait)
        return func(args)
    except CifarlabError as e:  # one line, even when the message quotes a name with a line break in it
        print(f"cifarlab {args.command}: error: {' '.join(str(e).splitlines())}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("cifarlab: interrupted", file=sys.stderr)
        return 130
    except OSError as e:  # the file system said no (read-only, full, a file in the way): one line with the path
        if e.errno not in _FILE_SYSTEM_ERRORS or not e.filename:
            raise
        path = f"{e.filename} -> {e.filename2}" if e.filename2 else e.filename
        hint = " (a file is in the way)" if e.errno in (errno.EEXIST, errno.ENOTDIR) else ""
        print(f"cifarlab {args.command}: error: cannot use {path}: {e.strerror}{hint}", file=sys.stderr)
        return EXIT_USER_ERROR
    except Exception as e:  # under torchrun: a rank died or hung; one line instead of every rank's traceback
        from .training.distributed import collective_failure

        message = collective_failure(e)
        if message is None:
            raise
        print(f"cifarlab {args.command}: error: {message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

"""The `cifarlab` command: a thin layer over the Python API. Each subcommand parses its flags (the training
settings generated from TrainConfig by _flags) and calls one function; user errors print one line (no
traceback) and exit non-zero."""
from __future__ import annotations

import argparse
import errno
import functools
import json
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

from . import __version__
from ._flags import (
    EXIT_USER_ERROR,
    SEED,
    HelpFormatter,
    Parser,
    add_config_flags,
    add_shared,
    add_worker_flags,
    augment_spec,
    config_from_flags,
    config_values,
    flag_fields,
    given_flags,
    names,
    num,
    seeds,
)
from .attribution.methods import list_explainers
from .errors import CifarlabError

_train_config = config_from_flags  # the name tests and older code use
_FILE_SYSTEM_ERRORS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.ENOTDIR,
                       errno.EISDIR, errno.EEXIST, errno.ENOENT, errno.ENAMETOOLONG}
# The TrainConfig fields each command takes as flags (train and run: all of them).
_PER_RUN = ("model", "recipe", "seed", "out", "tensorboard")  # compare and ablate set these per run
_TORCHRUN = ("sync_bn", "dist_timeout")  # only a torchrun launch of train uses these
_LR_FIND = ("model", "recipe", "cifar_stem", "batch_size", "optimizer", "weight_decay", "momentum", "nesterov",
            "label_smoothing", "pretrained", "weights", "init_from", "freeze", "backbone_lr_scale", "freeze_bn",
            "input_size", "augment", "l1", "l2", "dropout", "drop_path", "data", "train_size", "val_size", "classes",
            "label_fraction", "seed", "device", "precision", "channels_last", "compile", "grad_accum")
_PROBE = ("model", "cifar_stem", "pretrained", "weights", "init_from", "input_size", "data", "train_size",
          "val_size", "classes", "label_fraction", "seed", "device", "precision", "eval_batch_size", "out")


def cmd_train(args: argparse.Namespace) -> int:
    from .training import train

    if args.resume:
        result = train(resume=args.resume, verbose=not args.quiet, **given_flags(args))
    elif args.from_study:
        from .tuning import config_from_study

        cfg, info = config_from_study(args.from_study, args.study, config_values(args))
        if not args.quiet:
            print(f"study {info['study']}: retraining trial {info['trial']} (val accuracy {info['val_accuracy']:.4f}) "
                  f"on train + val, then testing once: " + ", ".join(f"{k}={v}" for k, v in info["params"].items()))
        result = train(cfg, overwrite=args.overwrite, verbose=not args.quiet)
    else:
        result = train(config_from_flags(args), overwrite=args.overwrite, verbose=not args.quiet)
    if args.quiet and os.environ.get("RANK", "0") == "0":  # under torchrun: rank 0 only
        print(json.dumps({"test_accuracy": result.summary["test_accuracy"], "run_dir": str(result.run_dir)}))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from .pipeline import run

    settings = config_values(args)
    data, out = settings.pop("data", None), settings.pop("out", None)
    run(data, out, model=settings.pop("model", "baseline"), epochs=settings.pop("epochs", 2),
        explain_per_class=args.explain_per_class, methods=args.methods, robustness_images=args.robustness_images,
        embed_samples=args.embed_samples, overwrite=args.overwrite, device=settings.pop("device", "auto"), **settings)
    return 0


def cmd_probe(args: argparse.Namespace) -> int:
    from .config import TrainConfig
    from .transfer.probe import linear_probe

    values = config_values(args)
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


def _table_then_failures(rows: list[dict], table: Path, key: str, what: str, command: str) -> int:
    """compare / ablate: print the table; name the rows that failed; exit 1 when all of them did."""
    print(table.read_text())
    failed = [r[key] for r in rows if r["error"]]
    if failed:
        print(f"cifarlab {command}: {len(failed)} {what}(s) failed: {', '.join(failed)} (see the table)",
              file=sys.stderr)
    return 1 if len(failed) == len(rows) else 0


def cmd_compare(args: argparse.Namespace) -> int:
    from .experiments import compare

    rows = compare(names(args.models), args.out, seeds=args.seeds, same_recipe=args.same_recipe,
                   budget_minutes=args.budget_minutes, base=config_from_flags(args), parallel=args.parallel,
                   pin_cores=args.pin_cores)
    return _table_then_failures(rows, Path(args.out) / "compare.md", "model", "model", "compare")


def cmd_ablate(args: argparse.Namespace) -> int:
    from .experiments import ablate

    rows = ablate(args.model, args.vary, args.out, seeds=args.seeds, base=config_from_flags(args),
                  parallel=args.parallel, pin_cores=args.pin_cores)
    return _table_then_failures(rows, Path(args.out) / "ablation.md", "value", "value", "ablate")


def cmd_augment_preview(args: argparse.Namespace) -> int:
    from .augment import augment_preview

    path = augment_preview(args.augment, args.out, data=args.data, n=args.n, views=args.views, seed=args.seed,
                           scale=args.scale)
    print(f"{path}  ({args.n} training images: the original, then {args.views} views of {args.augment})")
    return 0


def cmd_lr_find(args: argparse.Namespace) -> int:
    from .training import lr_find

    r = lr_find(config_from_flags(args), out=args.out, start=args.start, end=args.end, steps=args.steps)
    steep = f"; steepest descent at {r.steepest_lr:.3g}" if r.steepest_lr else ""
    print(f"suggested lr {r.suggested_lr:.3g} (min/10: the smoothed loss is lowest at {r.min_loss_lr:.3g}){steep}; "
          f"{len(r.lrs)} steps{', stopped when the loss diverged' if r.diverged else ''}")
    print(f"plot: {r.figure}  numbers: {r.json}")
    return 0


def cmd_tune(args: argparse.Namespace) -> int:
    from .tuning import tune

    r = tune(config_from_flags(args), args.out, trials=args.trials, timeout=args.timeout, storage=args.storage,
             study_name=args.study, space=args.space, pruner=args.pruner, workers=args.workers,
             pin_cores=args.pin_cores)
    print((Path(args.out) / "trials.md").read_text())
    if r.best_params:
        print(f"best: trial {r.best_trial}, val accuracy {r.best_value:.4f}: "
              + ", ".join(f"{k}={v}" for k, v in r.best_params.items()))
    if r.seconds_saved is not None:
        print(f"pruning saved {r.pruned_epochs_saved:g} epochs ≈ {r.seconds_saved:.1f} s")
    who = f"its {args.workers} worker processes" if args.workers > 1 else "this process"
    print(f"{who} ran {len(r.ran)} trial(s): {' '.join(f'#{n}' for n in r.ran) or '-'}")
    print(f"retrain the best on train + val and test it once: cifarlab train --from-study {args.out}"
          + (f" --study {r.study_name}" if args.storage else ""))
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .api import evaluate

    r = evaluate(args.run_dir, args.data, split=args.split, device=args.device, precision=args.precision,
                 tta=args.tta)
    print(json.dumps(r, indent=2) if args.json else
          f"{r['split']} accuracy {r['accuracy']:.4f}  top-3 {r['top3_accuracy']:.4f}  loss {r['loss']:.4f}  "
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
    print(json.dumps(results, indent=2) if args.json else "\n".join(
        r["image"] + ": " + ", ".join(f"{p['class']} {p['probability']:.1%}" for p in r["predictions"])
        for r in results))
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


def cmd_report(args: argparse.Namespace) -> int:
    from .reporting import report

    print(report(args.path, args.out))
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from .webapp import serve

    serve(args.run_dir, host=args.host, port=args.port, device=args.device, max_upload_mb=args.max_upload_mb)
    return 0


def _command(sub, name: str, func: Callable, help: str, example: str, **kwargs) -> argparse.ArgumentParser:
    """A subcommand with its one-line help, a description and an example in its --help."""
    p = sub.add_parser(name, help=help, description=help[0].upper() + help[1:] + ".", epilog="example:\n  " + example,
                       formatter_class=HelpFormatter, **kwargs)
    p.set_defaults(func=func)
    return p


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="cifarlab", description="Learn, run and understand image classification on CIFAR-10.",
                    epilog="example:\n  cifarlab run --out runs/first", formatter_class=HelpFormatter)
    parser.add_argument("--version", action="version", version=f"cifarlab {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)

    p = _command(sub, "train", cmd_train, "train a model and write a run directory",
                 "cifarlab train --model resnet20 --augment standard --epochs 30 --out runs/resnet20")
    add_config_flags(p, flag_fields())
    add_shared(p, "threads")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run from its last checkpoint")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run directory")
    p.add_argument("--quiet", action="store_true", help="no progress; print one JSON line at the end")
    p.add_argument("--from-study", metavar="DIR_OR_STORAGE",
                   help="retrain the best trial of a tune study on train + val (val size 0) and test once")
    p.add_argument("--study", metavar="NAME", help="the study's name, with --from-study (default: the only one)")

    p = _command(sub, "probe", cmd_probe, "frozen backbone, fast: cache its features once, fit a linear head and a "
                 "logistic regression on them", "cifarlab probe --model tv:resnet18 --pretrained imagenet")
    p.add_argument("run_dir", nargs="?", metavar="RUN_DIR",
                   help="probe the backbone of this trained run (else --model and --pretrained / --init-from)")
    add_config_flags(p, _PROBE, out={"metavar": "DIR", "help": "where to write probe.json"})
    add_shared(p, "threads")
    p.add_argument("--probe-epochs", type=num(int, ge=1), default=50, help="epochs of the linear head")
    p.add_argument("-C", type=num(float, gt=0), default=1.0, help="inverse L2 strength of the logistic regression")
    p.add_argument("--cache", action=argparse.BooleanOptionalAction, default=True,
                   help="read/write the feature cache under $CIFARLAB_CACHE/features")
    p.add_argument("--quiet", action="store_true", help="no progress; print the result as one JSON line")

    p = _command(sub, "run", cmd_run, "the main job: train the baseline (2 epochs), analyze it, explain a sample "
                 "and write the HTML report", "cifarlab run --data ~/cifar10 --out runs/first")
    add_config_flags(p, flag_fields())
    add_shared(p, "threads")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run directory")
    p.add_argument("--explain-per-class", type=int, default=1, metavar="N",
                   help="test images per class to explain (0 skips explanations and feature maps)")
    p.add_argument("--methods", default="gradcam,saliency,integrated-gradients", metavar="M1,M2",
                   help="explanation methods, comma-separated")
    p.add_argument("--robustness-images", default="1000", metavar="N",
                   help="images to measure corruptions on ('all'; 0 skips)")
    p.add_argument("--embed-samples", type=int, default=2000, metavar="N",
                   help="test images in the PCA embedding (0 skips)")

    p = _command(sub, "compare", cmd_compare, "train several models on the same data and compare them",
                 "cifarlab compare --models baseline,resnet20 --epochs 5 --out runs/compare")
    p.add_argument("--models", required=True, metavar="M1,M2", help="comma-separated model names")
    p.add_argument("--seeds", type=seeds("--seeds"), default=[0], help="comma-separated seeds")
    p.add_argument("--same-recipe", action="store_true",
                   help="one shared recipe for every model (flags, else SGD 0.1 batch 128 cosine)")
    p.add_argument("--out", required=True, metavar="DIR", help="where to write the runs and the comparison")
    add_worker_flags(p, "--parallel", "train N runs")
    add_config_flags(p, flag_fields(*_PER_RUN, *_TORCHRUN))
    add_shared(p, "threads")

    p = _command(sub, "augment-preview", cmd_augment_preview,
                 "a PNG grid of training images and augmented views of them",
                 "cifarlab augment-preview --augment standard+cutout --out augment.png")
    p.add_argument("--augment", required=True, type=augment_spec, metavar="SPEC", help="e.g. keras, standard+cutout")
    p.add_argument("--data", metavar="PATH", help="the data to take training images from (default: as for train)")
    p.add_argument("--out", required=True, metavar="PNG", help="where to write the grid")
    p.add_argument("--n", type=num(int, ge=1, le=1000), default=8, help="how many images, one per row")
    p.add_argument("--views", type=num(int, ge=1, le=100), default=5, help="augmented views per image")
    p.add_argument("--scale", type=num(int, ge=1, le=64), default=4, help="nearest-neighbour enlargement")
    p.add_argument("--seed", type=SEED, default=0, help="which images and which views")
    add_shared(p, "threads")

    p = _command(sub, "lr-find", cmd_lr_find, "learning-rate range test: loss against an exponentially growing lr",
                 "cifarlab lr-find --model resnet20 --out runs/lr-find")
    p.add_argument("--start", type=num(float, gt=0), default=1e-6, help="first learning rate")
    p.add_argument("--end", type=num(float, gt=0), default=1.0, help="last learning rate")
    p.add_argument("--steps", type=num(int, ge=5), default=100, help="mini-batches, one lr each")
    p.add_argument("--out", required=True, metavar="DIR", help="where to write lr_find.png and lr_find.json")
    add_config_flags(p, _LR_FIND)
    add_shared(p, "threads")

    p = _command(sub, "tune", cmd_tune, "Optuna search over training settings on the validation split",
                 "cifarlab tune --model resnet20 --trials 20 --epochs 5 --out runs/tune")
    p.add_argument("--trials", type=num(int, ge=1), required=True, help="complete + pruned trials the study holds")
    p.add_argument("--timeout", type=num(float, gt=0), metavar="S", help="stop starting trials after S seconds")
    p.add_argument("--storage", metavar="URL", help="Optuna storage (default: sqlite:///DIR/study.db)")
    p.add_argument("--study", metavar="NAME", help="study name (default: cifarlab-MODEL)")
    p.add_argument("--space", metavar="FILE", help="YAML search space: name: {type, low, high, log, choices} "
                                                    "(default: lr, weight decay, batch size, label smoothing, "
                                                    "dropout, augmentation)")
    p.add_argument("--pruner", choices=("median", "hyperband", "none"), default="median",
                   help="stop unpromising trials early")
    p.add_argument("--out", required=True, metavar="DIR", help="where to write the study and its tables")
    add_worker_flags(p, "--workers", "run N worker processes sharing the study")
    add_config_flags(p, flag_fields("recipe", "out", "tensorboard", "tta", *_TORCHRUN),
                     seed={"help": "training seed of every trial (default: 0)"})
    add_shared(p, "threads")

    p = _command(sub, "ablate", cmd_ablate, "vary one training setting, everything else fixed; accuracy per value",
                 "cifarlab ablate --model resnet20 --vary augment=none,standard --epochs 5 --out runs/ablate")
    p.add_argument("--vary", required=True, metavar="FIELD=V1,V2", help="e.g. augment=none,keras,standard")
    p.add_argument("--seeds", type=seeds("--seeds"), default=[0], help="comma-separated seeds")
    p.add_argument("--out", required=True, metavar="DIR", help="where to write the runs and the table")
    add_worker_flags(p, "--parallel", "train N runs")
    add_config_flags(p, flag_fields(*_PER_RUN[1:], *_TORCHRUN), model={"required": True})
    add_shared(p, "threads")

    p = _command(sub, "evaluate", cmd_evaluate, "accuracy and loss of a trained run on the test split",
                 "cifarlab evaluate runs/resnet20 --tta flip")
    add_shared(p, "run_dir", "data", "split", "device", "precision", "tta", "json", "threads")

    p = _command(sub, "predict", cmd_predict, "classify image files with a trained run (or an exported ONNX model)",
                 "cifarlab predict runs/resnet20 cat.png dog.png --top-k 3",
                 usage="cifarlab predict RUN_DIR IMAGE [IMAGE ...] | --onnx MODEL.onnx IMAGE [IMAGE ...]")
    add_shared(p, "run_dir")
    p.add_argument("images", nargs="*", metavar="IMAGE", help="image files (any size; resized as the run was)")
    p.add_argument("--top-k", type=num(int, ge=1), default=3, metavar="K", help="classes per image, most likely first")
    p.add_argument("--onnx", metavar="MODEL.onnx",
                   help="run this model (from cifarlab export) with ONNX Runtime on the CPU; no RUN_DIR")
    add_shared(p, "device", "json", "threads")

    p = _command(sub, "export", cmd_export, "export a trained run's model to ONNX, checked against PyTorch",
                 "cifarlab export runs/resnet20 --out resnet20.onnx")
    add_shared(p, "run_dir")
    p.add_argument("--format", default="onnx", help="onnx (the only format so far)")
    p.add_argument("--out", metavar="FILE", help="where to write the model (default: RUN_DIR/model.onnx)")
    p.add_argument("--opset", type=num(int, ge=7), help="ONNX opset version (default: the exporter's)")
    add_shared(p, "json", "threads")

    p = _command(sub, "models", cmd_models, "list the registered models with parameters and FLOPs (a multiply-add "
                 "counted as 2 FLOPs)", "cifarlab models 'resnet*'\n  cifarlab models resnet20 --summary")
    p.add_argument("pattern", nargs="?", help="glob filter, e.g. 'resnet*', or one model name")
    p.add_argument("--summary", action="store_true",
                   help="one model's layers with output shapes and parameters, like Keras' model.summary()")
    add_shared(p, "json")

    p = _command(sub, "analyze", cmd_analyze, "error analysis of a trained run: metrics, confusions, galleries, "
                 "calibration, robustness, label check", "cifarlab analyze runs/resnet20 --label-check")
    add_shared(p, "run_dir", "split", "data")
    p.add_argument("--out", metavar="DIR", help="where to write the pictures and analysis.json "
                                                "(default: RUN_DIR/analysis)")
    p.add_argument("--label-check", action=argparse.BooleanOptionalAction, default=False,
                   help="look for suspected label problems in the training data by K-fold cross-validation "
                        "(trains K models)")
    p.add_argument("--label-check-folds", type=num(int, ge=2), default=3, metavar="K", help="folds of the label check")
    p.add_argument("--label-check-epochs", type=num(int, ge=1), metavar="N",
                   help="epochs per fold model (default: the run's epochs, at most 5)")
    p.add_argument("--robustness-images", default="1000", metavar="N",
                   help="images of the split to measure corruptions on ('all'; 0 skips)")
    add_shared(p, "device", "precision", "threads")

    p = _command(sub, "features", cmd_features, "feature maps of chosen layers for one image, first-layer filters, "
                 "and the test images that excite a channel most", "cifarlab features runs/resnet20 --image cat.png")
    add_shared(p, "run_dir")
    p.add_argument("--image", metavar="IMG", help="image file (any size or mode; resized to 32x32)")
    p.add_argument("--layers", metavar="L1,L2", help="dotted module names (default: the model's stages)")
    p.add_argument("--top-k-channels", type=num(int, ge=1), metavar="K",
                   help="only the K most active channels, most active first")
    p.add_argument("--channel-top-images", metavar="LAYER:CH", help="the test images that excite this channel most")
    p.add_argument("--k", type=num(int, ge=1), default=16, help="how many images for --channel-top-images")
    add_shared(p, "data", data={"metavar": "PATH", "help": "data for --channel-top-images (default: the run's own)"})
    p.add_argument("--out", metavar="DIR", help="where to write the PNGs (default: RUN_DIR/features)")
    add_shared(p, "device", "threads")

    p = _command(sub, "embed", cmd_embed, "penultimate-layer features of the test split in 2-D (PCA, t-SNE, UMAP)",
                 "cifarlab embed runs/resnet20 --method tsne")
    add_shared(p, "run_dir")
    p.add_argument("--method", choices=("pca", "tsne", "umap"), default="pca", help="umap needs umap-learn")
    p.add_argument("--samples", type=num(int, ge=0), default=2000, metavar="N", help="random test images (0: all)")
    p.add_argument("--seed", type=SEED, default=0, help="which test images, and t-SNE/UMAP's start")
    p.add_argument("--out", metavar="DIR", help="where to write embed_METHOD.png (default: RUN_DIR/embed)")
    add_shared(p, "data", "device", "threads")

    p = _command(sub, "explain", cmd_explain, "why the model predicts what it does: Captum heat maps (Grad-CAM, "
                 "Integrated Gradients, ...) and how far they can be trusted",
                 "cifarlab explain runs/resnet20 --image cat.png --method all")
    add_shared(p, "run_dir")
    g = p.add_argument_group("what to explain (one of; --evaluate may stand alone)")
    g.add_argument("--image", metavar="IMG", help="one image file")
    g.add_argument("--images", metavar="DIR", help="a folder of image files: one gallery")
    g.add_argument("--samples-per-class", type=num(int, ge=1), metavar="N", help="N test images per class: a gallery")
    g.add_argument("--mistakes", action="store_true", help="with --samples-per-class: only misclassified images")
    g.add_argument("--evaluate", type=num(int, ge=1), metavar="N",
                   help="deletion/insertion AUC and the randomization check over N test images, for every method "
                        "unless --method is given; later explains, run's report and serve show the most faithful")
    g = p.add_argument_group("method")
    g.add_argument("--method", choices=[*list_explainers(), "all"],
                   help="all: every method side by side (default: the run's most faithful method by its measured "
                        "deletion AUC, from an earlier explain --evaluate or run; gradcam without measurements)")
    g.add_argument("--target", metavar="CLASS", help="also explain this class (name or index)")
    g.add_argument("--layer", metavar="NAME", help="CAM layer (default: the model's default_cfg cam_layer)")
    g.add_argument("--ig-steps", type=num(int, ge=1), metavar="N", help="integrated-gradients steps (default 32)")
    g.add_argument("--smoothgrad-samples", type=num(int, ge=1), metavar="N",
                   help="noisy copies for smoothgrad (default 16)")
    g.add_argument("--occlusion-window", type=num(int, ge=1, le=32), metavar="PX", help="occlusion patch (default 4)")
    g.add_argument("--occlusion-stride", type=num(int, ge=1, le=32), metavar="PX", help="occlusion stride (default 2)")
    g = p.add_argument_group("trust checks")
    g.add_argument("--trust", action=argparse.BooleanOptionalAction, default=True,
                   help="deletion/insertion AUC and the randomization check for the explained images")
    g.add_argument("--steps", type=num(int, ge=1), default=16, help="deletion/insertion steps")
    g.add_argument("--baseline", choices=("mean", "blur"), default="mean",
                   help="what removed pixels become: the mean colour or a blurred image")
    add_shared(p, "data", data={"metavar": "PATH",
                                "help": "data for --samples-per-class / --evaluate (default: the run's own)"})
    p.add_argument("--out", metavar="DIR",
                   help="where to write PNGs, explain.json, explain.md (default: RUN_DIR/explain)")
    add_shared(p, "device", "threads")

    p = _command(sub, "report", cmd_report, "one self-contained HTML report of a run, compare, tune or ablate "
                 "directory", "cifarlab report runs/resnet20")
    p.add_argument("path", metavar="RUN_DIR|COMPARE_DIR", help="a run, compare, tune or ablate directory")
    p.add_argument("--out", metavar="HTML", help="where to write it (default: DIR/report.html)")

    p = _command(sub, "serve", cmd_serve, "a local web page to try a trained run: upload an image, see the top-5 "
                 "classes and the Grad-CAM overlay", "cifarlab serve runs/resnet20 --port 8000")
    add_shared(p, "run_dir")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1: this machine only; 0.0.0.0 opens it to the network)")
    p.add_argument("--port", type=num(int, ge=0, le=65535), default=8000, help="TCP port to listen on")
    p.add_argument("--max-upload-mb", type=float, default=5.0, metavar="MB", help="largest upload accepted")
    add_shared(p, "device", "threads")
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

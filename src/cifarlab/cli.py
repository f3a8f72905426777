"""The `cifarlab` command: a thin layer over the Python API. Each subcommand parses its flags (the training
settings generated from TrainConfig by _flags) and calls one function; user errors print one line (no
traceback) and exit non-zero."""
from __future__ import annotations

import argparse
import errno
import json
import os
import signal
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

from . import __version__
from ._cli_runs import add_run_commands
from ._flags import (
    EXIT_USER_ERROR,
    SEED,
    HelpFormatter,
    Parser,
    add_command,
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
from ._signals import Terminated, terminate_as_interrupt
from .errors import CifarlabError, cli_messages

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
        from .rundir.run import run_config
        from .rundir.writer import recorded_data

        run_cfg, info = run_config(args.run_dir)  # config.json as a checked TrainConfig
        values.setdefault("model", run_cfg.model)
        values.setdefault("init_from", args.run_dir)
        for key in ("cifar_stem", "model_kwargs", "input_size"):
            values.setdefault(key, getattr(run_cfg, key))
        if "data" not in values:  # the run's own, found from here (an older run recorded a relative path)
            values["data"] = recorded_data(args.run_dir, info)
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
    print((Path(args.out) / "trials.md").read_text())  # it names the best trial and what pruning saved
    who = f"its {args.workers} worker processes" if args.workers > 1 else "this process"
    print(f"{who} ran {len(r.ran)} trial(s): {' '.join(f'#{n}' for n in r.ran) or '-'}")
    print(f"retrain the best on train + val and test it once: cifarlab train --from-study {args.out}"
          + (f" --study {r.study_name}" if args.storage else ""))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="cifarlab", description="Learn, run and understand image classification on CIFAR-10.",
                    epilog="example:\n  cifarlab run --out runs/first", formatter_class=HelpFormatter)
    parser.add_argument("--version", action="version", version=f"cifarlab {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)

    p = add_command(sub, "train", cmd_train, "train a model and write a run directory",
                 "cifarlab train --model resnet20 --augment standard --epochs 30 --out runs/resnet20")
    add_config_flags(p, flag_fields())
    add_shared(p, "threads")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run from its last checkpoint")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run directory")
    p.add_argument("--quiet", action="store_true", help="no progress; print one JSON line at the end")
    p.add_argument("--from-study", metavar="DIR_OR_STORAGE",
                   help="retrain the best trial of a tune study on train + val (val size 0) and test once")
    p.add_argument("--study", metavar="NAME", help="the study's name, with --from-study (default: the only one)")

    p = add_command(sub, "probe", cmd_probe, "frozen backbone, fast: cache its features once, fit a linear head and a "
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

    p = add_command(sub, "run", cmd_run, "the main job: train the baseline (2 epochs), analyze it, explain a sample "
                 "and write the HTML report", "cifarlab run --data ~/cifar10 --out runs/first")
    add_config_flags(p, flag_fields())
    add_shared(p, "threads")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run directory")
    p.add_argument("--explain-per-class", type=int, default=1, metavar="N",
                   help="test images per class to explain (0 skips explanations and feature maps)")
    p.add_argument("--methods", default="gradcam,saliency,integrated-gradients", metavar="M1,M2",
                   help="explanation methods, comma-separated")
    p.add_argument("--robustness-images", default="1000", metavar="N",
                   help="images to measure CIFAR-10-C's corruptions on ('all' for the figure comparable with "
                        "published tables; 0 skips)")
    p.add_argument("--embed-samples", type=int, default=2000, metavar="N",
                   help="test images in the PCA embedding (0 skips)")

    p = add_command(sub, "compare", cmd_compare, "train several models on the same data and compare them",
                 "cifarlab compare --models baseline,resnet20 --epochs 5 --out runs/compare")
    p.add_argument("--models", required=True, metavar="M1,M2", help="comma-separated model names")
    p.add_argument("--seeds", type=seeds("--seeds"), default=[0], help="comma-separated seeds")
    p.add_argument("--same-recipe", action="store_true",
                   help="one shared recipe for every model (flags, else SGD 0.1 batch 128 cosine)")
    p.add_argument("--out", required=True, metavar="DIR", help="where to write the runs and the comparison")
    add_worker_flags(p, "--parallel", "train N runs")
    add_config_flags(p, flag_fields(*_PER_RUN, *_TORCHRUN))
    add_shared(p, "threads")

    p = add_command(sub, "augment-preview", cmd_augment_preview,
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

    p = add_command(sub, "lr-find", cmd_lr_find, "learning-rate range test: loss against an exponentially growing lr",
                 "cifarlab lr-find --model resnet20 --out runs/lr-find")
    p.add_argument("--start", type=num(float, gt=0), default=1e-6, help="first learning rate")
    p.add_argument("--end", type=num(float, gt=0), default=1.0, help="last learning rate")
    p.add_argument("--steps", type=num(int, ge=5), default=100, help="mini-batches, one lr each")
    p.add_argument("--out", required=True, metavar="DIR", help="where to write lr_find.png and lr_find.json")
    add_config_flags(p, _LR_FIND)
    add_shared(p, "threads")

    p = add_command(sub, "tune", cmd_tune, "Optuna search over training settings on the validation split",
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

    p = add_command(sub, "ablate", cmd_ablate, "vary one training setting, everything else fixed; accuracy per value",
                 "cifarlab ablate --model resnet20 --vary augment=none,standard --epochs 5 --out runs/ablate")
    p.add_argument("--vary", required=True, metavar="FIELD=V1,V2", help="e.g. augment=none,keras,standard")
    p.add_argument("--seeds", type=seeds("--seeds"), default=[0], help="comma-separated seeds")
    p.add_argument("--out", required=True, metavar="DIR", help="where to write the runs and the table")
    add_worker_flags(p, "--parallel", "train N runs")
    add_config_flags(p, flag_fields(*_PER_RUN[1:], *_TORCHRUN), model={"required": True})
    add_shared(p, "threads")
    add_run_commands(sub)
    return parser


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"cifarlab: warning: {message}", file=sys.stderr)


def _thread_flags(args: argparse.Namespace) -> tuple[str | None, str]:
    """--threads and --thread-wait; `train --resume RUN` runs with the run's own (_threads.resume_settings)."""
    if getattr(args, "resume", None) is None:
        return args.threads, args.thread_wait or "auto"
    from ._threads import resume_settings
    from .rundir.layout import read_config  # no torch yet: the wait policy is set before torch loads

    return resume_settings(read_config(args.resume), args.resume, args.threads, args.thread_wait)


def main(argv: Sequence[str] | None = None) -> int:
    with cli_messages():  # user errors name settings as --flags, the words typed here
        return _main(argv)


def _main(argv: Sequence[str] | None) -> int:
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
        with terminate_as_interrupt():  # SIGTERM (kill, a scheduler's stop) ends the command as Ctrl-C does
            if hasattr(args, "threads"):  # once, before the command loads torch: the wait policy must come first
                from ._threads import configure

                configure(*_thread_flags(args))
            return func(args)
    except CifarlabError as e:  # one line, even when the message quotes a name with a line break in it
        print(f"cifarlab {args.command}: error: {' '.join(str(e).splitlines())}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt as e:
        signum = e.signum if isinstance(e, Terminated) else signal.SIGINT
        print(f"cifarlab: interrupted{f' ({e})' if isinstance(e, Terminated) else ''}", file=sys.stderr)
        return 128 + signum  # as a shell reports a process that a signal ended: 130 for Ctrl-C, 143 for SIGTERM
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

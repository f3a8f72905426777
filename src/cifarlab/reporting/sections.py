"""The sections of a run directory's report: summary, config and command, learning curves, error
analysis, feature maps, embedding and explanations. Each reads its own files; one that finds nothing
says which command computes it."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..attribution.choice import check_text, choose_from_report, method_marks
from ..rundir import layout
from ..rundir.layout import read_json
from .blocks import (
    Cell,
    Code,
    Columns,
    Details,
    Facts,
    Figure,
    Heading,
    Section,
    Table,
    Text,
    command,
    figure_file,
    figure_group,
    fmt,
    missing,
    number,
    png_url,
    text,
)


def run_sections(run_dir: Path) -> tuple[str, list[Section]]:
    """(title, sections) for a run directory."""
    info = layout.read_json(run_dir / layout.CONFIG, root=run_dir)
    summary = layout.read_summary(run_dir)
    history = layout.read_history(run_dir)
    model = info.get("config", {}).get("model", "?")
    # Results first; the long configuration table last (collapsed), for whoever wants to reproduce the run.
    return f"{model}: {run_dir.name}", [
        summary_section(run_dir, summary), curves_section(run_dir, history, info.get("config", {})),
        analysis_section(run_dir),
        explanations_section(run_dir), features_section(run_dir), embedding_section(run_dir),
        config_section(info),
    ]


def test_accuracy_label(s: dict[str, Any]) -> str:
    """What the summary's test accuracy was measured with: the split size, the training's precision, TTA."""
    tta = s.get("tta") or "none"
    return (f"test accuracy ({fmt(s.get('test_images'), ',')} images, {s.get('precision', '?')}, "
            f"{'no TTA' if tta == 'none' else 'TTA ' + tta})")


def summary_section(run_dir: Path, s: dict[str, Any] | None) -> Section:
    if s is None:
        return missing("summary", "Summary", "The run has not finished: it has no summary.json.",
                       command("cifarlab train --resume", run_dir))
    epochs = f"{s.get('epochs_completed', '?')} of {s.get('epochs', '?')}" + (
        ", stopped early" if s.get("stopped_early") else "")
    best = (f"{fmt(s.get('best_val_accuracy'))} (epoch {s['best_val_epoch']})"
            if s.get("best_val_epoch") is not None else fmt(s.get("best_val_accuracy")))
    items = [
        (test_accuracy_label(s), fmt(s.get("test_accuracy"))),
        ("test top-3 accuracy", fmt(s.get("test_top3_accuracy"))),
        ("test loss", fmt(s.get("test_loss"))), ("validation accuracy", fmt(s.get("val_accuracy"))),
        ("best validation accuracy", best), ("train accuracy (last epoch)", fmt(s.get("train_accuracy"))),
        ("epochs", epochs), ("parameters", fmt(s.get("params"), ",")),
        ("training time", fmt(s.get("train_seconds"), ".1f", " s")),
        ("training images/s", fmt(s.get("images_per_second"), ",.0f")),
        ("inference images/s", fmt(s.get("inference_images_per_second"), ",.0f")),
        ("images train / val / test", " / ".join(fmt(s.get(k), ",") for k in ("train_images", "val_images",
                                                                                 "test_images"))),
        ("device", f"{s.get('device', '?')} {s.get('precision', '')}".strip()),
    ]
    blocks: list[Any] = [Facts(items)]
    if s.get("test_accuracy") is not None:
        blocks.append(Text("The error analysis below recomputes the test accuracy from fp32 logits without TTA, "
                           "so it may differ from this one in the last digits; its robustness table measures "
                           "a seeded sample of the images."))
    if s.get("test_accuracy") is None:
        blocks.append(Text("The test split was not evaluated (a tuning trial): the numbers are on validation."))
    return Section("summary", "Summary", blocks)


def config_section(info: dict[str, Any]) -> Section:
    cfg = info.get("config", {})
    blocks: list[Any] = [Heading("Command"), Code(str(info.get("command", "-"))),
                         Facts([("data", str(info.get("data_source", "-"))),
                                ("classes", ", ".join(map(str, info.get("classes", []))))])]
    details: list[Any] = [Table(["setting", "value"], [[Cell(str(k)), text(_value(v))] for k, v in cfg.items()])]
    versions = info.get("versions") or {}
    if versions:
        details += [Heading("Versions"), Facts([(str(k), str(v)) for k, v in versions.items()])]
    blocks.append(Details(f"Resolved config ({len(cfg)} settings) and versions", details))
    return Section("config", "Configuration and command", blocks)


def _value(v: Any) -> str | None:
    return json.dumps(v) if isinstance(v, (dict, list)) else (None if v is None else str(v))


def curves_section(run_dir: Path, history: list[dict[str, Any]], cfg: dict[str, Any] | None = None) -> Section:
    if not history:
        return missing("curves", "Learning curves", "No epoch finished yet (metrics.jsonl is empty or missing).",
                       command("cifarlab train --resume", run_dir))
    from .curves import constant_lr, learning_curve_pngs, step_losses

    per_step = " (training: per step)" if step_losses(history) else ""
    figures = [Figure(png_url(png), f"{name} per epoch{per_step if name == 'loss' else ''}")
               for name, png in learning_curve_pngs(history).items()]
    columns = [("epoch", "epoch", "d"), ("train loss", "train_loss", ".4f"), ("train acc", "train_accuracy", ".4f"),
               ("val loss", "val_loss", ".4f"), ("val acc", "val_accuracy", ".4f"), ("lr", "lr", ".3g"),
               ("seconds", "epoch_seconds", ".1f"), ("images/s", "images_per_second", ",.0f")]
    columns = [c for c in columns if any(h.get(c[1]) is not None for h in history)]
    rows = [[number(h.get(key), spec) for _, key, spec in columns] for h in history]
    lr = constant_lr(history)
    return Section("curves", "Learning curves", [
        *figure_group(figures), *([Text(_constant_lr_line(lr, len(history), cfg or {}))] if lr is not None else []),
        Details(f"Per-epoch numbers ({len(history)} epoch{'s' if len(history) != 1 else ''})",
                [Table([c[0] for c in columns], rows, "one row per epoch")])])


def _constant_lr_line(lr: float, epochs: int, cfg: dict[str, Any]) -> str:
    """A learning rate that never changed, in words (a flat line is not worth a plot)."""
    schedule, warmup = cfg.get("schedule"), cfg.get("warmup_epochs")
    if schedule == "constant" and not warmup:
        return f"Learning rate: {fmt(lr, '.3g')} throughout (constant schedule, no warm-up)."
    warm = f", {fmt(warmup, 'g')} warm-up epochs" if warmup else ""
    how = f" ({schedule} schedule{warm})" if schedule else ""
    when = "the only epoch" if epochs == 1 else f"each of the {epochs} epochs"
    return f"Learning rate: {fmt(lr, '.3g')} at the end of {when}{how}."


def analysis_section(run_dir: Path) -> Section:
    adir = run_dir / layout.ANALYSIS_DIR
    title = "Error analysis"
    if not os.path.lexists(adir / layout.ANALYSIS_JSON):
        return missing("analysis", title, "Error analysis was not computed (confusion matrix, galleries of "
                       "mistakes, calibration, robustness).", command("cifarlab analyze", run_dir))
    a = read_json(adir / layout.ANALYSIS_JSON, root=run_dir)
    files = a.get("files") or {}

    def fig(key: str, caption: str, wide: bool = False):
        return figure_file(adir / Path(files.get(key, f"{key}.png")).name, caption, wide, root=run_dir)

    m, cal, rob = a.get("metrics", {}), a.get("calibration", {}), a.get("robustness", {})
    worst = m.get("worst_class") or {}
    blocks: list[Any] = [
        Text(f"On the {a.get('split', '?')} split: {fmt(a.get('images'), ',')} images "
             f"({a.get('device', '?')}, {a.get('precision', '?')}; logits {a.get('logits', 'float32')}, no TTA)."),
        Facts([(f"accuracy ({a.get('split', '?')}, {fmt(a.get('images'), ',')} images, fp32 logits)",
                fmt(m.get("accuracy"))), ("top-3 accuracy", fmt(m.get("top3_accuracy"))),
               ("macro F1", fmt((m.get("macro") or {}).get("f1"))),
               ("worst class", f"{worst.get('class', '-')} (F1 {fmt(worst.get('f1'), '.3f')})"),
               ("ECE before → after temperature scaling",
                f"{fmt(cal.get('ece_before'))} → {fmt(cal.get('ece_after'))}"),
               (f"mean corrupted accuracy ({fmt(rob.get('images'), ',')}-image sample)",
                fmt(rob.get("mean_corrupted_accuracy")))]),
        Details(f"Per class: precision, recall, F1 and support ({len(m.get('per_class', []))} classes)", [
            Table(["class", "precision", "recall", "F1", "support"],
                  [[text(r.get("class")), number(r.get("precision")), number(r.get("recall")), number(r.get("f1")),
                    number(r.get("support"), "d")] for r in m.get("per_class", [])])]),
        Heading("Confusion matrix"), *figure_group([fig("confusion_matrix", "rows: true class, columns: predicted "
                                                        "(counts and share of the row)", wide=True)]),
        Heading("Most-confused pairs"),
    ]
    pairs = a.get("confused_pairs") or []
    if pairs:
        blocks += [Table(["true", "predicted as", "count", "share of the true class"],
                         [[text(p.get("true")), text(p.get("predicted")), number(p.get("count"), "d"),
                           number(p.get("rate"), ".1%")] for p in pairs]),
                   Details("Examples of each pair", figure_group([
                       fig("confused_pairs", "examples of each pair, most confident first", wide=True)]))]
    else:
        blocks.append(Text("No mistakes on this split: there are no confused pairs."))
    blocks.append(Details("Galleries: the most confident mistakes and the highest-loss images", figure_group([
        fig("confident_mistakes", "the most confident mistakes", wide=True),
        fig("highest_loss", "the highest-loss images", wide=True)])))
    blocks += [Heading("Calibration"), Columns(
        figure_group([fig("reliability", "reliability diagram: confidence against accuracy per bin")]),
        [Facts([("ECE before", fmt(cal.get("ece_before"))), ("ECE after", fmt(cal.get("ece_after"))),
                ("NLL before", fmt(cal.get("nll_before"))), ("NLL after", fmt(cal.get("nll_after"))),
                ("temperature", f"{fmt(cal.get('temperature'), '.3f')} (fitted on {cal.get('fitted_on', '-')})")])])]
    blocks += [Heading("Robustness to corruptions"), *_robustness(rob, fig, run_dir)]
    blocks += [Heading("Label check"), *_label_check(a.get("label_check") or {}, adir, run_dir)]
    return Section("analysis", title, blocks)


def _robustness(rob: dict[str, Any], fig, run_dir: Path) -> list[Any]:
    if "accuracy" not in rob:
        return [Text(f"Not measured ({rob.get('skipped', 'skipped')}):",
                     command("cifarlab analyze", run_dir, "--robustness-images", "1000"))]
    severities = rob.get("severities", [])
    extra = set(rob.get("extra_corruptions", []))
    rows = [[text(f"{name} (extra)" if name in extra else name), *[number(v) for v in values],
             number((rob.get("mean_accuracy") or {}).get(name))] for name, values in rob["accuracy"].items()]
    return [Columns(figure_group([fig("robustness", "accuracy per corruption and severity")]), [
        Facts([(f"clean accuracy on this {fmt(rob.get('images'), ',')}-image sample", fmt(rob.get("clean_accuracy"))),
               ("mean corrupted accuracy (CIFAR-10-C, 15 corruptions × 5 severities)",
                fmt(rob.get("mean_corrupted_accuracy"))),
               ("mean accuracy on the 4 extra corruptions", fmt(rob.get("extra_mean_accuracy"))),
               ("images", str(rob.get("subset") or fmt(rob.get("images"), ",")))]),
        Details("The same numbers as a table", [
            Table(["corruption", *[f"severity {s}" for s in severities], "mean"], rows,
                  "CIFAR-10-C's corruptions regenerated with its own parameters; extras are not in the mean")])])]


def _label_check(check: dict[str, Any], adir: Path, run_dir: Path) -> list[Any]:
    if "flagged" not in check:
        return [Text("Not computed (it fits K fold models on the training data):",
                     command("cifarlab analyze", run_dir, "--label-check"))]
    model = check.get("fold_model") or "run"  # analyses written before the choice of fold model used the run's
    per_fold = (f"{fmt(check.get('input_size'), 'd')} px features, C {fmt(check.get('C'), '.3g')}"
                if model == "features" else f"{fmt(check.get('epochs'), 'd')} epochs each")
    blocks: list[Any] = [Facts([
        ("suspected label problems", f"{check['flagged']:,} of {fmt(check.get('images'), ',')} training images "
                                     f"({fmt(check.get('flagged_share'), '.1%')})"),
        ("cleanlab's estimated noise rate", fmt(check.get("estimated_noise_rate"), ".1%")),
        ("out-of-fold accuracy", fmt(check.get("out_of_sample_accuracy"))),
        ("accuracy on the images not flagged", fmt(check.get("kept_accuracy"))),
        ("fold models", f"{model}: {check.get('folds', '?')} folds, {per_fold}"),
        ("out-of-fold probabilities", Path(str(check.get("probabilities") or "-")).name)])]
    if check.get("warning"):
        blocks.append(Text(f"Warning: {check['warning']}."))
    blocks.append(Text("To train again without them, add to the run's own settings (--label-issues-action relabel "
                       "relabels them instead):", command("--drop-label-issues", run_dir)))
    if check.get("picture"):
        blocks += figure_group([figure_file(adir / Path(check["picture"]).name,
                                            "the least self-confident flagged images", wide=True, root=run_dir)])
    return blocks


def _pngs(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.png")) if folder.is_dir() else []


def _caption(path: Path) -> str:
    return path.stem.replace("_", " ")


def features_section(run_dir: Path) -> Section:
    from ..features.maps import MOST_ACTIVE_PREFIX

    # The story's order: what the first layer looks for, then what each layer makes of one image.
    order = ("first_layer_filters", MOST_ACTIVE_PREFIX, "features_", "channel_top_")
    files = sorted(_pngs(run_dir / layout.FEATURES_DIR),
                   key=lambda p: (next((i for i, o in enumerate(order) if p.stem.startswith(o)), len(order)), p.name))
    if not files:
        return missing("features", "Feature maps", "No feature maps were drawn.",
                       command("cifarlab features", run_dir, "--image", "IMG"))
    # Where a layer's few most active channels stand for it, its full grid is a click away, and so are the
    # first layer's filters (3x3 colour patches, which tell little at a glance).
    previewed = {p.stem[len(MOST_ACTIVE_PREFIX):] for p in files if p.stem.startswith(MOST_ACTIVE_PREFIX)}
    folded = [p for p in files if (previewed and p.stem == "first_layer_filters")
              or (p.stem.startswith("features_") and p.stem[len("features_"):] in previewed)]
    shown = [p for p in files if p not in folded]

    def caption(p: Path) -> str:
        for prefix, what in ((MOST_ACTIVE_PREFIX, "its most active channels"), ("features_", "feature maps")):
            if p.stem.startswith(prefix):
                return f"{p.stem[len(prefix):]}: {what}"
        return _caption(p)

    blocks: list[Any] = [
        Text("What the layers respond to: the feature maps of one image per layer (the most active channels "
             "first), the first layer's filters and the images that excite a channel most."),
        *figure_group([figure_file(p, caption(p), wide=p.stem.startswith("features_"), root=run_dir) for p in shown])]
    if folded:
        layers = [p.stem[len("features_"):] for p in folded if p.stem.startswith("features_")]
        blocks.append(Details(f"Every channel of {', '.join(layers)}" + (
            " and the first layer's filters" if len(layers) < len(folded) else ""), figure_group(
                [figure_file(p, caption(p), wide=p.stem.startswith("features_"), root=run_dir) for p in folded])))
    return Section("features", "Feature maps", blocks)


def embedding_section(run_dir: Path) -> Section:
    files = _pngs(run_dir / layout.EMBED_DIR)
    if not files:
        return missing("embedding", "Embedding", "The penultimate-layer features were not projected to 2-D.",
                       command("cifarlab embed", run_dir))
    return Section("embedding", "Embedding", [
        Text("Penultimate-layer features of test images in 2-D, coloured by true class; x marks a mistake."),
        *figure_group([figure_file(p, _caption(p), root=run_dir) for p in files])])


def explanations_section(run_dir: Path) -> Section:
    edir = run_dir / layout.EXPLAIN_DIR
    title = "Explanations"
    files = _pngs(edir)
    report_path = edir / layout.EXPLAIN_JSON
    if not files and not os.path.lexists(report_path):
        return missing("explanations", title, "No explanations were computed (heat maps and their faithfulness).",
                       command("cifarlab explain", run_dir, "--samples-per-class", "1", "--evaluate", "100"))
    r = read_json(report_path, root=run_dir) if os.path.lexists(report_path) else {}
    blocks: list[Any] = []
    if r:
        layer = r.get("layer") or "-"
        note = f" ({r['layer_note']})" if r.get("layer_note") else ""
        blocks.append(Text(f"Methods: {', '.join(r.get('methods', []))}; CAM layer {layer}{note}. Faithfulness: "
                           f"pixels removed (deletion) or added (insertion) in attribution order in "
                           f"{r.get('steps', '?')} steps, removed pixels become the {r.get('baseline', '?')} "
                           "image; the randomization check flags a method whose maps barely change when the "
                           f"weights are randomized (|Spearman rho| > {r.get('randomization_threshold', '?')})."))
    choice = choose_from_report(r, source=str(report_path)) if r else None
    if choice is not None:  # the method this run's measurements favour, named beside the pictures
        blocks.append(Text(f"Most faithful for this run: {choice.caption()}." if choice.measured else
                           f"Most faithful for this run: {choice.measurement}; Grad-CAM is shown by default."))
    # explain.json knows what its latest figure shows; older figures keep their file names as captions
    best = f"; most faithful: {choice.caption()}" if choice is not None and choice.measured else ""
    captions = {Path(f).name: f"{'gallery' if Path(f).stem.startswith('gallery') else 'explanation'}: "
                              f"{', '.join(r.get('methods', []))}{best}"
                for f in [r.get("figure"), *[i.get("figure") for i in r.get("images", [])]] if f}
    pictures = figure_group([figure_file(p, captions.get(p.name, _caption(p)), wide=True, root=run_dir)
                             for p in files])
    if r.get("images"):
        has_label = any(i.get("label") for i in r["images"])
        headers = ["image", *(["true class"] if has_label else []), "predicted", "probability"]
        blocks.append(Details(f"Explained images: files, classes and predictions ({len(r['images'])})", [
            Table(headers, [[text(i.get("image")), *([text(i.get("label"))] if has_label else []),
                             text(i.get("predicted")), number(i.get("probability"), ".1%")] for i in r["images"]])]))
    if r.get("metrics"):
        blocks += [Heading(f"Faithfulness over the {len(r.get('images', []))} explained image(s)"),
                   faithfulness_table(r["metrics"])]
    if r.get("evaluation"):
        ev = r["evaluation"]
        blocks += [Heading(f"Faithfulness over {ev.get('images', '?')} test images"), faithfulness_table(ev["methods"])]
    elif r:
        blocks.append(Text("Every method over many test images:",
                           command("cifarlab explain", run_dir, "--method", "all", "--evaluate", "200")))
    return Section("explanations", title, [Columns(pictures, blocks)] if pictures else blocks)


def faithfulness_table(rows: dict[str, dict[str, Any]]) -> Table:
    """The explain.json trust numbers: one row per method, plus the random-order reference; methods that fail
    the randomization check or do no better than random order are marked (attribution.choice)."""
    marks = method_marks(rows)
    body = []
    for name, r in rows.items():
        check = check_text(r, marks.get(name))
        body.append([text(name), number(r.get("deletion_auc"), ".3f"), number(r.get("insertion_auc"), ".3f"),
                     number(r.get("randomization_spearman"), "+.3f"), text(check),
                     number(r.get("seconds_per_image"), ".3f")])
    headers = ["method", "deletion AUC ↓", "insertion AUC ↑", "randomization ρ", "checks", "s / image"]
    keep = [0] + [j for j in range(1, len(headers)) if any(row[j].text != "-" for row in body)]  # no all-dash column
    return Table([headers[j] for j in keep], [[row[j] for j in keep] for row in body],
                 "↓ lower is better, ↑ higher is better; ρ: Spearman correlation of the maps before and after "
                 "the weights are randomized (near 0 is good)")

"""A label check's findings applied to a training set: `cifarlab train --drop-label-issues ANALYZED_RUN`.

`cifarlab analyze RUN --label-check` writes the flagged images into analysis.json ("label_check" -> "issues":
each one's file name, given and suspected class) and the name of every image it scored, with the out-of-fold
probabilities, into label_check_probabilities.npz beside it. A later run drops the flagged images from its
training set, or relabels them to the suspected class, matched by file name: its split may differ from the
analyzed run's, so indices mean nothing across runs. The check must have scored every image the new run
trains on; otherwise the images it never saw would pass as checked.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from .._io import atomic_path, check_regular_file
from ..errors import CifarlabError
from ..rundir.layout import ANALYSIS_DIR, ANALYSIS_JSON, read_json
from .types import ImageSet

LABEL_CHECK_PROBABILITIES = "label_check_probabilities.npz"
FLAG = "--drop-label-issues"


def save_label_check_probabilities(path: str | Path, probabilities: np.ndarray, labels: np.ndarray,
                                   names: list[str], classes: list[str]) -> Path:
    """The out-of-fold probabilities (N, C), the given labels, the image names and the class names, as an npz
    of plain arrays (read back with allow_pickle=False)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:  # a file object: savez would add ".npz" to a name
        np.savez_compressed(f, probabilities=np.asarray(probabilities, np.float32),
                            labels=np.asarray(labels, np.int64), image_names=np.array(names, dtype=str),
                            classes=np.array(classes, dtype=str))
    return Path(path)


def load_label_check_probabilities(path: str | Path, root: str | Path | None = None) -> dict[str, Any]:
    """What save_label_check_probabilities wrote (names and classes as lists), or a one-line error naming it."""
    path = Path(path)
    try:
        check_regular_file(path, root)
        with np.load(path, allow_pickle=False) as z:
            out = {"probabilities": z["probabilities"], "labels": z["labels"],
                   "image_names": z["image_names"].tolist(), "classes": z["classes"].tolist()}
    except FileNotFoundError:
        raise CifarlabError(f"file not found: {path}") from None
    except (OSError, ValueError, KeyError) as e:
        raise CifarlabError(f"cannot read {path}: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    if out["probabilities"].shape != (len(out["labels"]), len(out["classes"])) or len(out["image_names"]) != len(
            out["labels"]):
        raise CifarlabError(f"{path} is not a label check's probabilities file (its arrays do not agree in size)")
    return out


def find_analysis(analyzed: str | Path) -> Path:
    """analysis.json of an analyzed run: ANALYZED/analysis/analysis.json, or ANALYZED/analysis.json (an
    analysis written elsewhere with --out)."""
    analyzed = Path(analyzed)
    if not analyzed.is_dir():
        raise CifarlabError(f"{FLAG} {analyzed}: " + ("not a directory" if os.path.lexists(analyzed) else
                                                      "no such directory") + "; give an analyzed run's folder")
    for path in (analyzed / ANALYSIS_DIR / ANALYSIS_JSON, analyzed / ANALYSIS_JSON):
        if os.path.lexists(path):
            return path
    raise CifarlabError(f"{FLAG} {analyzed}: no {ANALYSIS_JSON} in it or in its {ANALYSIS_DIR}/ folder; run "
                        f"cifarlab analyze {analyzed} --label-check first")


def read_label_check(analyzed: str | Path) -> tuple[Path, dict[str, Any], list[str]]:
    """(analysis.json's path, its label check, the names of the images the check scored)."""
    path = find_analysis(analyzed)
    report = read_json(path, root=path.parent)
    check = report.get("label_check") if isinstance(report, dict) else None
    if not isinstance(check, dict) or not isinstance(check.get("issues"), list):
        raise CifarlabError(f"{FLAG}: {path} has no label check (analyze ran without --label-check); run "
                            f"cifarlab analyze {analyzed} --label-check")
    issues = check["issues"]
    if not all(isinstance(r, dict) and all(isinstance(r.get(k), str) for k in ("file", "given", "suspected"))
               for r in issues):
        raise CifarlabError(f"{FLAG}: {path}: every label issue needs a file, a given and a suspected class name")
    saved = path.parent / Path(str(check.get("probabilities") or LABEL_CHECK_PROBABILITIES)).name  # beside it
    if not os.path.lexists(saved):  # e.g. an analysis from before the file was kept
        raise CifarlabError(f"{FLAG}: the label check in {path} left no {saved.name} beside it (the names of the "
                            f"images it scored); run cifarlab analyze {analyzed} --label-check again")
    scored = load_label_check_probabilities(saved, root=path.parent)
    return path, check, scored["image_names"]


def apply_label_issues(fit_set: ImageSet, train: ImageSet, analyzed: str | Path,
                       action: str = "drop") -> tuple[ImageSet, dict[str, Any]]:
    """`fit_set` less the images the label check of `analyzed` flagged (action "drop"), or with their labels
    set to the suspected class ("relabel"); and what was done, for the run's summary. `train` is the whole
    training split the fit set was taken from (flagged images outside the fit set, e.g. in the validation
    split, are left alone). A check of other data or other classes, or one that did not score every image of
    `fit_set`, is a one-line error."""
    path, check, scored = read_label_check(analyzed)
    issues = check["issues"]
    classes = check.get("classes")
    if isinstance(classes, list) and sorted(map(str, classes)) != sorted(fit_set.classes):
        raise CifarlabError(f"{FLAG}: the label check in {path} was made on the classes "
                            f"{', '.join(map(str, classes))}; this run trains on {', '.join(fit_set.classes)}")
    if not train.files:
        raise CifarlabError(f"{FLAG} matches images by file name, and this run's training images have none "
                            "(in-memory data)")
    given = dict(zip(train.files, (train.classes[i] for i in train.labels)))
    foreign = [r["file"] for r in issues if given.get(r["file"]) != r["given"]
               or r["suspected"] not in fit_set.classes]
    if foreign:
        raise CifarlabError(f"{FLAG}: {len(foreign)} of the {len(issues)} images flagged in {path} are not in this "
                            f"run's training data with the label the check saw (e.g. {foreign[0]}); was the check "
                            "made on other data or classes?")
    unscored = sorted(set(fit_set.files) - set(scored))
    if unscored:
        raise CifarlabError(f"{FLAG}: the label check in {path} scored {len(scored):,} images, and {len(unscored):,} "
                            f"of this run's {len(fit_set):,} training images are not among them (e.g. {unscored[0]}); "
                            "train on the analyzed run's images (its --seed, --val-size, --train-size, "
                            "--label-fraction) or check this run's")
    position = {name: i for i, name in enumerate(fit_set.files)}
    hits = [(position[r["file"]], r["suspected"]) for r in issues if r["file"] in position]
    index = np.array([i for i, _ in hits], dtype=np.int64)
    if action == "relabel":
        labels = fit_set.labels.copy()
        labels[index] = [fit_set.classes.index(s) for _, s in hits]
        cleaned = ImageSet(fit_set.images, labels, list(fit_set.classes), list(fit_set.files))
    else:
        if len(index) == len(fit_set):
            raise CifarlabError(f"{FLAG}: the label check in {path} flagged every training image of this run; "
                                "nothing would be left to train on")
        cleaned = fit_set.subset(np.setdiff1d(np.arange(len(fit_set)), index))
    return cleaned, {"source": str(path), "action": action, "images": len(hits), "flagged": len(issues),
                     "flagged_outside_training_set": len(issues) - len(hits), "fold_model": check.get("fold_model"),
                     "training_images_before": len(fit_set)}

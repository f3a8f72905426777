"""Which explanation to show for a run: the one its own measurements say is most faithful.

`explain`, `run`, the report and `serve` all call `choose_method(run_dir)`. It reads RUN_DIR/explain/
explain.json (written by `cifarlab explain` and by `cifarlab run`) and uses, in this order, the evaluation
over many test images (`cifarlab explain --evaluate N`) or the trust numbers of an explained gallery of at
least MIN_IMAGES images. A method is marked when it fails the model-randomization check (its maps barely
change when the weights are randomized) or when its deletion AUC is no better than removing pixels in random
order. The choice is the unmarked method with the lowest deletion AUC (pixels it ranks first matter most to
the model); when every measured method is marked, the lowest deletion AUC all the same, with its marks shown.
A run without measurements gets Grad-CAM (FALLBACK_METHOD), and says it was not measured.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import CifarlabError
from ..rundir.layout import EXPLAIN_DIR, EXPLAIN_JSON, read_json

FALLBACK_METHOD = "gradcam"
MIN_IMAGES = 10  # fewer explained images are no evidence to choose by (an explained single image has 1)
RANDOM_ROW = "random order"
FAILS_RANDOMIZATION = "fails the randomization check"
WORSE_THAN_RANDOM = "no better than random order (deletion)"


@dataclass
class MethodChoice:
    """The method to show, why (`measurement`, one line for beside the picture), and every method's marks."""

    method: str
    measured: bool
    measurement: str
    marks: dict[str, list[str]] = field(default_factory=dict)  # method -> marks (empty: none)
    deletion_auc: dict[str, float] = field(default_factory=dict)  # measured methods, and "random order"
    source: str | None = None  # the explain.json the numbers came from

    def caption(self) -> str:
        """`method` with its measurement and marks, e.g. for a figure caption or the web page."""
        marks = self.marks.get(self.method)
        return f"{self.method}: {self.measurement}" + (f" [{'; '.join(marks)}]" if marks else "")

    def as_dict(self) -> dict[str, Any]:
        return {"method": self.method, "measured": self.measured, "measurement": self.measurement,
                "marks": self.marks, "deletion_auc": self.deletion_auc, "source": self.source}


def method_marks(rows: dict[str, dict[str, Any]]) -> dict[str, list[str]]:
    """For each method row of a trust table (not the random-order row): what it fails."""
    random_auc = rows.get(RANDOM_ROW, {}).get("deletion_auc")
    marks = {}
    for name, r in rows.items():
        if name == RANDOM_ROW:
            continue
        marks[name] = []
        if r.get("randomization_flagged"):
            marks[name].append(FAILS_RANDOMIZATION)
        if random_auc is not None and r.get("deletion_auc") is not None and r["deletion_auc"] >= random_auc:
            marks[name].append(WORSE_THAN_RANDOM)
    return marks


def measured_rows(report: dict[str, Any]) -> tuple[dict[str, dict[str, Any]], int] | None:
    """The trust rows to choose by and over how many images: the evaluation, else a big enough gallery."""
    evaluation = report.get("evaluation") or {}
    if _usable(evaluation.get("methods")):
        return evaluation["methods"], int(evaluation.get("images") or 0)
    metrics = report.get("metrics") or {}
    images = len(report.get("images") or [])
    if _usable(metrics) and images >= MIN_IMAGES:
        return metrics, images
    return None


def _usable(rows: Any) -> bool:
    """Rows with a deletion AUC for the random order and for at least one method."""
    return (isinstance(rows, dict) and isinstance(rows.get(RANDOM_ROW), dict)
            and any(isinstance(r, dict) and r.get("deletion_auc") is not None
                    for name, r in rows.items() if name != RANDOM_ROW))


def choose_from_report(report: dict[str, Any], candidates: list[str] | None = None,
                       source: str | None = None) -> MethodChoice:
    """The choice from explain.json's contents; `candidates` limits it to methods that may be shown."""
    found = measured_rows(report)
    if found is None:
        fallback = FALLBACK_METHOD if candidates is None or FALLBACK_METHOD in candidates else candidates[0]
        return MethodChoice(fallback, False, "not measured for this run (cifarlab explain RUN_DIR --method all "
                                             "--evaluate 200 measures every method)", source=source)
    rows, images = found
    marks = method_marks(rows)
    measured = {n: float(r["deletion_auc"]) for n, r in rows.items()
                if n != RANDOM_ROW and r.get("deletion_auc") is not None and (candidates is None or n in candidates)}
    if not measured:
        return choose_from_report({}, candidates, source)
    unmarked = [n for n in measured if not marks.get(n)]
    method = min(unmarked or list(measured), key=lambda n: (measured[n], n))
    random_auc = float(rows[RANDOM_ROW]["deletion_auc"])
    measurement = (f"lowest deletion AUC {measured[method]:.3f} of {len(measured)} measured methods over {images} "
                   f"test images (random order {random_auc:.3f}; lower is more faithful)")
    return MethodChoice(method, True, measurement, {n: marks.get(n, []) for n in measured},
                        {**measured, RANDOM_ROW: random_auc}, source)


def choose_method(run_dir: str | Path | None, candidates: list[str] | None = None) -> MethodChoice:
    """The method to show for the run in `run_dir` (Grad-CAM, marked unmeasured, without measurements)."""
    path = Path(run_dir) / EXPLAIN_DIR / EXPLAIN_JSON if run_dir is not None else None
    report = {}
    if path is not None and path.is_file():
        try:
            report = read_json(path, root=run_dir)
        except (OSError, ValueError, CifarlabError):
            report = {}  # an unreadable report (or a link out of the run) is no measurement
    return choose_from_report(report if isinstance(report, dict) else {}, candidates,
                              str(path) if report else None)


def check_text(row: dict[str, Any], marks: list[str] | None) -> str:
    """The checks column of a trust table: the marks (attribution.choice), else what passed."""
    if marks:
        return "MARKED: " + "; ".join(FAILS_RANDOMIZATION + " (maps barely change with random weights)"
                                      if m == FAILS_RANDOMIZATION else m for m in marks)
    if marks is None or "randomization_spearman" not in row:  # the random-order row, or not checked
        return "-"
    if row["randomization_spearman"] is None:
        return "passed (maps changed completely with random weights)"
    return "passed"

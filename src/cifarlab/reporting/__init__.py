"""`cifarlab report`: everything a result directory holds, in one self-contained HTML file.

    report(path, out=None) -> Path
      1. what the directory is: a run (config.json), or the output of compare, tune, ablate or lr-find
      2. its sections, each from its own files (sections.py, experiments.py); a section that was not
         computed says which command computes it
      3. one HTML file (html.py): images embedded as data: URLs, inline CSS (screen, phone, print) and JS
         (sortable tables, figures opened at full size), no network needed; written atomically. Secondary
         tables and figures are folded under <details>, so that the page fits a screen or two

(Named `reporting`, not `report`, so that `cifarlab.report` stays the function.)
"""
from __future__ import annotations

import time
from pathlib import Path

from .._io import check_destination, write_text_atomic
from ..errors import CifarlabError
from ..rundir import layout
from .blocks import Section

REPORT_HTML = layout.REPORT_HTML

# What a directory holds, recognized by one file, and who builds its sections.
KINDS = (
    (layout.CONFIG, "run", "cifarlab.reporting.sections:run_sections"),
    ("compare.json", "compare", "cifarlab.reporting.experiments:compare_sections"),
    ("tune.json", "tune", "cifarlab.reporting.experiments:tune_sections"),
    ("ablation.json", "ablate", "cifarlab.reporting.experiments:ablation_sections"),
    ("lr_find.json", "lr-find", "cifarlab.reporting.experiments:lr_find_sections"),
)


def report(path: str | Path, out: str | Path | None = None) -> Path:
    """Write the HTML report of a run directory (or a compare/tune/ablate/lr-find directory) and return its
    path: `out`, else PATH/report.html."""
    path = Path(path)
    if out is not None and Path(out).is_dir():  # only a folder given as --out: PATH/report.html is never entered
        out = Path(out) / REPORT_HTML
    out = Path(out) if out is not None else path / REPORT_HTML
    check_destination(out)  # a device or a FIFO (--out /dev/null) is refused before any work
    title, sections = collect(path)
    from .. import __version__
    from .html import render

    html = render(title, str(path), sections, time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), __version__)
    from ..rundir.lock import writing_into

    with writing_into(out.parent, run_dir=path, lock_outside=False):  # refused while the run is being written
        write_text_atomic(out, html)
    return out


def collect(path: Path) -> tuple[str, list[Section]]:
    """The report's title and sections: those of every kind of result the directory holds."""
    import importlib

    if not path.is_dir():
        raise CifarlabError(f"directory not found: {path}")
    found = [(kind, target) for marker, kind, target in KINDS if (path / marker).is_file()]
    if not found:
        raise CifarlabError(f"{path} holds no cifarlab results: expected a run directory (config.json) or the "
                            "output of compare, tune, ablate or lr-find")
    titles, sections = [], []
    for _kind, target in found:
        module, func = target.split(":")
        title, more = getattr(importlib.import_module(module), func)(path)
        titles.append(title)
        sections += more
    return "; ".join(titles), _unique_ids(sections)


def _unique_ids(sections: list[Section]) -> list[Section]:
    seen: dict[str, int] = {}
    for s in sections:
        n = seen.get(s.id, 0)
        seen[s.id] = n + 1
        if n:
            s.id = f"{s.id}-{n + 1}"
    return sections


__all__ = ["REPORT_HTML", "collect", "report"]

"""What a report is made of, before it becomes HTML: sections holding facts, tables, figures and text.

Section builders (sections.py, experiments.py) only produce these; html.py alone knows about markup, so
every string that came from a file goes through Jinja2's escaping on the way out.
"""
from __future__ import annotations

import base64
import math
import os
import shlex
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from .._io import MAX_FIGURE_BYTES, read_bytes_bounded
from ..errors import CifarlabError

MIME = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".svg": "image/svg+xml"}


@dataclass
class Cell:
    """A table cell: the text shown, and the key a sortable table sorts by (None: the text; "" : no value,
    sorted last; a number as text: sorted as a number)."""

    text: str
    sort: str | None = None

    @property
    def numeric(self) -> bool:
        return self.sort is not None


@dataclass
class Table:
    headers: list[str]
    rows: list[list[Cell]]
    caption: str = ""
    sortable: bool = True
    kind: ClassVar[str] = "table"


@dataclass
class Facts:
    """Label: value pairs (the headline numbers), laid out in a grid."""

    items: list[tuple[str, str]]
    kind: ClassVar[str] = "facts"


@dataclass
class Figure:
    src: str  # a data: URL, so the report needs no other file
    caption: str
    wide: bool = False  # spans the whole width (a confusion matrix, a gallery)
    kind: ClassVar[str] = "figure"


@dataclass
class Figures:
    items: list[Figure]
    kind: ClassVar[str] = "figures"


@dataclass
class Text:
    """A paragraph, optionally followed by a command in <code> (what to run next)."""

    text: str
    command: str | None = None
    kind: ClassVar[str] = "text"


@dataclass
class Code:
    text: str
    kind: ClassVar[str] = "code"


@dataclass
class Details:
    """Blocks folded away under a summary line (<details>): secondary tables and figures few readers need."""

    summary: str
    blocks: list[Any]
    kind: ClassVar[str] = "details"


@dataclass
class Columns:
    """A figure beside what is said about it on a wide screen (the figure's column as wide as the figure,
    up to 70%), one under the other on a narrow one: a tall figure then costs no height of its own."""

    figure: list[Any]
    beside: list[Any]
    kind: ClassVar[str] = "columns"


@dataclass
class Heading:
    text: str
    kind: ClassVar[str] = "heading"


@dataclass
class Section:
    id: str
    title: str
    blocks: list[Any] = field(default_factory=list)
    missing: Text | None = None  # set when the section was not computed: why, and the command that computes it

    @property
    def computed(self) -> bool:
        return self.missing is None


def missing(section_id: str, title: str, why: str, command: str) -> Section:
    return Section(section_id, title, missing=Text(f"Not computed. {why} Computed by:", command))


def number(value: Any, spec: str = ".4f", suffix: str = "") -> Cell:
    """A numeric cell; None and NaN show as "-" and sort last."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return Cell("-", "")
    if spec.endswith("d") and isinstance(value, float) and value.is_integer():
        value = int(value)
    try:
        return Cell(f"{value:{spec}}{suffix}", repr(float(value)))
    except (TypeError, ValueError):  # not a number after all: show it as it is, sort it as text
        return Cell(str(value))


def text(value: Any) -> Cell:
    return Cell("-" if value is None or value == "" else str(value))


def fmt(value: Any, spec: str = ".4f", suffix: str = "") -> str:
    return number(value, spec, suffix).text


def data_url(path: Path, data: bytes) -> str:
    mime = MIME.get(path.suffix.lower(), "application/octet-stream")
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def png_url(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def figure_file(path: Path, caption: str, wide: bool = False, *, root: Path) -> Figure | Text:
    """The image embedded, or a note when the file is gone (a result directory copied without it). Only a
    regular file inside `root`, the directory reported on, is embedded: a link out of it, a device or a FIFO
    is left out with a warning, so a report never carries the bytes of a file from elsewhere."""
    try:
        data = read_bytes_bounded(path, MAX_FIGURE_BYTES, root=root) if os.path.lexists(path) else None
    except FileNotFoundError:  # a link to nothing
        data = None
    except (CifarlabError, OSError) as e:
        warnings.warn(f"{e}; left out of the report", stacklevel=2)
        return Text(f"{path.name} is left out: {e}.")
    if data is None:
        return Text(f"{path.name} is missing from {path.parent}.")
    return Figure(data_url(path, data), caption, wide)


def figure_group(items: list[Figure | Text]) -> list[Any]:
    """Figures side by side in one grid; notes about missing files after them."""
    figures = [f for f in items if isinstance(f, Figure)]
    notes = [f for f in items if not isinstance(f, Figure)]
    return ([Figures(figures)] if figures else []) + notes


def command(*parts: Any) -> str:
    """A shell command line with each argument quoted where needed (paths with spaces)."""
    return " ".join(str(p) if i == 0 or str(p).startswith("-") else shlex.quote(str(p)) for i, p in enumerate(parts))

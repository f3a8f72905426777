"""Results that show themselves (after fastai's Interpretation and pandas' DataFrame): in a notebook a
result is its pictures and headline numbers (`_repr_html_`), in a terminal one short line (`__repr__`).
No torch, no matplotlib: the pictures are the PNG files the result already wrote (or PNG bytes)."""
from __future__ import annotations

import base64
import html
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any


def png_img(png: str | Path | bytes, alt: str = "", max_width: int = 900) -> str:
    """An <img> with the PNG inlined (a notebook saved with its outputs keeps the picture)."""
    data = png if isinstance(png, bytes) else Path(png).read_bytes()
    return (f'<img alt="{html.escape(alt)}" style="max-width:{max_width}px;width:100%;height:auto" '
            f'src="data:image/png;base64,{base64.b64encode(data).decode("ascii")}">')


def facts_table(facts: Iterable[tuple[str, Any]]) -> str:
    rows = "".join(f"<tr><th style='text-align:left'>{html.escape(str(k))}</th><td>{html.escape(fmt(v))}</td></tr>"
                   for k, v in facts if v is not None)
    return f"<table>{rows}</table>"


def rows_table(headers: Sequence[str], rows: Iterable[Sequence[Any]], limit: int = 50) -> str:
    rows = list(rows)
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(fmt(v))}</td>" for v in r) + "</tr>" for r in rows[:limit])
    more = f"<p>… and {len(rows) - limit} more rows</p>" if len(rows) > limit else ""
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{more}"


def result_html(title: str, facts: Iterable[tuple[str, Any]] = (), pngs: Iterable[str | Path | bytes] = (),
                table: tuple[Sequence[str], Iterable[Sequence[Any]]] | None = None) -> str:
    """A titled block: the headline numbers, an optional table, then the pictures that exist."""
    parts = [f"<h4>{html.escape(title)}</h4>", facts_table(facts)]
    if table is not None:
        parts.append(rows_table(*table))
    for png in pngs:
        if isinstance(png, bytes) or Path(png).is_file():
            parts.append(f"<div>{png_img(png, alt=Path(png).stem if not isinstance(png, bytes) else title)}</div>")
    return "<div>" + "".join(parts) + "</div>"


def fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 10 else f"{value:,.1f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)

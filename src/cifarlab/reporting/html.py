"""The report as one HTML file: a Jinja2 template (autoescaped: every string from a result file is
escaped), inline CSS for screens, phones and print, and a few lines of JS that sort tables and open a
clicked figure at its own size in a dialog."""
from __future__ import annotations

from .blocks import Section

CSS = """
:root { --fg: #1f2328; --muted: #59636e; --line: #d1d9e0; --soft: #f6f8fa; --accent: #0969da; --warn: #9a6700; }
* { box-sizing: border-box; }
html { -webkit-text-size-adjust: 100%; }
body { margin: 0; color: var(--fg); background: #fff;
       font: 16px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
header, main, footer { max-width: 1120px; margin: 0 auto; padding: 0 16px; }
header { padding-top: 16px; }
h1 { font-size: 1.6rem; line-height: 1.25; margin: 0 0 .25rem; overflow-wrap: anywhere; }
h2 { font-size: 1.3rem; margin: 1.25rem 0 .5rem; }
h3 { font-size: 1.05rem; margin: 1.25rem 0 .4rem; }
.sub { color: var(--muted); margin: 0; overflow-wrap: anywhere; }
nav { margin: 1rem 0; padding: .5rem 1rem; background: var(--soft); border-radius: 8px; }
nav ol { margin: 0; padding-left: 1.25rem; columns: 4 12rem; }
nav a { color: var(--accent); }
details { margin: .5rem 0; }
summary { cursor: pointer; color: var(--accent); font-weight: 600; }
nav .todo { color: var(--muted); font-size: .85rem; }
section { border-top: 1px solid var(--line); padding-bottom: 1rem; }
.facts { display: grid; grid-template-columns: repeat(auto-fill, minmax(min(100%, 18rem), 1fr)); gap: .25rem 1.5rem;
         margin: .5rem 0; }
.facts div { display: flex; justify-content: space-between; gap: 1rem; border-bottom: 1px dotted var(--line); }
/* The label wraps, the value keeps its width (never "0.66 / 14"); only a value over 70% of the row wraps. */
.facts dt { color: var(--muted); min-width: 0; overflow-wrap: anywhere; }
.facts dd { margin: 0; text-align: right; font-variant-numeric: tabular-nums; overflow-wrap: anywhere;
            flex-shrink: 0; max-width: 70%; }
.table-wrap { overflow-x: auto; -webkit-overflow-scrolling: touch; margin: .5rem 0; }
table { border-collapse: collapse; font-size: .9rem; }
caption { caption-side: bottom; text-align: left; color: var(--muted); font-size: .85rem; padding-top: .25rem; }
th, td { padding: .3rem .65rem; border-bottom: 1px solid var(--line); text-align: left; vertical-align: top; }
th { background: var(--soft); white-space: nowrap; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
/* Long text keeps a readable measure in a table narrower than its contents (it scrolls instead). */
td.long { min-width: 15rem; }
th button { font: inherit; font-weight: 600; color: inherit; background: none; border: 0; padding: 0;
            cursor: pointer; text-align: inherit; }
th button::after { content: "\\00a0\\2195"; color: var(--muted); font-weight: 400; }
th[aria-sort="ascending"] button::after { content: "\\00a0\\25B2"; color: var(--fg); }
th[aria-sort="descending"] button::after { content: "\\00a0\\25BC"; color: var(--fg); }
/* On a wide screen a table with many columns wraps its headers rather than scroll; on a phone it scrolls. */
@media (min-width: 900px) { th { white-space: normal; } }
/* Two figures a row at most on a wide screen: a plot made 6-7 inches wide stays large enough to read. */
.figures { display: grid; grid-template-columns: repeat(auto-fit, minmax(min(100%, 480px), 1fr)); gap: 1rem;
           margin: .5rem 0; align-items: start; }
figure { margin: 0; }
figure.wide { grid-column: 1 / -1; }
/* A figure fits a screen (no taller than 85% of it) and opens at full size in a dialog on a click or tap. */
figure img { display: block; max-width: 100%; max-height: 85vh; width: auto; height: auto;
             border: 1px solid var(--line); border-radius: 4px; }
button.zoom { display: block; max-width: 100%; padding: 0; border: 0; background: none; cursor: zoom-in; }
/* The caption wraps to the figure's width instead of widening it (contain). */
figcaption { color: var(--muted); font-size: .85rem; overflow-wrap: anywhere; contain: inline-size; }
/* A figure beside its numbers: its column as wide as the figure (up to 70%); one column on a phone. */
.columns { display: grid; grid-template-columns: fit-content(70%) minmax(0, 1fr); gap: 0 1.5rem; align-items: start; }
.columns .figures { display: block; }
@media (max-width: 760px) { .columns { grid-template-columns: minmax(0, 1fr); } }
dialog.zoom { padding: 0; border: 0; border-radius: 4px; max-width: 100vw; max-height: 100vh; overflow: auto; }
dialog.zoom::backdrop { background: rgba(0, 0, 0, .7); }
dialog.zoom img { display: block; max-width: none; cursor: zoom-out; }
dialog.zoom p { position: sticky; top: 0; left: 0; margin: 0; padding: .3rem .6rem; background: var(--soft);
                display: flex; justify-content: space-between; gap: 1rem; font-size: .85rem; }
dialog.zoom button { font: inherit; font-weight: 600; color: var(--accent); background: none; border: 0;
                     cursor: pointer; }
pre { background: var(--soft); padding: .6rem .8rem; border-radius: 6px; white-space: pre-wrap;
      overflow-wrap: anywhere; font-size: .85rem; }
code { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; overflow-wrap: anywhere; }
p code { background: var(--soft); padding: .1rem .3rem; border-radius: 4px; font-size: .9em; }
.missing { background: #fff8c5; border-left: 4px solid var(--warn); padding: .5rem .75rem; border-radius: 4px; }
footer { color: var(--muted); font-size: .85rem; padding-bottom: 2rem; border-top: 1px solid var(--line); }
@media (max-width: 600px) { body { font-size: 15px; } h1 { font-size: 1.35rem; } th, td { padding: .25rem .4rem; } }
@media print {
  @page { margin: 14mm; }
  body { font-size: 10.5pt; }
  header, main, footer { max-width: none; padding: 0; }
  nav { display: none; }
  a { color: inherit; text-decoration: none; }
  .table-wrap { overflow: visible; }
  details > summary { list-style: none; }
  th button::after { content: ""; }
  th[aria-sort="ascending"] button::after { content: " \\25B2"; }
  th[aria-sort="descending"] button::after { content: " \\25BC"; }
  h2, h3 { break-after: avoid; }
  figure, tr, .facts div, .missing { break-inside: avoid; }
  .figures, .columns { display: block; }
  figure { margin-bottom: .5rem; }
  figure img { max-height: 120mm; width: auto; }
  button.zoom { cursor: auto; }
}
"""

# Sorts a table by the clicked column: by data-sort (numbers) where the cells have it, else by text;
# empty values stay last in both directions; a second click reverses.
JS = """
(function () {
  function key(cell) {
    var v = cell.getAttribute('data-sort');
    return v === null ? cell.textContent.trim() : v;
  }
  document.querySelectorAll('table.sortable').forEach(function (table) {
    var heads = table.tHead.rows[0].cells;
    Array.prototype.forEach.call(heads, function (th, col) {
      th.querySelector('button').addEventListener('click', function () {
        var asc = th.getAttribute('aria-sort') !== 'ascending';
        Array.prototype.forEach.call(heads, function (h) { h.setAttribute('aria-sort', 'none'); });
        th.setAttribute('aria-sort', asc ? 'ascending' : 'descending');
        var body = table.tBodies[0], rows = Array.prototype.slice.call(body.rows);
        var keys = rows.map(function (r) { return r.cells[col] ? key(r.cells[col]) : ''; });
        var numeric = keys.every(function (k) { return k === '' || isFinite(Number(k)); });
        var order = keys.map(function (k, i) { return i; });
        order.sort(function (a, b) {
          var x = keys[a], y = keys[b];
          if (x === '' || y === '') { return x === y ? a - b : (x === '' ? 1 : -1); }
          var c = numeric ? Number(x) - Number(y) : x.localeCompare(y, undefined, {numeric: true});
          return (asc ? c : -c) || a - b;
        });
        order.forEach(function (i) { body.appendChild(rows[i]); });
      });
    });
  });
  // A click on a figure shows it at its own size in a dialog (scrolling where it is larger than the
  // screen); a click on it, the close button or outside it, or Escape, closes it.
  var dialog = document.createElement('dialog'), big = new Image();
  dialog.className = 'zoom';
  dialog.setAttribute('aria-label', 'figure at full size');
  dialog.innerHTML = '<p><span></span><button type="button">close</button></p>';
  document.body.appendChild(dialog);
  document.querySelectorAll('button.zoom').forEach(function (button) {
    button.addEventListener('click', function () {
      var img = button.querySelector('img');
      big.src = img.src;
      big.alt = img.alt;
      dialog.appendChild(big);
      dialog.querySelector('span').textContent = img.alt;
      dialog.showModal();
    });
  });
  dialog.addEventListener('click', function (e) {
    if (e.target === dialog || e.target === big || e.target.tagName === 'BUTTON') { dialog.close(); }
  });
})();
"""

TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="cifarlab {{ version }}">
<title>{{ title }} — cifarlab report</title>
<style>{{ css }}</style>
</head>
<body>
<header>
<h1>{{ title }}</h1>
<p class="sub">{{ path }}</p>
<p class="sub">cifarlab report, generated {{ generated }} by cifarlab {{ version }}</p>
</header>
<main>
<nav aria-label="sections"><ol>
{% for s in sections %}<li><a href="#{{ s.id }}">{{ s.title }}</a>
{%- if not s.computed %} <span class="todo">(not computed)</span>{% endif %}</li>
{% endfor %}</ol></nav>
{% for s in sections %}
<section id="{{ s.id }}" class="{{ 'computed' if s.computed else 'not-computed' }}">
<h2>{{ s.title }}</h2>
{% if s.missing %}{{ paragraph(s.missing, 'missing') }}{% endif %}
{% for b in s.blocks %}{{ block(b) }}{% endfor %}
</section>
{% endfor %}
</main>
<footer><p>Made by <code>cifarlab report</code>: one file, images embedded, no network needed. Sections marked
"not computed" name the command that computes them.</p></footer>
<script>{{ js }}</script>
</body>
</html>
"""

BLOCK = """{% macro block(b) %}
{% if b.kind == 'heading' %}<h3>{{ b.text }}</h3>
{% elif b.kind == 'text' %}{{ paragraph(b, '') }}
{% elif b.kind == 'code' %}<pre><code>{{ b.text }}</code></pre>
{% elif b.kind == 'facts' %}<dl class="facts">
{% for label, value in b.items %}<div><dt>{{ label }}</dt><dd>{{ value }}</dd></div>
{% endfor %}</dl>
{% elif b.kind == 'figures' %}<div class="figures">
{% for f in b.items %}<figure{% if f.wide %} class="wide"{% endif %}>
<button type="button" class="zoom" title="open at full size"><img src="{{ f.src }}" alt="{{ f.caption }}">\
</button><figcaption>{{ f.caption }}</figcaption></figure>
{% endfor %}</div>
{% elif b.kind == 'table' %}<div class="table-wrap"><table{% if b.sortable %} class="sortable"{% endif %}>
{% if b.caption %}<caption>{{ b.caption }}</caption>{% endif %}
<thead><tr>{% for h in b.headers %}<th scope="col"
{%- if b.sortable %} aria-sort="none"><button type="button">{{ h }}</button>{% else %}>{{ h }}{% endif %}</th>
{%- endfor %}</tr></thead>
<tbody>
{% for row in b.rows %}<tr>{% for c in row %}<td
{%- if c.numeric %} class="num" data-sort="{{ c.sort }}"{% elif c.text|length > 40 %} class="long"{% endif %}>\
{{ c.text }}</td>{% endfor %}</tr>
{% endfor %}</tbody></table></div>
{% elif b.kind == 'columns' %}<div class="columns"><div>
{% for x in b.figure %}{{ block(x) }}{% endfor %}</div><div>
{% for x in b.beside %}{{ block(x) }}{% endfor %}</div></div>
{% elif b.kind == 'details' %}<details><summary>{{ b.summary }}</summary>
{% for x in b.blocks %}{{ block(x) }}{% endfor %}</details>
{% endif %}
{% endmacro %}"""


PARAGRAPH = """{% macro paragraph(t, cls) %}<p{% if cls %} class="{{ cls }}"{% endif %}>{{ t.text }}\
{% if t.command %} <code>{{ t.command }}</code>{% endif %}</p>{% endmacro %}"""


def render(title: str, path: str, sections: list[Section], generated: str, version: str) -> str:
    from jinja2 import Environment, StrictUndefined
    from markupsafe import Markup

    env = Environment(autoescape=True, undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    template = env.from_string(PARAGRAPH + BLOCK + TEMPLATE)
    return template.render(title=title, path=path, sections=sections, generated=generated, version=version,
                           css=Markup(CSS), js=Markup(JS))

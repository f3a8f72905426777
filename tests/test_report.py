"""`cifarlab report` and `cifarlab run`: the HTML report's sections (present, or naming the command that
computes them), escaping, sortable tables, every image loading in a real browser, and the main job."""
from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

import cifarlab
from cifarlab.cli import main
from cifarlab.errors import CifarlabError

RUN_SECTIONS = ["summary", "curves", "analysis", "explanations", "features", "embedding", "config"]


@contextlib.contextmanager
def _own_cache(root: Path):
    """A decode cache for module-scoped fixtures (the autouse per-test one is not set up yet for them)."""
    old = os.environ.get("CIFARLAB_CACHE")
    os.environ["CIFARLAB_CACHE"] = str(root)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("CIFARLAB_CACHE", None)
        else:
            os.environ["CIFARLAB_CACHE"] = old


@pytest.fixture(scope="module")
def full_run(tmp_path_factory, train_tree):
    """`cifarlab.run` on the synthetic data: trained, analyzed, explained, feature maps, embedding, report."""
    with _own_cache(tmp_path_factory.mktemp("cache")):
        return cifarlab.run(train_tree, tmp_path_factory.mktemp("full") / "run", epochs=1, val_size=30,
                            precision="fp32", methods="gradcam,saliency", robustness_images=20, embed_samples=30,
                            verbose=False)


def bare_copy(trained_run: Path, dest: Path) -> Path:
    """The run directory as train left it: config, metrics, summary, weights (no analysis or pictures)."""
    shutil.copytree(trained_run, dest, ignore=shutil.ignore_patterns("checkpoints", "analysis", "explain",
                                                                     "features", "embed", "report.html"))
    return dest


class Page(HTMLParser):
    """The parts of a report the tests look at: sections (id, class, text), tables, images."""

    def __init__(self, html: str):
        super().__init__()
        self.sections: dict[str, dict] = {}
        self.tables: list[dict] = []
        self.images: list[str] = []
        self.scripts: list[dict] = []
        self._section = None
        self._table = None
        self._cell = None
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "section":
            self._section = self.sections.setdefault(a["id"], {"class": a.get("class", ""), "text": ""})
        elif tag == "table":
            self._table = {"class": a.get("class", ""), "headers": [], "rows": [], "section": self._section}
            self.tables.append(self._table)
        elif tag == "th" and self._table is not None:
            self._table["headers"].append(a)
        elif tag == "tr" and self._table is not None and self._table["headers"]:
            self._table["rows"].append([])
        elif tag == "td" and self._table is not None:
            self._cell = {"attrs": a, "text": ""}
            self._table["rows"][-1].append(self._cell)
        elif tag == "img":
            self.images.append(a.get("src", ""))
        elif tag == "script":
            self.scripts.append(a)

    def handle_endtag(self, tag):
        if tag == "section":
            self._section = None
        elif tag == "table":
            self._table = None
        elif tag == "td":
            self._cell = None

    def handle_data(self, data):
        if self._section is not None:
            self._section["text"] += data
        if self._cell is not None:
            self._cell["text"] += data


def read_page(path: Path) -> tuple[str, Page]:
    html = path.read_text(encoding="utf-8")
    return html, Page(html)


def test_run_does_the_whole_job_and_the_report_has_every_section(full_run):
    run_dir = full_run.run_dir
    for part in ("summary.json", "analysis/analysis.json", "explain/explain.json", "report.html"):
        assert (run_dir / part).is_file(), part
    assert list((run_dir / "features").glob("features_*.png")) and list((run_dir / "embed").glob("*.png"))
    assert full_run.report == run_dir / "report.html"
    assert full_run.summary["test_accuracy"] == json.loads((run_dir / "summary.json").read_text())["test_accuracy"]
    assert set(full_run.seconds) == {"train", "analyze", "explain", "features", "embed", "report"}
    explained = json.loads((run_dir / "explain" / "explain.json").read_text())
    assert len(explained["images"]) == 3 and set(explained["metrics"]) == {"gradcam", "saliency", "random order"}

    html, page = read_page(full_run.report)
    assert list(page.sections) == RUN_SECTIONS
    assert all(s["class"] == "computed" for s in page.sections.values())
    assert "(not computed)" not in html  # the contents list marks sections that were not
    # self-contained: every image embedded, no stylesheet, script or image from elsewhere
    assert len(page.images) >= 12 and all(src.startswith("data:image/png;base64,") for src in page.images)
    assert not re.search(r"""(src|href)=["']?(https?:|//)""", html) and "<link" not in html
    assert all("src" not in s for s in page.scripts)
    assert "faithfulness" in page.sections["explanations"]["text"].lower()
    assert "saliency" in page.sections["explanations"]["text"]
    accuracy = f"{full_run.summary['test_accuracy']:.4f}"
    assert accuracy in page.sections["summary"]["text"]
    # the three test accuracies of one model each say what they were measured on
    label = f"test accuracy ({full_run.summary['test_images']:,} images, fp32, no TTA)"
    assert label in page.sections["summary"]["text"]
    assert "fp32 logits" in page.sections["analysis"]["text"]
    assert "clean accuracy on this 20-image sample" in page.sections["analysis"]["text"]


def test_the_report_is_readable_on_a_phone_and_printable(full_run):
    html = full_run.report.read_text(encoding="utf-8")
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in html
    assert "@media print" in html and "@media (max-width" in html
    assert "max-width: 100%" in html  # images shrink to the screen


def test_a_bare_run_names_the_command_for_each_missing_section(trained_run, tmp_path):
    run = bare_copy(trained_run, tmp_path / "bare")
    path = cifarlab.report(run)
    assert path == run / "report.html"
    html, page = read_page(path)
    assert list(page.sections) == RUN_SECTIONS
    for sid in ("summary", "config", "curves"):
        assert page.sections[sid]["class"] == "computed", sid
    expected = {"analysis": f"cifarlab analyze {run}", "features": f"cifarlab features {run} --image IMG",
                "embedding": f"cifarlab embed {run}",
                "explanations": f"cifarlab explain {run} --samples-per-class 1 --evaluate 100"}
    for sid, cmd in expected.items():
        assert page.sections[sid]["class"] == "not-computed", sid
        assert "Not computed." in page.sections[sid]["text"] and cmd in page.sections[sid]["text"], sid
    assert len(page.images) == 2  # the learning curves: loss and accuracy; the constant learning rate is a line
    assert "Learning rate: 0.001 throughout (constant schedule, no warm-up)." in page.sections["curves"]["text"]


def test_an_unfinished_run_says_how_to_finish_it(trained_run, tmp_path):
    run = bare_copy(trained_run, tmp_path / "unfinished")
    (run / "summary.json").unlink()
    _, page = read_page(cifarlab.report(run))
    assert page.sections["summary"]["class"] == "not-computed"
    assert f"cifarlab train --resume {run}" in page.sections["summary"]["text"]


def test_the_report_escapes_what_it_reads(trained_run, tmp_path):
    run = bare_copy(trained_run, tmp_path / "evil")
    info = json.loads((run / "config.json").read_text())
    info["command"] = 'cifarlab train --out "<script>alert(1)</script>" & echo \'<img src=x onerror=alert(2)>\''
    info["classes"] = ["<b>cat</b>", "dog", "frog"]
    info["config"]["model"] = "<i>baseline</i>"
    (run / "config.json").write_text(json.dumps(info))
    html = cifarlab.report(run).read_text(encoding="utf-8")
    for raw in ("<script>alert(1)", "<img src=x", "<b>cat</b>", "<i>baseline</i>"):
        assert raw not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "&amp; echo" in html
    assert "&lt;b&gt;cat&lt;/b&gt;" in html and "<title>&lt;i&gt;baseline&lt;/i&gt;" in html
    assert html.count("<script>") == 1  # only the report's own


def test_tables_are_sortable_by_clicking_a_header(full_run):
    html, page = read_page(full_run.report)
    sortable = [t for t in page.tables if "sortable" in t["class"]]
    assert len(sortable) >= 5
    for t in sortable:
        assert all(h.get("aria-sort") == "none" for h in t["headers"])
        for row in t["rows"]:
            for cell in row:
                if "data-sort" in cell["attrs"]:
                    key = cell["attrs"]["data-sort"]
                    assert key == "" or float(key) == float(key), key
    assert '<th scope="col" aria-sort="none"><button type="button">class</button></th>' in html
    assert "table.sortable" in html and "addEventListener('click'" in html
    per_class = next(t for t in sortable if [h for h in t["headers"]] and t["rows"] and
                     t["rows"][0][0]["text"] in ("cat", "dog", "frog"))
    supports = [int(float(r[-1]["attrs"]["data-sort"])) for r in per_class["rows"]]
    assert supports == [20, 20, 20]


def test_report_of_a_compare_directory(tiny_tree, tmp_path, capsys):
    out = tmp_path / "cmp"
    cifarlab.compare(["baseline"], out, seeds=[0, 1],
                     base=cifarlab.TrainConfig(epochs=1, data=str(tiny_tree), val_size=9, precision="fp32"),
                     verbose=False)
    capsys.readouterr()  # the trainings' own progress lines
    assert main(["report", str(out), "--out", str(tmp_path / "cmp.html")]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "cmp.html")
    html, page = read_page(tmp_path / "cmp.html")
    assert list(page.sections) == ["comparison", "runs"]
    table = page.tables[0]
    assert [r[0]["text"] for r in table["rows"]] == ["baseline"]
    accuracies = json.loads((out / "compare.json").read_text())[0]["test_accuracy"]
    test_cell = table["rows"][0][7]
    assert "±" in test_cell["text"]  # two seeds: mean ± std, sorted by the mean
    assert float(test_cell["attrs"]["data-sort"]) == pytest.approx(sum(accuracies) / 2)
    assert len(page.images) == 3
    assert [r[0]["text"] for r in page.tables[1]["rows"]] == ["baseline-seed0", "baseline-seed1"]


@pytest.fixture(scope="module")
def tune_dir(tmp_path_factory, tiny_tree):
    out = tmp_path_factory.mktemp("tune") / "tune"
    with _own_cache(tmp_path_factory.mktemp("cache")):
        cifarlab.tune(cifarlab.TrainConfig(epochs=1, data=str(tiny_tree), val_size=9, precision="fp32"), out, trials=2)
    return out


def test_report_of_a_tune_directory(tune_dir):
    out = tune_dir
    html, page = read_page(cifarlab.report(out))
    assert list(page.sections) == ["tuning"]
    text = page.sections["tuning"]["text"]
    assert "Best parameters" in text and f"cifarlab train --from-study {out}" in text
    trials = page.tables[-1]
    assert "run_dir" not in html and len(trials["rows"]) == 2
    # headers in words, one accuracy column, epochs as done/planned: the table fits a wide screen
    headers = re.findall(r'<th scope="col" aria-sort="none"><button type="button">([^<]*)</button>',
                         html[html.index("<h3>Trials</h3>"):])
    assert headers[:3] == ["#", "state", "val acc"] and headers[-2:] == ["epochs", "train s"]
    assert "label smoothing" in headers and not any("_" in h for h in headers)
    assert [r[-2]["text"] for r in trials["rows"]] == ["1/1", "1/1"] and trials["rows"][0][1]["text"] == "complete"
    assert len(page.images) == 1  # the optimization history; no importance plot from 2 trials...
    assert "No parameter importance" in text and "at least 5 complete trials" in text  # ...but a note saying why
    assert "no trial was pruned" in text


def test_the_tune_report_table_fits_a_wide_screen(tune_dir):
    from browser_helper import browser

    path = cifarlab.report(tune_dir)
    with browser() as b:
        page = b.new_page(viewport={"width": 1400, "height": 900})
        page.goto(path.as_uri())
        widths = page.evaluate("Array.from(document.querySelectorAll('.table-wrap')).map(w => [w.scrollWidth, "
                               "w.clientWidth])")
        assert len(widths) == 2 and all(inner <= outer for inner, outer in widths), widths


def test_report_of_ablation_and_lr_find_directories(tiny_tree, tmp_path):
    base = cifarlab.TrainConfig(epochs=1, data=str(tiny_tree), val_size=9, precision="fp32")
    cifarlab.ablate("baseline", "label_smoothing=0,0.1", tmp_path / "abl", base=base, verbose=False)
    _, page = read_page(cifarlab.report(tmp_path / "abl"))
    assert list(page.sections) == ["ablation", "runs"]
    assert [r[0]["text"] for r in page.tables[0]["rows"]] == ["0.0", "0.1"] and len(page.images) == 2
    cifarlab.lr_find(base, out=tmp_path / "lr", steps=12, verbose=False)
    _, page = read_page(cifarlab.report(tmp_path / "lr"))
    assert list(page.sections) == ["lr-find"] and "suggested lr" in page.sections["lr-find"]["text"]
    assert len(page.images) == 1


def test_a_missing_picture_is_noted_not_fatal(full_run, tmp_path):
    run = tmp_path / "copy"
    shutil.copytree(full_run.run_dir, run, ignore=shutil.ignore_patterns("checkpoints"))
    (run / "analysis" / "confusion_matrix.png").unlink()
    _, page = read_page(cifarlab.report(run))
    assert "confusion_matrix.png is missing" in page.sections["analysis"]["text"]


@pytest.mark.parametrize("case, message", [
    ("missing", "directory not found"),
    ("empty", "holds no cifarlab results"),
    ("corrupt", "cannot read"),
])
def test_bad_directories_fail_with_one_line_and_write_nothing(trained_run, tmp_path, capsys, case, message):
    target = tmp_path / case
    if case == "empty":
        target.mkdir()
    elif case == "corrupt":
        bare_copy(trained_run, target)
        (target / "analysis").mkdir()
        (target / "analysis" / "analysis.json").write_text("{not json")
    assert main(["report", str(target)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("cifarlab report: error: ") and message in err and "\n" not in err
    if case == "corrupt":
        assert "analysis.json" in err
        assert not (target / "report.html").exists() and not list(target.glob(".report.html*"))


def test_report_is_written_atomically_into_a_given_folder(trained_run, tmp_path):
    run = bare_copy(trained_run, tmp_path / "run")
    folder = tmp_path / "reports"
    folder.mkdir()
    assert cifarlab.report(run, folder) == folder / "report.html"
    assert [p.name for p in folder.iterdir()] == ["report.html"]


def test_run_rejects_bad_arguments_before_training(train_tree, tmp_path, capsys):
    out = tmp_path / "never"
    assert main(["run", "--data", str(train_tree), "--out", str(out), "--explain-per-class", "-1"]) == 2
    assert "--explain-per-class must be >= 0" in capsys.readouterr().err
    assert main(["run", "--data", str(train_tree), "--out", str(out), "--methods", "nope"]) == 2
    assert "unknown --method 'nope'" in capsys.readouterr().err
    assert not out.exists()
    with pytest.raises(CifarlabError, match="embed_samples"):
        cifarlab.run(train_tree, out, embed_samples=-5)


def test_run_from_the_command_line_prints_accuracy_and_where_things_are(train_tree, tmp_path, capsys):
    out = tmp_path / "cli-run"
    assert main(["run", "--data", str(train_tree), "--out", str(out), "--epochs", "1", "--val-size", "30",
                 "--precision", "fp32", "--explain-per-class", "0", "--robustness-images", "0",
                 "--embed-samples", "0"]) == 0
    printed = capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    assert f"test accuracy {summary['test_accuracy']:.4f} after 1 epochs" in printed
    assert f"run directory: {out}" in printed and f"report: {out / 'report.html'}" in printed
    _, page = read_page(out / "report.html")
    assert page.sections["analysis"]["class"] == "computed"
    assert page.sections["explanations"]["class"] == "not-computed"  # --explain-per-class 0


def test_the_report_in_a_browser_every_image_loads_and_no_section_is_broken(full_run):
    from browser_helper import browser

    with browser() as b:
        page = b.new_page(viewport={"width": 1400, "height": 900})
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("request", lambda r: errors.append(f"network request {r.url}")
                if not r.url.startswith(("file:", "data:")) else None)
        page.goto(full_run.report.as_uri())
        images = page.evaluate("Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.alt])")
        assert len(images) >= 12
        assert all(done and width > 0 for done, width, _ in images), [alt for d, w, alt in images if not w]
        sections = page.evaluate("""Array.from(document.querySelectorAll('main section')).map(s => ({
            id: s.id, title: s.querySelector('h2') && s.querySelector('h2').textContent,
            blocks: s.children.length, height: s.getBoundingClientRect().height}))""")
        assert [s["id"] for s in sections] == RUN_SECTIONS
        assert all(s["title"] and s["blocks"] >= 2 and s["height"] > 40 for s in sections), sections
        links = page.evaluate("Array.from(document.querySelectorAll('nav a')).map(a => a.getAttribute('href'))")
        assert links == [f"#{s}" for s in RUN_SECTIONS]
        fits = "document.documentElement.scrollWidth <= document.documentElement.clientWidth"
        assert page.evaluate(fits)
        # the long configuration table is last and folded away; a click opens it
        assert page.is_hidden("#config table") and page.is_visible("#config summary")
        page.click("#config summary")
        assert page.is_visible("#config table")
        # at 1400 px a figure on screen is shown at two thirds of its own size or more (its text stays readable),
        # or as tall as the screen allows
        shown = page.evaluate("Array.from(document.querySelectorAll('figure img')).filter(i => i.offsetParent)"
                              ".map(i => [i.width, i.naturalWidth, i.height, innerHeight])")
        assert len(shown) >= 6 and all(w >= 0.66 * natural or h >= 0.8 * screen for w, natural, h, screen in shown)

        # sort the per-class table (folded away: open it first) by F1, then by class name descending
        page.click("#analysis summary:has-text('Per class')")
        table = page.locator("#analysis table").first
        table.locator("th button", has_text="F1").click()
        assert table.locator("th").nth(3).get_attribute("aria-sort") == "ascending"
        f1 = [float(x) for x in table.locator("tbody td:nth-child(4)").all_inner_texts()]
        assert f1 == sorted(f1)
        table.locator("th button", has_text="class").click()
        table.locator("th button", has_text="class").click()
        assert table.locator("tbody td:nth-child(1)").all_inner_texts() == ["frog", "dog", "cat"]

        page.set_viewport_size({"width": 390, "height": 800})  # a phone: nothing wider than the screen
        assert page.evaluate(fits)
        page.emulate_media(media="print")
        assert page.evaluate("getComputedStyle(document.querySelector('nav')).display") == "none"
        assert not errors, errors


# Half the 14,630 px the report of a 1-epoch run on 5,000 CIFAR-10 images took at 1400 px when it showed every
# table, gallery and channel at once; a tiny run's report must fit it with room to spare.
REPORT_HEIGHT_AT_1400 = 7300


def test_the_report_fits_a_wide_screen_and_reads_on_a_phone(full_run):
    from browser_helper import browser

    with browser() as b:
        page = b.new_page(viewport={"width": 1400, "height": 900})
        page.goto(full_run.report.as_uri())
        height = page.evaluate("document.documentElement.scrollHeight")
        assert height <= REPORT_HEIGHT_AT_1400, height
        assert page.evaluate("Array.from(document.querySelectorAll('main section')).map(s => s.id)") == RUN_SECTIONS

        page.set_viewport_size({"width": 390, "height": 844})
        assert page.evaluate("document.documentElement.scrollWidth <= innerWidth")  # wide tables scroll in place
        images = page.evaluate("Array.from(document.querySelectorAll('main img'))"
                               ".map(i => [i.alt, i.naturalWidth, !!i.closest('figure > button.zoom')])")
        assert len(images) >= 12
        assert all(width > 0 for _, width, _ in images), images  # none broken, folded away or not
        assert all(zoom for _, _, zoom in images), images  # every figure opens at full size on a tap
        # a tap on the confusion matrix shows it at its own size, scrolling inside the dialog; Escape closes it
        page.locator("#analysis figure > button.zoom").first.click()
        dialog = page.locator("dialog.zoom")
        assert dialog.is_visible()
        same, width, natural = page.evaluate("""(() => {
            const big = document.querySelector('dialog.zoom img');
            const small = document.querySelector('#analysis figure img');
            return [big.src === small.src, big.width, big.naturalWidth]; })()""")
        assert same and width == natural > 390
        assert page.evaluate("document.documentElement.scrollWidth <= innerWidth")
        page.keyboard.press("Escape")
        assert not dialog.is_visible()


def test_secondary_material_is_folded_away_and_each_thing_is_shown_once(full_run):
    html = full_run.report.read_text(encoding="utf-8")

    def section(sid: str) -> tuple[str, str]:
        """The section's HTML on show, and what its <details> fold away."""
        body = html[html.index(f'<section id="{sid}"'):]
        body = body[:body.index("</section>")]
        folded = re.findall(r"<details>.*?</details>", body, flags=re.S)
        return re.sub(r"<details>.*?</details>", "", body, flags=re.S), "".join(folded)

    shown, folded = section("features")  # each layer's 8 most active channels; every channel behind a click
    for layer in ("features.3", "features.8"):
        assert f'alt="{layer}: its most active channels"' in shown and f'alt="{layer}: feature maps"' in folded
    assert "first layer filters" in folded
    shown, folded = section("analysis")  # CIFAR-10-C as a heatmap; its table behind a click
    assert 'alt="accuracy per corruption and severity"' in shown and "severity 1" not in shown
    assert "severity 1" in folded and "gaussian_noise" in folded
    for hidden in ("the most confident mistakes", "the highest-loss images"):
        assert hidden not in shown and hidden in folded
    shown, folded = section("curves")  # a constant learning rate is a line, not a plot
    assert "Learning rate: 0.001 throughout" in shown and 'alt="learning rate' not in html


def test_feature_maps_draw_each_layers_most_active_channels(monkeypatch, tmp_path):
    from cifarlab.features import feature_maps, plots
    from cifarlab.models import create_model

    drawn = {}
    draw = plots.feature_map_figure

    def recording(image, maps, channels, layer, path, note=""):
        drawn[Path(path).name] = list(channels)
        return draw(image, maps, channels, layer, path, note)

    monkeypatch.setattr(plots, "feature_map_figure", recording)
    import torch

    torch.manual_seed(0)
    img = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    result = feature_maps(create_model("resnet20", num_classes=3).eval(), img, out=tmp_path, device="cpu")
    for layer, maps in result.maps.items():  # 16, 32 and 64 channels
        means = maps.mean(axis=(1, 2))
        top = sorted(range(len(means)), key=lambda i: -means[i])[:8]
        assert drawn[f"most_active_{layer}.png"] == [result.channels[layer][i] for i in top]
        assert drawn[f"features_{layer}.png"] == result.channels[layer]  # the full grid stays
        assert result.figures[f"{layer} (most active)"] == tmp_path / f"most_active_{layer}.png"


def test_a_learning_rate_that_changes_is_plotted():
    from cifarlab.reporting.curves import constant_lr, learning_curve_pngs

    history = [{"epoch": 1, "train_loss": 2.0, "lr": 0.1}, {"epoch": 2, "train_loss": 1.5, "lr": 0.01}]
    assert constant_lr(history) is None and set(learning_curve_pngs(history)) == {"loss", "learning rate"}
    flat = [{**h, "lr": 0.1} for h in history]
    assert constant_lr(flat) == 0.1 and set(learning_curve_pngs(flat)) == {"loss"}


def test_the_loss_curve_is_drawn_per_step_when_the_history_has_steps(trained_run, tmp_path):
    from cifarlab.reporting.curves import learning_curve_pngs, step_losses

    history = [{"epoch": 1, "train_loss": 2.0, "val_loss": 1.9, "steps_per_epoch": 4,
                "train_loss_steps": [[1, 2.3], [2, 2.2], [3, 2.1], [4, 2.0]]},
               {"epoch": 2, "train_loss": 1.6, "val_loss": 1.7, "steps_per_epoch": 4,
                "train_loss_steps": [[5, 1.8], [6, 1.7], [7, 1.6], [8, 1.5]]}]
    assert step_losses(history) == [(0.25, 2.3), (0.5, 2.2), (0.75, 2.1), (1.0, 2.0), (1.25, 1.8), (1.5, 1.7),
                                    (1.75, 1.6), (2.0, 1.5)]
    assert step_losses([{k: v for k, v in h.items() if k != "train_loss_steps"} for h in history]) == []
    assert set(learning_curve_pngs(history)) == {"loss"}
    run = bare_copy(trained_run, tmp_path / "steps")
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    for r in records:
        r.update(steps_per_epoch=2, train_loss_steps=[[2 * r["epoch"] - 1, 1.2], [2 * r["epoch"], 1.1]])
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    _, page = read_page(cifarlab.report(run))
    assert "loss per epoch (training: per step)" in page.sections["curves"]["text"]


def test_the_faithfulness_table_leaves_out_columns_without_any_value():
    from cifarlab.reporting.sections import faithfulness_table

    rows = {"gradcam": {"deletion_auc": 0.3, "insertion_auc": 0.6, "randomization_spearman": 0.1},
            "random order": {"deletion_auc": 0.4, "insertion_auc": 0.5}}
    table = faithfulness_table(rows)
    assert "s / image" not in table.headers and "randomization ρ" in table.headers
    assert all(len(r) == len(table.headers) for r in table.rows)
    assert any(any(c.text != "-" for c in r[1:]) for r in table.rows)
    timed = faithfulness_table({n: {**r, "seconds_per_image": 0.01} for n, r in rows.items()})
    assert "s / image" in timed.headers

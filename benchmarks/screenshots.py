"""Screenshots of a real run's report and of `cifarlab serve` after an upload, for docs/.

    python benchmarks/screenshots.py RUN_DIR [--out docs] [--image PNG]

RUN_DIR: a finished `cifarlab run` (trained, analyzed, explained, reported). Writes report_top.png,
report_middle.png (the error analysis) and serve.png, each a 1400x900 view of headless Chromium
(the system's, through Playwright), and report_phone.png, the top of the report on a 390x844 phone
screen, each compressed to a palette PNG so that it stays under 400 KB. With --site DIR (a site built by
`make docs`), also docs_site.png, the docs site's front page.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from browser_helper import CHROMIUM_ARGS, chromium_path, served  # noqa: E402

WIDTH, HEIGHT = 1400, 900
PHONE_WIDTH, PHONE_HEIGHT = 390, 844


def shrink(path: Path) -> None:
    """A 256-colour palette PNG: a page screenshot loses nothing visible and drops to a few hundred KB."""
    from PIL import Image

    Image.open(path).convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--out", type=Path, default=Path("docs"))
    parser.add_argument("--image", type=Path, help="the image to upload (default: the first test image of a cat)")
    parser.add_argument("--site", type=Path, help="a built docs site (make docs: site/): also docs_site.png")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    report = args.run_dir / "report.html"
    image = args.image
    if image is None:
        import json

        data = Path(json.loads((args.run_dir / "config.json").read_text())["config"]["data"])
        image = sorted((data / "test" / "cat").iterdir())[0]
    args.out.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": WIDTH, "height": HEIGHT})
        page.goto(report.as_uri())
        page.screenshot(path=str(args.out / "report_top.png"))
        page.locator("#analysis h3", has_text="Confusion matrix").evaluate("h => h.scrollIntoView()")
        page.screenshot(path=str(args.out / "report_middle.png"))
        page.set_viewport_size({"width": PHONE_WIDTH, "height": PHONE_HEIGHT})
        page.evaluate("window.scrollTo(0, 0)")
        page.screenshot(path=str(args.out / "report_phone.png"))
        page.set_viewport_size({"width": WIDTH, "height": HEIGHT})
        with served(args.run_dir) as url:
            page.goto(url)
            page.wait_for_function("document.querySelectorAll('#method option').length > 0")
            page.set_input_files("#file", str(image))
            page.wait_for_function("document.getElementById('overlay').naturalWidth > 0")
            page.screenshot(path=str(args.out / "serve.png"))
        names = ["report_top.png", "report_middle.png", "report_phone.png", "serve.png"]
        if args.site is not None:
            page.goto((args.site.resolve() / "index.html").as_uri())
            page.screenshot(path=str(args.out / "docs_site.png"))
            names.append("docs_site.png")
        browser.close()
    for name in names:
        shrink(args.out / name)
        print(f"{args.out / name}: {(args.out / name).stat().st_size / 1024:.0f} KB")
    return 0


if __name__ == "__main__":
    sys.exit(main())

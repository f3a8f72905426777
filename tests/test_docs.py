"""The documentation cannot rot quietly.

- The site (mkdocs.yml, docs/, BENCHMARKS.md and the example notebook) builds with `mkdocs build --strict`:
  a broken link or anchor, a page left out of the navigation, or an API reference entry that no longer
  resolves is an error.
- Every public name of the `cifarlab` package has an entry in the API reference.
- Every relative link and picture of README.md and BENCHMARKS.md points at a file of the repository.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import cifarlab

ROOT = Path(__file__).resolve().parent.parent
API_PAGE = ROOT / "docs" / "reference" / "api.md"
MARKDOWN_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def test_docs_site_builds_strictly(tmp_path):
    site = tmp_path / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}  # Material's banner about MkDocs 2, not about these docs
    command = [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(ROOT / "mkdocs.yml"),
               "--site-dir", str(site)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    for page in ["index.html", "install/index.html", "guide/python-api/index.html", "reference/api/index.html",
                 "benchmarks/index.html", "history/index.html", "advanced_cifar10/index.html"]:
        assert (site / page).is_file(), f"{page} missing from the built site"
    api = (site / "reference" / "api" / "index.html").read_text(encoding="utf-8")
    assert "Train a model and return its run directory" in api  # the docstrings are rendered, not just named
    notebook = (site / "advanced_cifar10" / "index.html").read_text(encoding="utf-8")
    assert "<img" in notebook  # rendered with its committed outputs (plots), not executed


def documented_names() -> set[str]:
    return {line.split()[-1].rsplit(".", 1)[-1] for line in API_PAGE.read_text(encoding="utf-8").splitlines()
            if line.startswith("::: ")}


def test_every_public_name_is_in_the_api_reference():
    missing = sorted(set(cifarlab.__all__) - documented_names())
    assert not missing, f"add these to {API_PAGE.relative_to(ROOT)}: {', '.join(missing)}"


@pytest.mark.parametrize("name", ["README.md", "BENCHMARKS.md"])
def test_relative_links_point_at_files(name):
    text = (ROOT / name).read_text(encoding="utf-8")
    targets = {m.group(1).split("#", 1)[0] for m in MARKDOWN_LINK.finditer(text)}
    broken = sorted(t for t in targets if t and "://" not in t and not t.startswith("mailto:")
                    and not (ROOT / t).exists())
    assert not broken, f"{name} links to missing files: {', '.join(broken)}"

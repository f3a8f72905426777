"""MkDocs hooks: pages whose source lives outside docs/.

BENCHMARKS.md (repository root) becomes the Benchmarks page and examples/advanced_cifar10.ipynb the
notebook page, so each is written once and the site cannot drift from them.
"""
from __future__ import annotations

from pathlib import Path

from mkdocs.plugins import event_priority
from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "examples" / "advanced_cifar10.ipynb"


def _benchmarks_markdown() -> str:
    # BENCHMARKS.md links pictures and pages as docs/NAME (from the repository root); the page sits in docs/.
    return (ROOT / "BENCHMARKS.md").read_text(encoding="utf-8").replace("](docs/", "](")


@event_priority(100)  # before mkdocs-jupyter turns .ipynb files into pages
def on_files(files: Files, config) -> Files:
    files.append(File.generated(config, "benchmarks.md", content=_benchmarks_markdown()))
    # A File with its own src_dir (not File.generated), since mkdocs-jupyter reads the page from src_dir.
    files.append(File(NOTEBOOK.name, src_dir=str(NOTEBOOK.parent), dest_dir=config["site_dir"],
                      use_directory_urls=config["use_directory_urls"]))
    return files

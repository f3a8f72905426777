"""examples/advanced_cifar10.ipynb runs top to bottom in tiny mode (synthetic data), with its plots and
sentences, in a kernel that uses this interpreter and this checkout's src/."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "examples" / "advanced_cifar10.ipynb"
SECTIONS = ["The baseline", "Architectures", "Augmentation", "Regularization and tuning", "Transfer learning",
            "Error analysis", "Feature maps", "Explanations"]


def _kernel_spec(tmp_path: Path, env: dict[str, str]) -> str:
    """A kernelspec for sys.executable, found first via JUPYTER_PATH: never another installed python3."""
    name = "cifarlab-test"
    folder = tmp_path / "jupyter" / "kernels" / name
    folder.mkdir(parents=True)
    (folder / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "cifarlab test", "language": "python", "env": env,
    }))
    return name


def _outputs(nb, kind: str) -> list:
    return [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if kind in o.get("data", {})]


@pytest.mark.timeout(900)  # about a minute on a quiet 2-core machine
def test_the_notebook_runs_in_tiny_mode(tmp_path, monkeypatch):
    src = str(ROOT / "src")
    env = {"PYTHONPATH": os.pathsep.join([src, *filter(None, [os.environ.get("PYTHONPATH")])]),
           "CIFARLAB_NOTEBOOK_MODE": "tiny", "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1",
           "TMPDIR": str(tmp_path)}  # the tiny data and runs land in pytest's temporary directory
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(nb, kernel_name=_kernel_spec(tmp_path, env), timeout=600,
                                     resources={"metadata": {"path": str(NOTEBOOK.parent)}})
    client.execute()  # raises CellExecutionError, with the cell and traceback, if any cell fails

    text = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    for section in SECTIONS:
        assert f"## {section}" in text
    # it opens with the result: the set-up is one call (examples/notebook_setup.py), then the one-call run
    code = [c.source for c in nb.cells if c.cell_type == "code"]
    assert "setup()" in code[0] and "cifarlab.run(" in code[0]
    assert not any("\ndef " in f"\n{source}" for source in code), "set-up code belongs in notebook_setup.py"
    streams = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "mode tiny:" in streams
    # the transfer arms really start where they say (a forgotten **kw once trained all three from scratch)
    assert "from scratch: test accuracy" in streams and "from random weights, freeze none" in streams
    assert "from the 5-class checkpoint, freeze backbone" in streams
    assert "from the 5-class checkpoint, freeze none" in streams
    # the ImageNet weights of cifarlab[pretrained] (in [dev]): zero-shot and the Keras notebook's frozen experiment
    for size in (32, 64):
        assert f"zero-shot at {size:>3} px: test accuracy" in streams, size
    assert "the most frequent ImageNet class at 64 px: airplane → " in streams
    for size in (32, 48):
        assert f"frozen EfficientNet-Lite0 + Dense(512) at {size:>3} px: test accuracy" in streams, size
    pngs = _outputs(nb, "image/png")
    assert len(pngs) >= 16  # every section shows its plots
    imagenet_plot = next(c for c in nb.cells if c.cell_type == "code" and "imagenet_transfer.png" in c.source)
    assert any("image/png" in o.get("data", {}) for o in imagenet_plot.outputs)  # accuracy against input size
    sentences = "\n".join(o["data"]["text/markdown"] for o in _outputs(nb, "text/markdown"))
    for fragment in ("test accuracy, against the Keras notebook's 66%", "does best on validation",
                     "Two more epochs:", "The range test suggests lr", "validation accuracy with",
                     "Calibration:", "test images by their penultimate features", "deletion AUC",
                     "The frozen ImageNet backbone with a Dense(512) head reaches", "The evidence picks **"):
        assert fragment in sentences, fragment


def test_the_kernel_imports_this_checkout(tmp_path, monkeypatch):
    """The executed notebook must test this src/, not an installed cifarlab elsewhere."""
    src = str(ROOT / "src")
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "import sys, cifarlab; print(sys.executable); print(cifarlab.__file__)")])
    kernel = _kernel_spec(tmp_path, {"PYTHONPATH": src})
    nbclient.NotebookClient(nb, kernel_name=kernel, timeout=120).execute()
    executable, module = nb.cells[0].outputs[0]["text"].split()
    assert Path(executable) == Path(sys.executable)
    assert Path(module).is_relative_to(Path(src))

"""Small walls a person meets in an afternoon with cifarlab (issue 19): each one, tested."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from cifarlab.experiments.plots import plain_log_ticks  # noqa: E402
from cifarlab.training.engine import _epoch_line  # noqa: E402


def test_log_loss_axis_reads_as_plain_numbers():
    fig, ax = plt.subplots()
    ax.plot([1, 2], [2.3, 1.1])
    ax.set_yscale("log")
    plain_log_ticks(ax.yaxis)
    fig.canvas.draw()
    labels = [t.get_text() for t in ax.get_yticklabels(minor=True) + ax.get_yticklabels() if t.get_text()]
    plt.close(fig)
    assert "2" in labels and "1.6" in labels
    assert not any("times" in s or "^" in s for s in labels), labels


def test_epoch_line_rounds_a_budget_cut_epoch():
    record = {"epoch": 1.0683760683760684, "train_loss": 1.0, "train_accuracy": 0.5, "epoch_seconds": 2.0,
              "images_per_second": 100.0}
    assert _epoch_line(record, 180).startswith("epoch 1.07/180 ")
    assert _epoch_line({**record, "epoch": 3}, 3).startswith("epoch 3/3 ")


def test_results_show_themselves_in_a_notebook(trained_run, tmp_path):
    """analyze, explain, compare and tune results: a short repr and HTML with their pictures inline."""
    import cifarlab
    from cifarlab.experiments.compare import Comparison
    from cifarlab.tuning.study import TuneResult

    analysis = cifarlab.analyze(trained_run, out=tmp_path / "a", robustness_images=0, verbose=False)
    assert repr(analysis).startswith("Analysis(baseline on test") and len(repr(analysis)) < 200
    page = analysis._repr_html_()
    assert page.count("data:image/png;base64,") == len(analysis.figures()) >= 3 and "macro F1" in page
    assert analysis["metrics"]["accuracy"] == analysis.get("metrics")["accuracy"]  # still the dict it was

    from conftest import synthetic_images

    e = cifarlab.explain(trained_run, synthetic_images(1, ["cat"])[0][0], "saliency", trust_checks=False)
    assert e.figure is None and repr(e).startswith("Explanation(") and "saliency" in repr(e)
    assert "data:image/png;base64," in e._repr_html_()  # drawn on demand, though nothing was written

    (tmp_path / "cmp").mkdir()
    rows = Comparison([{"model": "baseline", "params": 1250858, "test_accuracy": 0.66}], tmp_path / "cmp")
    assert repr(rows) == f"Comparison(baseline; {tmp_path / 'cmp'})" and "1,250,858" in rows._repr_html_()
    tune = TuneResult(tmp_path, "s", "sqlite://", {"lr": 0.01}, 0.5, 0, [{"number": 0, "value": 0.5}], 0.0, None)
    assert "best trial 0: val acc 0.5000" in repr(tune) and "<table>" in tune._repr_html_()


def test_a_budget_run_announces_its_minutes_not_a_number_of_epochs():
    from cifarlab.config import TrainConfig
    from cifarlab.training.engine import _planned

    assert _planned(TrainConfig(epochs=180, budget_minutes=10)) == "10 minutes (at most 180 epochs)"
    assert _planned(TrainConfig(epochs=2)) == "2 epochs"

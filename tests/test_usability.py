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

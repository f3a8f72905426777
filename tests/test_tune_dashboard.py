"""A live view of a tuning study: optuna-dashboard reads the study's own storage (README, "Watching a study")."""
from __future__ import annotations

import json
from wsgiref.util import setup_testing_defaults

import pytest

from cifarlab.config import TrainConfig

optuna_dashboard = pytest.importorskip("optuna_dashboard", reason="optuna-dashboard is in the tune extra")


def get(app, path: str) -> tuple[str, dict]:
    environ = {"PATH_INFO": path, "REQUEST_METHOD": "GET"}
    setup_testing_defaults(environ)
    status = []
    body = b"".join(app(environ, lambda s, headers, exc_info=None: status.append(s)))
    return status[0], json.loads(body)


def test_optuna_dashboard_shows_a_cifarlab_study(tiny_tree, tmp_path):
    from cifarlab.tuning import tune

    out = tmp_path / "study"
    cfg = TrainConfig(model="baseline", data=str(tiny_tree), epochs=1, train_size=30, val_size=15, precision="fp32")
    tune(cfg, out, trials=2, space={"lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True}},
         pruner="none", verbose=False)
    app = optuna_dashboard.wsgi(f"sqlite:///{out / 'study.db'}")
    status, body = get(app, "/api/studies")
    assert status.startswith("200")
    [study] = body["study_summaries"]
    assert study["study_name"] == "cifarlab-baseline"
    status, detail = get(app, f"/api/studies/{study['study_id']}")
    assert status.startswith("200")
    trials = detail["trials"]
    assert [t["state"] for t in trials] == ["Complete", "Complete"]
    assert all(p["name"] == "lr" for t in trials for p in t["params"])
    assert all(0 <= t["values"][0] <= 1 for t in trials)  # validation accuracy

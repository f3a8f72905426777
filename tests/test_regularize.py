"""Regularization and optimization settings: penalties, dropout and stochastic depth, EMA, early
stopping, the optimizer and schedule flags, and the learning-rate range test."""
from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file

import cifarlab
from cifarlab.cli import _train_config, build_parser, main
from cifarlab.config import OPTIMIZERS, SCHEDULES, TrainConfig
from cifarlab.errors import CifarlabError
from cifarlab.rundir import writer
from cifarlab.training.regularize import EarlyStopping, build_model, supports, weight_penalty
from cifarlab.training.resolve import resolve
from crash_helper import train_until_killed

RUN = dict(model="baseline", val_size=30, train_size=64, batch_size=32, precision="fp32", verbose=False)


def tiny_net() -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4 * 30 * 30, 3))
    with torch.no_grad():
        net[0].bias.fill_(5.0)  # large biases: they must not count
        net[1].weight.fill_(3.0)
    return net


def test_penalties_add_exactly_lambda_times_the_norms_of_the_weights_without_biases():
    net = tiny_net().double()  # float64: the differences below are exact to ~1e-12
    weights = [net[0].weight, net[3].weight]  # conv and linear weights; not biases, not the BN scale
    x, y = torch.randn(4, 3, 32, 32, dtype=torch.float64), torch.tensor([0, 1, 2, 0])
    base = F.cross_entropy(net(x), y)
    l1, l2 = 1e-3, 5e-4
    expected_l1 = l1 * sum(w.abs().sum() for w in weights)
    expected_l2 = l2 * sum((w ** 2).sum() for w in weights)
    assert (base + weight_penalty(net, l1=l1)).item() - base.item() == pytest.approx(expected_l1.item(), rel=1e-9)
    assert (base + weight_penalty(net, l2=l2)).item() - base.item() == pytest.approx(expected_l2.item(), rel=1e-9)
    both = weight_penalty(net, l1=l1, l2=l2)
    assert both.item() == pytest.approx((expected_l1 + expected_l2).item(), rel=1e-12)
    assert weight_penalty(net) == 0.0
    both.backward()  # the gradient of the L2 term is 2·lambda·w (plus the L1 sign term)
    assert torch.allclose(net[3].weight.grad, l1 * net[3].weight.sign() + 2 * l2 * net[3].weight)
    assert net[0].bias.grad is None


def test_dropout_and_drop_path_reach_the_model_or_fail_with_the_flag():
    cfg = resolve(TrainConfig(model="baseline", dropout=0.25))
    assert cfg.model_kwargs == {"dropout": 0.25}
    assert build_model(cfg, 3).drop.p == 0.25
    with pytest.raises(CifarlabError, match="dropout: model resnet20 has no dropout"):
        build_model(resolve(TrainConfig(model="resnet20", dropout=0.1)), 3)
    cfg = resolve(TrainConfig(model="resnet20", drop_path=0.2))
    assert cfg.model_kwargs == {"drop_path_rate": 0.2}
    rates = [m.p for m in build_model(cfg, 3).modules() if type(m).__name__ == "StochasticDepth"]
    assert max(rates) == pytest.approx(0.2)
    with pytest.raises(CifarlabError, match="drop_path: model baseline has no drop_path_rate"):
        build_model(resolve(TrainConfig(model="baseline", drop_path=0.1)), 3)
    assert supports("baseline", "dropout") and not supports("resnet20", "dropout")
    assert resolve(TrainConfig(model="timm:resnet18", dropout=0.1)).model_kwargs == {"drop_rate": 0.1}


def test_cli_dropout_error_is_one_line(tiny_tree, tmp_path, capsys):
    assert main(["train", "--model", "resnet20", "--dropout", "0.3", "--data", str(tiny_tree), "--epochs", "1",
                 "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--dropout" in err[0] and not (tmp_path / "r").exists()


@pytest.mark.parametrize("flags, problem", [
    (["--l1", "-1"], "--l1 must be >= 0"), (["--ema", "1.5"], "--ema must be in (0, 1), got 1.5"),
    (["--dropout", "1"], "--dropout must be in [0, 1)"), (["--early-stopping", "0"], "--early-stopping must be > 0"),
    (["--early-stopping", "2", "--val-size", "0"], "needs --val-size > 0"),
])
def test_bad_regularization_settings_are_rejected(flags, problem, capsys):
    assert main(["train", *flags]) == 2
    assert problem in capsys.readouterr().err


def test_every_optimizer_and_schedule_is_reachable_from_the_cli():
    parser = build_parser()
    for opt in OPTIMIZERS:
        for schedule in SCHEDULES:
            args = parser.parse_args(["train", "--optimizer", opt, "--schedule", schedule, "--nesterov", "--momentum",
                                      "0.8", "--weight-decay", "1e-4", "--warmup-epochs", "1", "--l2", "1e-4",
                                      "--ema", "0.99", "--early-stopping", "3", "--drop-path", "0.1"])
            cfg = _train_config(args)
            assert (cfg.optimizer, cfg.schedule, cfg.nesterov, cfg.momentum) == (opt, schedule, True, 0.8)
            assert (cfg.l2, cfg.ema, cfg.early_stopping, cfg.drop_path) == (1e-4, 0.99, 3, 0.1)
    from cifarlab.training.optim import build_optimizer

    net = tiny_net()
    sgd = build_optimizer(net, resolve(TrainConfig(optimizer="sgd", nesterov=True)))
    assert sgd.defaults["nesterov"] and isinstance(build_optimizer(net, resolve(TrainConfig(optimizer="adamw"))),
                                                   torch.optim.AdamW)


def test_ema_weights_are_validated_and_saved(train_tree, tmp_path):
    result = cifarlab.train(**RUN, data=str(train_tree), epochs=2, ema=0.9, out=str(tmp_path / "ema"))
    final = load_file(str(tmp_path / "ema" / "model.safetensors"))
    raw = load_file(str(writer.latest_checkpoint(tmp_path / "ema") / "model.safetensors"))  # the trained weights
    assert not torch.equal(final["fc1.weight"], raw["fc1.weight"])
    assert torch.equal(final["fc1.weight"], result.model.fc1.weight.detach().cpu())
    model = cifarlab.load_run(tmp_path / "ema").model
    assert torch.equal(model.fc1.weight.detach().cpu(), final["fc1.weight"])
    assert result.summary["ema"] == 0.9


def test_resume_restores_the_ema_and_early_stopping_state(train_tree, tmp_path, monkeypatch):
    kw = dict(RUN, data=str(train_tree), epochs=2, ema=0.8, early_stopping=5, seed=3)
    reference = cifarlab.train(**kw, out=str(tmp_path / "full"))
    train_until_killed(monkeypatch, 1, **kw, out=str(tmp_path / "cut"))
    state = writer.load_checkpoint_state(writer.latest_checkpoint(tmp_path / "cut"))
    assert state["ema"] is not None and state["early_stopping"]["best_epoch"] == 1
    resumed = cifarlab.train(resume=tmp_path / "cut", verbose=False)
    assert resumed.summary["val_loss"] == reference.summary["val_loss"]
    assert resumed.summary["test_loss"] == reference.summary["test_loss"]


def test_early_stopping_counts_epochs_without_improvement():
    stop = EarlyStopping(2)
    assert [stop.update({"epoch": e, "val_accuracy": v}) for e, v in
            enumerate([0.5, 0.6, 0.6, 0.55, 0.7], 1)] == [False, False, False, True, False]
    state = stop.state_dict()
    again = EarlyStopping(2)
    again.load_state_dict(state)
    assert again.state_dict() == state and again.best == 0.7
    assert not any(EarlyStopping(None).update({"epoch": 1, "val_accuracy": 0.1}) for _ in range(5))


def test_early_stopping_stops_a_run(train_tree, tmp_path):
    # A learning rate this small cannot change the validation accuracy: stop after 1 + patience epochs.
    result = cifarlab.train(**RUN, data=str(train_tree), epochs=20, lr=1e-12, early_stopping=2,
                            out=str(tmp_path / "es"))
    assert result.summary["epochs_completed"] == 3 and result.summary["stopped_early"]
    assert result.summary["test_accuracy"] is not None
    assert len((tmp_path / "es" / "metrics.jsonl").read_text().splitlines()) == 3


def test_on_epoch_end_stops_and_evaluate_test_false_skips_the_test_split(train_tree, tmp_path, monkeypatch):
    from cifarlab.training import engine

    records = []
    real = engine.classification_metrics
    calls = []
    monkeypatch.setattr(engine, "classification_metrics", lambda logits, labels: calls.append(len(labels)) or
                        real(logits, labels))
    result = cifarlab.train(**RUN, data=str(train_tree), epochs=5, evaluate_test=False, out=str(tmp_path / "cb"),
                            on_epoch_end=lambda r: records.append(r) or len(records) == 2)
    assert len(records) == 2 and result.summary["epochs_completed"] == 2
    assert calls == [30, 30]  # validation only, never the 60 test images
    assert result.summary["test_accuracy"] is None and (tmp_path / "cb" / "model.safetensors").exists()


def test_l1_l2_training_runs(train_tree, tmp_path):
    result = cifarlab.train(**RUN, data=str(train_tree), epochs=1, l1=1e-5, l2=1e-4, dropout=0.1,
                            out=str(tmp_path / "pen"))
    saved = json.loads((tmp_path / "pen" / "config.json").read_text())["config"]
    assert (saved["l1"], saved["l2"], saved["model_kwargs"]) == (1e-5, 1e-4, {"dropout": 0.1})
    assert math.isfinite(result.summary["train_loss"])


def test_lr_find_writes_its_plot_and_suggests_a_finite_lr(tiny_tree, tmp_path, capsys):
    assert main(["lr-find", "--model", "baseline", "--data", str(tiny_tree), "--val-size", "6", "--batch-size", "16",
                 "--steps", "12", "--start", "1e-5", "--end", "10", "--precision", "fp32", "--out",
                 str(tmp_path / "lr")]) == 0
    out = capsys.readouterr().out
    assert "suggested lr" in out and "min/10" in out
    info = json.loads((tmp_path / "lr" / "lr_find.json").read_text())
    assert math.isfinite(info["suggested_lr"]) and 1e-6 <= info["suggested_lr"] <= 1
    assert info["suggested_lr"] == pytest.approx(info["min_loss_lr"] / 10)
    assert 2 <= info["steps_run"] <= 12 and len(info["lrs"]) == info["steps_run"]
    assert info["lrs"] == sorted(info["lrs"]) and info["lrs"][0] == pytest.approx(1e-5)
    assert (tmp_path / "lr" / "lr_find.png").stat().st_size > 1000

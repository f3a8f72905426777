"""The shared training step and epoch (training/loop.py): lr-find trains the run train() would (its
classes, label fraction, transfer set-up and recipe), and every epoch records its per-step loss curve."""
from __future__ import annotations

import base64
import collections
import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import cifarlab
from cifarlab.data import load_data
from cifarlab.data.subsets import select_classes
from cifarlab.models.airbench import AirbenchNet
from cifarlab.training import build, loop, muon
from cifarlab.training.loop import _window_means, loss_every
from cifarlab.training.resolve import resolve

LR = dict(model="baseline", val_size=6, batch_size=8, precision="fp32", steps=6, verbose=False)


def test_lr_find_trains_on_the_runs_classes_and_label_fraction(tiny_tree, tmp_path):
    r = cifarlab.lr_find(**LR, data=str(tiny_tree), classes=["frog", "cat"], label_fraction=0.5, out=tmp_path / "lr")
    info = json.loads(r.json.read_text())
    settings = {k: v for k, v in LR.items() if k not in ("steps", "verbose")}
    cfg = resolve(cifarlab.TrainConfig(**settings, data=str(tiny_tree), classes=["frog", "cat"], label_fraction=0.5))
    fit_set, _ = build.training_split(select_classes(load_data(cfg.data), cfg.classes), cfg)
    assert info["classes"] == ["frog", "cat"]
    assert info["train_images"] == len(fit_set) < 2 * 20 / 2 + 1  # half of the two classes' training images
    assert set(fit_set.labels.tolist()) == {0, 1}


def test_lr_find_applies_the_transfer_set_up(trained_run, train_tree, tmp_path, capsys):
    cifarlab.lr_find(model="baseline", data=str(train_tree), val_size=30, batch_size=32, precision="fp32", steps=5,
                     init_from=str(trained_run), freeze="backbone", out=tmp_path / "lr")
    out = capsys.readouterr().out
    assert f"init from {trained_run}" in out and "freezing:" in out


def test_lr_find_on_the_fast_recipe_uses_airbench_and_its_whitening_init(train_tree, tmp_path, monkeypatch):
    calls = []
    original = AirbenchNet.initialize_from_data
    monkeypatch.setattr(AirbenchNet, "initialize_from_data", lambda self, x: calls.append(len(x)) or original(self, x))
    r = cifarlab.lr_find(recipe="fast", data=str(train_tree), batch_size=50, steps=5, out=tmp_path / "lr",
                         verbose=False)
    info = json.loads(r.json.read_text())
    assert info["model"] == "airbench" and info["config"]["recipe"] == "fast"
    assert calls == [info["train_images"]]  # the whitening saw the training images, as in train()


def test_epochs_record_their_per_step_loss(train_tree, tmp_path):
    result = cifarlab.train(model="baseline", data=str(train_tree), val_size=30, train_size=96, batch_size=32,
                            epochs=2, precision="fp32", verbose=False, out=str(tmp_path / "run"))
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert lines == json.loads(json.dumps(result.history))
    for epoch, record in enumerate(lines):
        assert record["steps_per_epoch"] == 3
        steps = [s for s, _ in record["train_loss_steps"]]
        assert steps == [3 * epoch + 1, 3 * epoch + 2, 3 * epoch + 3]  # K = 1: 6 steps is far fewer than 300
        losses = [v for _, v in record["train_loss_steps"]]
        assert all(math.isfinite(v) for v in losses)
        assert sum(losses) / 3 == pytest.approx(record["train_loss"], rel=1e-5)  # equal batches: the mean
    # the result shows itself: one line in a terminal, numbers and curves in a notebook
    assert repr(result) == (f"TrainResult(baseline, 2/2 epochs, test accuracy {result.summary['test_accuracy']:.4f}, "
                            f"run_dir={str(tmp_path / 'run')!r})")
    page = result._repr_html_()
    assert "<table>" in page and "test accuracy" in page and str(tmp_path / "run") in page
    png = base64.b64decode(page.split("data:image/png;base64,")[1].split("'")[0])
    assert png.startswith(b"\x89PNG") and len(png) > 5000


def test_loss_windows_keep_about_300_points_and_cover_every_step():
    assert loss_every(10) == 1 and loss_every(300) == 1 and loss_every(30_000) == 100 and loss_every(0) == 1
    # cumulative (step, summed loss, images) marks every 2 steps and at the epoch's end (step 5)
    marks = [(2, torch.tensor(6.0), 4), (4, torch.tensor(10.0), 8), (5, torch.tensor(10.5), 9)]
    assert _window_means(marks) == [[2, 1.5], [4, 1.0], [5, 0.5]]
    assert _window_means([]) == []


def _bench_step_overhead():
    """benchmarks/bench_step_overhead.py as a module: its set-up and operation counter are the ones tested."""
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_step_overhead.py"
    spec = importlib.util.spec_from_file_location("bench_step_overhead", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_training_step_adds_only_its_metrics_to_a_bare_step():
    """The engine's step dispatches what airbench's bare loop does plus the train loss and accuracy it
    records (5 operations): no zero added, no scaling by 1, no views of an unsplit batch."""
    bench = _bench_step_overhead()
    r = bench.build(cifarlab.TrainConfig(recipe="fast", batch_size=4, precision="fp32", val_size=0, tta="none",
                                         epochs=1, model_kwargs={"widths": [4, 4, 4]}), images=8)
    x, y = next(iter(r.loader))

    def bare():
        r.stepper.optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(r.net(x), y, label_smoothing=r.cfg.label_smoothing).backward()
        r.stepper.optimizer.step()

    bare()  # the optimizer's state exists from here on in both
    with bench.CountOps() as plain:
        bare()
    with bench.CountOps() as ours:
        loop.train_step(r.stepper, x, y, torch.Generator().manual_seed(0), batch_images=len(y))
    extra = ours.ops - plain.ops
    assert not plain.ops - ours.ops
    assert extra == collections.Counter({"detach": 1, "mul": 1, "argmax": 1, "eq": 1, "sum": 1}), extra


def test_muon_sgd_steps_all_of_a_group_at_once_with_the_per_parameter_arithmetic():
    """MuonSGD updates each group with torch._foreach_* calls: bit for bit the per-parameter loop it replaces."""

    @torch.no_grad()
    def per_parameter_step(opt):
        for group in opt.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                if not group["muon"] and group["weight_decay"]:
                    g = g.add(p, alpha=group["weight_decay"])
                buf = opt.state[p].setdefault("momentum_buffer", torch.zeros_like(g))
                buf.mul_(group["momentum"]).add_(g)
                g = g.add(buf, alpha=group["momentum"]) if group["nesterov"] else buf
                if group["muon"]:
                    p.mul_(len(p) ** 0.5 / p.norm())
                    g = muon.orthogonalize(g.reshape(len(g), -1), group["ns_steps"]).view(g.shape)
                p.add_(g, alpha=-group["lr"])

    torch.manual_seed(0)
    models = [AirbenchNet(widths=(4, 8, 8)) for _ in range(2)]
    models[1].load_state_dict(models[0].state_dict())
    opts = [muon.MuonSGD(m.param_groups(lr=0.2, batch_size=16, weight_decay=5e-4, momentum=0.85, epochs=2),
                         lr=0.2, momentum=0.85) for m in models]
    opts[0].param_groups[-1]["nesterov"] = opts[1].param_groups[-1]["nesterov"] = False  # both kinds of momentum
    for step in range(3):
        x = torch.randn(6, 3, 32, 32, generator=torch.Generator().manual_seed(step))
        for model, opt, update in zip(models, opts, (lambda o: o.step(), per_parameter_step)):
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), torch.arange(6)).backward()
            update(opt)
    for a, b in zip(models[0].state_dict().values(), models[1].state_dict().values()):
        assert torch.equal(a, b)

"""Example selection (`--prune-easy`, training/selection.py): the plan, the scores, the loader's subset,
the engine's epochs, resume and the loss curve of epochs of different lengths."""
from __future__ import annotations

import json

import pytest
import torch

import cifarlab
from cifarlab.cli import main
from cifarlab.data.loader import DeviceLoader
from cifarlab.rundir.result import step_losses
from cifarlab.training.selection import EasyPruning
from crash_helper import train_until_killed

CPU = torch.device("cpu")
RUN_KW = dict(model="baseline", data=None, val_size=30, precision="fp32", verbose=False, batch_size=16)


def pruning(n=1000, ratio=0.5, epochs=8, until=0.875, seed=0) -> EasyPruning:
    return EasyPruning(n, ratio, epochs, until, seed, CPU)


def scored(p: EasyPruning, scores: torch.Tensor) -> EasyPruning:
    p.plan(0)
    p.record(torch.arange(len(scores)), scores)
    p.end_epoch(cifarlab.training.distributed.Ranks())
    return p


def test_the_first_epoch_and_the_last_ones_see_every_image():
    p = pruning(epochs=8, until=0.875)  # epochs 1..6 prune, 7 (the last eighth) sees all
    assert p.plan(0) is None and p.recording and p.active
    assert p.last_pruned_epoch == 6
    assert p.plan(7) is None and not p.recording and not p.active
    assert torch.equal(p.weights, torch.ones(1000))


def test_well_learned_images_are_skipped_at_the_ratio_and_the_kept_ones_upweighted():
    scores = torch.cat([torch.full((600,), 0.1), torch.full((400,), 2.0)])  # 600 under the mean
    p = scored(pruning(ratio=0.5), scores)
    keep = p.plan(1)
    kept = torch.zeros(1000, dtype=torch.bool)
    kept[keep] = True
    assert kept[600:].all()  # the hard images are never skipped
    assert 250 < (~kept[:600]).sum() < 350  # about half of the easy ones are
    assert torch.equal(keep, keep.sort().values)
    assert torch.all(p.weights[:600][kept[:600]] == 2.0) and torch.all(p.weights[600:] == 1.0)
    # The expected weighted loss of the kept images is the full data's: sum_kept w * l ~ sum_all l.
    assert abs(float((p.weights[keep] * scores[keep]).sum() / scores.sum()) - 1) < 0.05


def test_the_plan_depends_only_on_the_seed_the_epoch_and_the_scores():
    scores = torch.linspace(0, 1, 1000)
    a, b = scored(pruning(seed=3), scores), scored(pruning(seed=3), scores)
    assert torch.equal(a.plan(2), b.plan(2))
    assert not torch.equal(a.plan(2), a.plan(3))
    assert not torch.equal(a.plan(2), scored(pruning(seed=4), scores).plan(2))


def test_scores_change_only_for_the_images_trained_and_only_while_needed():
    p = pruning(n=10, epochs=4, until=0.5)  # epoch 1 is the last to prune: only epoch 0's losses are used
    p.plan(0)
    p.record(torch.tensor([2, 5]), torch.tensor([0.5, 3.0]))
    p.end_epoch(cifarlab.training.distributed.Ranks())
    assert p.scores.tolist() == [1, 1, 0.5, 1, 1, 3.0, 1, 1, 1, 1]
    p.plan(1)
    assert not p.recording
    p.record(torch.tensor([0]), torch.tensor([9.0]))
    p.end_epoch(cifarlab.training.distributed.Ranks())
    assert p.scores[0] == 1


def test_the_state_round_trips_and_a_wrong_one_is_refused():
    p = scored(pruning(n=5), torch.tensor([0.1, 0.2, 0.3, 0.4, 5.0]))
    q = pruning(n=5)
    q.load_state_dict(p.state_dict())
    assert torch.equal(q.scores, p.scores)
    with pytest.raises(ValueError, match="shape"):
        pruning(n=6).load_state_dict(p.state_dict())


def loader(n=10, batch_size=4, shuffle=True, drop_last=True) -> DeviceLoader:
    images = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 2, 2, 3).numpy()
    return DeviceLoader(images, torch.arange(n).numpy(), batch_size=batch_size, device=CPU, mean=(0, 0, 0),
                        std=(1 / 255, 1 / 255, 1 / 255), shuffle=shuffle, drop_last=drop_last, seed=1)


@pytest.mark.parametrize("shuffle", [True, False])
def test_the_loader_iterates_over_the_subset_with_each_images_index(shuffle):
    dl = loader(shuffle=shuffle)
    dl.set_subset(torch.tensor([1, 3, 4, 6, 8, 9]))
    assert len(dl) == 1 and dl.num_images == 4  # 6 images: one full batch of 4, the rest dropped
    batches = list(dl.indexed())
    assert len(batches) == 1
    x, y, index = batches[0]
    assert set(index.tolist()) <= {1, 3, 4, 6, 8, 9}
    assert torch.equal(y, index) and torch.equal(x[:, 0, 0, 0].long(), index)  # image i holds the value i
    dl.set_subset(None)
    seen = torch.cat([i for _, _, i in dl.indexed()]).tolist()
    assert len(dl) == 2 and len(set(seen)) == 8 and set(seen) <= set(range(10))


def test_a_subset_smaller_than_a_batch_is_still_one_batch():
    dl = loader(batch_size=4)
    dl.set_subset(torch.tensor([2, 7]))
    assert len(dl) == 1 and dl.num_images == 2
    assert [sorted(y.tolist()) for _, y in dl] == [[2, 7]]


def test_the_plain_iteration_is_unchanged_by_the_index():
    a, b = loader(), loader()
    for (x1, y1), (x2, y2, _) in zip(a, b.indexed()):
        assert torch.equal(x1, x2) and torch.equal(y1, y2)


@pytest.fixture(scope="module")
def pruned_run(train_tree, tmp_path_factory):
    return cifarlab.train(**{**RUN_KW, "data": str(train_tree)}, epochs=4, prune_easy=0.5, prune_until=0.75,
                          out=str(tmp_path_factory.mktemp("pruned") / "run"))


def test_a_pruned_run_skips_images_in_the_middle_epochs_only(pruned_run, train_tree, tmp_path):
    h = pruned_run.history
    assert [r["pruned_images"] > 0 for r in h] == [False, True, True, False]  # epochs 2-3 of 4 prune
    full = h[0]["steps_per_epoch"]
    assert h[1]["steps_per_epoch"] < full and h[3]["steps_per_epoch"] == full
    plain = cifarlab.train(**{**RUN_KW, "data": str(train_tree)}, epochs=4, out=str(tmp_path / "plain"))
    # Each epoch is 1/4 of the schedule however short: the last step's lr is the unpruned run's.
    assert h[-1]["lr"] == pytest.approx(plain.history[-1]["lr"])
    assert pruned_run.summary["test_accuracy"] is not None
    assert json.loads((pruned_run.run_dir / "config.json").read_text())["config"]["prune_easy"] == 0.5


def test_the_loss_curve_of_a_pruned_run_runs_from_zero_to_its_epochs(pruned_run):
    xs = [x for x, _ in step_losses(pruned_run.history)]
    assert xs == sorted(xs) and xs[0] > 0 and xs[-1] == pytest.approx(4)
    for epoch in (1, 2, 3):
        assert any(x == pytest.approx(epoch) for x in xs)  # every epoch's last window ends on its boundary


def test_step_losses_map_epochs_of_different_lengths_onto_the_epoch_axis():
    history = [{"epoch": 1, "steps_per_epoch": 4, "train_loss_steps": [[2, 1.0], [4, 0.9]]},
               {"epoch": 2, "steps_per_epoch": 2, "train_loss_steps": [[5, 0.8], [6, 0.7]]},
               {"epoch": 2.5, "steps_per_epoch": 4, "train_loss_steps": [[8, 0.6]]}]
    assert step_losses(history) == [(0.5, 1.0), (1.0, 0.9), (1.5, 0.8), (2.0, 0.7), (2.5, 0.6)]


def test_resume_of_a_pruned_run_matches_an_uninterrupted_one(train_tree, tmp_path, monkeypatch):
    kw = {**RUN_KW, "data": str(train_tree), "epochs": 4, "seed": 2, "prune_easy": 0.5}
    reference = cifarlab.train(**kw, out=str(tmp_path / "full"))
    train_until_killed(monkeypatch, 2, **kw, out=str(tmp_path / "cut"))  # scores of epochs 1-2 in the checkpoint
    resumed = cifarlab.train(resume=tmp_path / "cut", verbose=False)
    timing = ("epoch_seconds", "images_per_second")
    assert ([{k: v for k, v in h.items() if k not in timing} for h in resumed.history]
            == [{k: v for k, v in h.items() if k not in timing} for h in reference.history])
    assert resumed.summary["test_loss"] == reference.summary["test_loss"]


def test_a_checkpoint_without_scores_does_not_resume_a_pruned_run(train_tree, tmp_path):
    out = tmp_path / "plain"
    cifarlab.train(**{**RUN_KW, "data": str(train_tree)}, epochs=1, out=str(out))
    config = json.loads((out / "config.json").read_text())
    config["config"]["prune_easy"] = 0.5  # a hand-edited config: the checkpoint has no scores
    (out / "config.json").write_text(json.dumps(config))
    (out / "summary.json").unlink()
    with pytest.raises(cifarlab.errors.CifarlabError, match="does not fit this run"):
        cifarlab.train(resume=out, epochs=2, verbose=False)


@pytest.mark.parametrize("flags, problem", [(["--prune-easy", "1"], "--prune-easy"),
                                            (["--prune-easy", "-0.1"], "--prune-easy"),
                                            (["--prune-until", "0"], "--prune-until"),
                                            (["--prune-until", "0.5"], "nothing to do without --prune-easy"),
                                            (["--prune-easy", "0.5"], "prunes no epoch of 1")])
def test_bad_pruning_settings_are_one_line_errors(flags, problem, capsys, tmp_path):
    assert main(["train", "--epochs", "1", "--out", str(tmp_path / "run"), *flags]) != 0
    err = capsys.readouterr().err.strip()
    assert problem in err and "Traceback" not in err and len(err.splitlines()) == 1
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("grad_accum", [1, 2])
def test_the_step_weights_each_images_loss_and_scores_it_across_micro_batches(grad_accum):
    from cifarlab.augment import create_augment
    from cifarlab.training.loop import Stepper, train_step

    torch.manual_seed(0)
    x, y = torch.randn(8, 3, 4, 4), torch.randint(0, 3, (8,))
    index = torch.tensor([5, 0, 7, 2, 1, 6, 3, 4])
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(48, 3))
    selection = pruning(n=8, epochs=4)
    selection.plan(0)
    selection.weights = torch.tensor([1.0, 2.0, 1.0, 2.0, 1.0, 1.0, 2.0, 1.0])
    s = Stepper(model, model, torch.optim.SGD(model.parameters(), lr=0.0), torch.amp.GradScaler("cpu", enabled=False),
                create_augment("none"), CPU, "fp32", batch_size=8, grad_accum=grad_accum, selection=selection)
    loss_sum, _, seen = train_step(s, x, y, torch.Generator(), batch_images=8, index=index)
    losses = torch.nn.functional.cross_entropy(model(x), y, reduction="none")
    expected = torch.autograd.grad((losses * selection.weights[index]).mean(), model[1].weight)[0]
    assert torch.allclose(model[1].weight.grad, expected, atol=1e-6)
    assert seen == 8 and float(loss_sum) == pytest.approx(float(losses.detach().sum()), rel=1e-5)  # shown unweighted
    selection.end_epoch(cifarlab.training.distributed.Ranks())
    assert torch.allclose(selection.scores[index], losses.detach(), atol=1e-6)

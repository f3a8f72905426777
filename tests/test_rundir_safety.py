"""The run directory as untrusted input and as a place where writes fail.

- No file a run directory (or a cache, or --init-from / --weights) holds can run code: a pickle whose
  __reduce__ creates a marker file is put wherever cifarlab reads, and every command that reads a run
  is run; the marker must never appear.
- A write that fails while checkpointing (a full disk, an I/O error) ends in a one-line error, leaves no
  temporary file and keeps the previous checkpoint, from which the run resumes to exactly the result of
  an uninterrupted run.
- Resuming keeps the command that made the run, records its own, and never shortens a run.
- Every file a run writes gets the usual mode, 0666 minus the umask.
"""
from __future__ import annotations

import errno
import json
import os
import re
import shutil
import stat
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

import cifarlab
from cifarlab.cli import main
from cifarlab.errors import CifarlabError
from cifarlab.rundir import safestate, writer

KW = dict(model="baseline", val_size=6, batch_size=16, precision="fp32", verbose=False)
TIMING = ("epoch_seconds", "images_per_second")


class Payload:
    """Unpickling this creates `marker`: what a hostile run directory would do with os.system."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').close()",))


@pytest.fixture
def marker(tmp_path) -> Path:
    return tmp_path / "PWNED"


def write_torch_payload(path: Path, marker: Path) -> Path:
    torch.save({"epoch": 2, "step": 8, "state_dict": {"w": torch.zeros(1)}, "x": Payload(marker)}, path)
    return path


@pytest.fixture(scope="module")
def small_run(tmp_path_factory, tiny_tree) -> Path:
    """A finished 2-epoch baseline run on the tiny data (module-wide; tests copy it before changing it)."""
    out = tmp_path_factory.mktemp("safety") / "run"
    cifarlab.train(**KW, data=str(tiny_tree), epochs=2, out=str(out), command="cifarlab train (original)")
    return out


def copy_run(run: Path, dest: Path) -> Path:
    shutil.copytree(run, dest)
    return dest


def test_the_payload_really_runs_when_unpickled(tmp_path, marker):
    """The check below is only worth something if the payload works against a plain torch.load."""
    write_torch_payload(tmp_path / "state.pt", marker)
    torch.load(tmp_path / "state.pt", weights_only=False)
    assert marker.exists()


def test_checkpoint_state_round_trips_bit_for_bit():
    import random

    model = torch.nn.Conv2d(3, 4, 3).to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), betas=(0.8, 0.9))
    model(torch.randn(2, 3, 8, 8)).sum().backward()
    opt.step()
    state = {"optimizer": opt.state_dict(), "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state(),
                                                   "python": random.getstate()},
             "history": [{"epoch": 1, "loss": float("nan"), "$odd": -0.0}], "ema": None}
    tree, tensors = safestate.encode(state)
    back = safestate.decode(json.loads(json.dumps(tree)), tensors)
    assert back["rng"]["python"] == state["rng"]["python"] and isinstance(back["rng"]["python"], tuple)
    np_state = back["rng"]["numpy"]
    assert np_state[0] == "MT19937" and np_state[1].dtype == np.uint32
    assert np.array_equal(np_state[1], state["rng"]["numpy"][1]) and np_state[2:] == state["rng"]["numpy"][2:]
    assert torch.equal(back["rng"]["torch"], state["rng"]["torch"])
    assert back["optimizer"]["param_groups"] == state["optimizer"]["param_groups"]  # betas stay a tuple
    for key, value in state["optimizer"]["state"][0].items():  # integer keys survive
        assert torch.equal(back["optimizer"]["state"][0][key], value)
        assert back["optimizer"]["state"][0][key].stride() == value.stride()  # channels_last kept
    assert np.isnan(back["history"][0]["loss"]) and back["history"][0]["$odd"] == 0.0


@pytest.mark.parametrize("tree", [
    {"x": {"$ndarray": [1], "dtype": "O", "shape": [1]}},  # numpy object arrays would unpickle
    {"x": {"$ndarray": [1], "dtype": [["a", "O"]], "shape": [1]}},
    {"x": {"$tensor": "missing"}},
    {"x": {"$dict": [[[1], 2]]}},
    {"x": {"$tuple": "abc"}},
])
def test_a_tampered_state_tree_is_refused(tree):
    with pytest.raises(safestate.StateFormatError):
        safestate.decode(tree, {})


def test_encoding_refuses_objects_it_cannot_store_safely():
    with pytest.raises(TypeError, match="Payload"):
        safestate.encode({"x": Payload(Path("never"))})


def test_a_legacy_pickled_checkpoint_is_refused_not_loaded(small_run, tmp_path, marker):
    run = copy_run(small_run, tmp_path / "run")
    ckpt = writer.latest_checkpoint(run)
    (ckpt / writer.STATE_JSON).unlink()
    (ckpt / writer.STATE_TENSORS).unlink()
    write_torch_payload(ckpt / writer.LEGACY_STATE, marker)
    with pytest.raises(CifarlabError, match="older cifarlab .* cannot be resumed; retrain it") as e:
        cifarlab.train(resume=run, epochs=3, verbose=False)
    assert "\n" not in str(e.value) and str(ckpt / writer.LEGACY_STATE) in str(e.value)
    assert not marker.exists()
    assert cifarlab.evaluate(run)["images"] == 18  # its weights are still usable: safetensors only


def test_a_state_pt_beside_the_safe_state_is_never_read(small_run, tiny_tree, tmp_path, marker):
    run = copy_run(small_run, tmp_path / "run")
    write_torch_payload(writer.latest_checkpoint(run) / writer.LEGACY_STATE, marker)
    result = cifarlab.train(resume=run, epochs=3, verbose=False)
    assert result.summary["epochs_completed"] == 3 and not marker.exists()


def _edit_state(ckpt: Path, change) -> None:
    doc = json.loads((ckpt / writer.STATE_JSON).read_text())
    change(doc["state"])
    (ckpt / writer.STATE_JSON).write_text(json.dumps(doc))


DAMAGE = {
    "state.json not JSON": (lambda c: (c / writer.STATE_JSON).write_text("{oops"), "cannot read"),
    "epoch not a number": (lambda c: _edit_state(c, lambda s: s.update(epoch="two")), "no valid epoch number"),
    "optimizer emptied": (lambda c: _edit_state(c, lambda s: s.update(optimizer={})), "does not fit this run"),
    "rng missing": (lambda c: _edit_state(c, lambda s: s.pop("rng")), "does not fit this run"),
    "a tensor missing": (lambda c: _edit_state(c, lambda s: s["rng"].update(torch={"$tensor": "nope"})),
                         "is missing from the state's tensors"),
    "state.safetensors truncated": (lambda c: (c / writer.STATE_TENSORS).write_bytes(b"\x08" + bytes(7)),
                                    "cannot read the checkpoint"),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_checkpoint_state_is_a_one_line_error(small_run, tmp_path, capsys, damage):
    run = copy_run(small_run, tmp_path / "run")
    change, message = DAMAGE[damage]
    change(writer.latest_checkpoint(run))
    code = main(["train", "--resume", str(run), "--epochs", "3", "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and message in err, err
    assert not (run / "checkpoints" / "epoch_003").exists()


@pytest.mark.parametrize("text", ["[1, 2]", '{"config": {}}', '{"config": [], "classes": ["a"]}',
                                  '{"config": {}, "classes": [1]}', "\udcff"])
def test_a_malformed_config_json_is_a_one_line_error(small_run, tmp_path, capsys, text):
    run = copy_run(small_run, tmp_path / "run")
    (run / writer.CONFIG).write_bytes(text.encode("utf-8", "surrogateescape"))
    for argv in (["train", "--resume", str(run), "--epochs", "3"], ["evaluate", str(run)]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and str(run / writer.CONFIG) in err, err


def test_weights_of_another_shape_are_a_one_line_error(small_run, tmp_path, capsys):
    from safetensors.torch import save_file

    run = copy_run(small_run, tmp_path / "run")
    weights = load_file(str(run / writer.WEIGHTS))
    save_file({k: torch.zeros(3, *v.shape[1:]) if v.ndim else v for k, v in weights.items()}, str(run / writer.WEIGHTS))
    assert main(["evaluate", str(run)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "do not fit the model (size mismatch for " in err, err
    assert str(run / writer.WEIGHTS) in err


@pytest.mark.parametrize("damage", ["all NaN", "all inf", "one NaN"])
def test_weights_that_are_not_finite_are_refused_by_every_reader(small_run, tmp_path, capsys, damage):
    """evaluate, predict, export and serve would otherwise answer with NaN (`nan%`) for every image."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    run = copy_run(small_run, tmp_path / "run")
    path = run / writer.WEIGHTS
    with safe_open(str(path), "pt") as f:
        metadata = f.metadata()
    weights = load_file(str(path))
    if damage == "one NaN":
        weights["fc2.bias"][0] = float("nan")
    else:
        weights = {k: torch.full_like(v, float("nan") if damage == "all NaN" else float("inf")) for k, v in
                   weights.items()}
    save_file(weights, str(path), metadata=metadata)
    image = tmp_path / "cat.png"
    Image.new("RGB", (32, 32), (200, 10, 10)).save(image)
    for argv in (["evaluate", str(run)], ["predict", str(run), str(image)],
                 ["export", str(run), "--out", str(tmp_path / "model.onnx")]):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "Traceback" not in err, err
        assert f"the weights {path} hold NaN or infinite values (in " in err, err
    assert not (tmp_path / "model.onnx").exists()
    from cifarlab.webapp.predictor import Predictor  # what `serve` loads before it listens

    with pytest.raises(CifarlabError, match="hold NaN or infinite values"):
        Predictor(run, device="cpu")


def poison(run: Path, marker: Path, *, keep_state_json: bool) -> None:
    """Every binary file of the run becomes a pickle payload (a plain pickle or torch.save's zip)."""
    for path in [run / writer.WEIGHTS, *run.glob("checkpoints/*/*.safetensors")]:
        write_torch_payload(path, marker)
    ckpt = writer.latest_checkpoint(run)
    write_torch_payload(ckpt / writer.LEGACY_STATE, marker)
    if not keep_state_json:
        (ckpt / writer.STATE_JSON).unlink()


def commands(run: Path, data: Path, image: Path, evil: Path, tmp: Path) -> dict[str, list[str]]:
    train = ["train", "--model", "baseline", "--data", str(data), "--val-size", "6", "--epochs", "1",
             "--precision", "fp32", "--quiet"]
    return {
        "train --resume": ["train", "--resume", str(run), "--epochs", "3", "--quiet"],
        "evaluate": ["evaluate", str(run)],
        "predict": ["predict", str(run), str(image)],
        "analyze": ["analyze", str(run), "--robustness-images", "0", "--out", str(tmp / "analysis")],
        "explain": ["explain", str(run), "--image", str(image), "--no-trust", "--out", str(tmp / "explain")],
        "features": ["features", str(run), "--image", str(image), "--out", str(tmp / "features")],
        "embed": ["embed", str(run), "--samples", "9", "--out", str(tmp / "embed")],
        "report": ["report", str(run), "--out", str(tmp / "report.html")],
        "export": ["export", str(run), "--out", str(tmp / "model.onnx")],
        "probe": ["probe", str(run), "--probe-epochs", "1", "--val-size", "6", "--quiet"],
        "--init-from RUN": [*train, "--init-from", str(run), "--out", str(tmp / "init-run")],
        "--init-from FILE": [*train, "--init-from", str(evil), "--out", str(tmp / "init-file")],
        "--weights": ["train", "--model", "tv:resnet18", "--pretrained", "imagenet", "--weights", str(evil),
                      "--data", str(data), "--val-size", "6", "--epochs", "1", "--quiet",
                      "--out", str(tmp / "weights")],
    }


@pytest.mark.parametrize("keep_state_json", [True, False], ids=["poisoned-safetensors", "legacy-state-pt"])
def test_no_command_runs_code_from_a_poisoned_run(small_run, tiny_tree, tmp_path, marker, capsys,
                                                  keep_state_json):
    run = copy_run(small_run, tmp_path / "run")
    poison(run, marker, keep_state_json=keep_state_json)
    evil = write_torch_payload(tmp_path / "evil.pt", marker)
    (tmp_path / "out").mkdir()
    image = tmp_path / "cat.png"
    Image.new("RGB", (32, 32), (200, 10, 10)).save(image)
    for name, argv in commands(run, tiny_tree, image, evil, tmp_path / "out").items():
        capsys.readouterr()
        code = main(argv)
        err = capsys.readouterr().err.strip()
        assert not marker.exists(), f"{name} ran the payload"
        if name == "report":  # reads JSON only: nothing to refuse
            assert code == 0, err
            continue
        assert code == 2, f"{name}: exit {code}, {err}"
        assert len(err.splitlines()) == 1 and "Traceback" not in err, f"{name}: {err}"
        refused = ("older cifarlab as a pickle" if name == "train --resume" and not keep_state_json
                   else "pickled Python objects besides tensors" if name in ("--init-from FILE", "--weights")
                   else "cannot read")
        assert refused in err, f"{name}: {err}"

    from cifarlab.webapp.predictor import Predictor  # what `serve` loads before it listens

    with pytest.raises(CifarlabError):
        Predictor(run, device="cpu")
    assert not marker.exists()


def test_poisoned_caches_are_recomputed_not_unpickled(small_run, tiny_tree, tmp_path, marker):
    from cifarlab.data import cache

    kw = dict(init_from=str(small_run), model="baseline", data=str(tiny_tree), val_size=6, probe_epochs=1,
              verbose=False)
    first = cifarlab.linear_probe(**kw)
    poisoned = list((cache.cache_root() / "features").glob("*.npy")) + list(
        (cache.cache_root() / "decoded").glob("*.npz"))
    assert poisoned
    for path in poisoned:
        evil = np.array([Payload(marker)], dtype=object)
        if path.suffix == ".npy":
            np.save(path, evil, allow_pickle=True)
        else:
            np.savez(path, train_images=evil, train_labels=evil, classes=evil)
    again = cifarlab.linear_probe(**kw)
    assert not marker.exists()
    assert again.logistic["test_accuracy"] == first.logistic["test_accuracy"]


def test_predictions_file_with_pickled_objects_is_refused(tmp_path, marker):
    from cifarlab.analysis.predictions import load_predictions

    evil = np.array([Payload(marker)], dtype=object)
    np.savez(tmp_path / "predictions.npz", logits=evil, label=evil, file_name=evil, classes=evil)
    with pytest.raises(ValueError, match="allow_pickle"):
        load_predictions(tmp_path / "predictions.npz")
    assert not marker.exists()


# Failed writes --------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def reference(tmp_path_factory, tiny_tree) -> cifarlab.TrainResult:
    """An uninterrupted 3-epoch run: what every interrupted-then-resumed run must end as."""
    out = tmp_path_factory.mktemp("reference") / "run"
    return cifarlab.train(**KW, data=str(tiny_tree), epochs=3, seed=5, out=str(out))


def fail_writes(monkeypatch, when, error_number: int) -> list[str]:
    """Make every write of a run (writer.write_file: the checkpoint files and the final weights; the
    atomic JSON and text writes; the metrics append) raise OSError(error_number) where `when(path)`."""
    failed: list[str] = []

    def failing(write):
        def wrapper(path, *args):
            if when(Path(path)):
                failed.append(str(path))
                raise OSError(error_number, os.strerror(error_number), str(path))
            return write(path, *args)
        return wrapper

    for name in ("write_file", "write_json_atomic", "write_text_atomic", "append_jsonl"):
        monkeypatch.setattr(writer, name, failing(getattr(writer, name)))
    return failed


def in_epoch_2_checkpoint(name: str):
    return lambda p: p.parent.name == ".epoch_002.tmp" and p.name == name


def leftovers(run: Path) -> list[str]:
    return [str(p) for p in run.rglob("*") if p.name.endswith(".tmp") or ".tmp" in p.parent.name]


FAULTS = {  # which write fails: (the paths it hits, the file the error names, the checkpoint left)
    "checkpoint model.safetensors": (in_epoch_2_checkpoint(writer.WEIGHTS), "checkpoints/.epoch_002.tmp", 1),
    "checkpoint state.safetensors": (in_epoch_2_checkpoint(writer.STATE_TENSORS), "checkpoints/.epoch_002.tmp", 1),
    "checkpoint state.json": (in_epoch_2_checkpoint(writer.STATE_JSON), "checkpoints/.epoch_002.tmp", 1),
    "metrics of epoch 2": (lambda p: p.name == writer.METRICS and _lines(p) == 1, writer.METRICS, 2),
    "final weights": (lambda p: p.name.startswith(f".{writer.WEIGHTS}.") and p.parent.name == "run",
                      writer.WEIGHTS, 3),
    "summary": (lambda p: p.name == writer.SUMMARY, writer.SUMMARY, 3),
}


def _lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


@pytest.mark.parametrize("fault, error_number", [
    *(pytest.param(f, errno.ENOSPC, id=f"ENOSPC {f}") for f in FAULTS),
    *(pytest.param(f, errno.EIO, id=f"EIO {f}") for f in ("checkpoint state.safetensors", "final weights"))])
def test_a_failed_write_leaves_a_run_that_resumes_to_the_same_result(reference, tiny_tree, tmp_path, monkeypatch,
                                                                      fault, error_number):
    out = tmp_path / "run"
    when, named, epochs_left = FAULTS[fault]
    with monkeypatch.context() as patch, pytest.raises(CifarlabError) as e:
        failed = fail_writes(patch, when, error_number)
        cifarlab.train(**KW, data=str(tiny_tree), epochs=3, seed=5, out=str(out))
    message = str(e.value)
    assert len(failed) == 1 and "\n" not in message
    assert message.startswith("disk full: " if error_number == errno.ENOSPC else "cannot write ")
    assert f" to {out / named}" in message
    if "checkpoint" in fault:
        assert message.endswith(f"(the checkpoint of epoch 1 is intact: continue with cifarlab train --resume {out})")
    assert leftovers(out) == []
    ckpt = writer.latest_checkpoint(out)
    assert ckpt.name == f"epoch_{epochs_left:03d}"
    assert writer.load_checkpoint_state(ckpt)["epoch"] == epochs_left  # the checkpoint left is whole

    resumed = cifarlab.train(resume=out, verbose=False)
    assert leftovers(out) == []
    assert resumed.summary["test_loss"] == reference.summary["test_loss"]
    strip = [{k: v for k, v in h.items() if k not in TIMING} for h in reference.history]
    assert [{k: v for k, v in h.items() if k not in TIMING} for h in resumed.history] == strip
    assert [json.loads(line)["epoch"] for line in (out / writer.METRICS).read_text().splitlines()] == [1, 2, 3]
    final, expected = load_file(str(out / writer.WEIGHTS)), load_file(str(reference.run_dir / writer.WEIGHTS))
    assert final.keys() == expected.keys() and all(torch.equal(final[k], expected[k]) for k in final)


def test_disk_full_on_the_first_checkpoint_leaves_nothing_behind(tiny_tree, tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    fail_writes(monkeypatch, lambda p: p.name == writer.STATE_JSON, errno.ENOSPC)
    code = main(["train", "--model", "baseline", "--data", str(tiny_tree), "--val-size", "6", "--epochs", "2",
                 "--precision", "fp32", "--out", str(out), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err
    assert "disk full: cannot write the checkpoint of epoch 1 to " in err and ".epoch_001.tmp" in err
    assert err.endswith("; free some space")  # no checkpoint to resume from: the run is removed
    assert not out.exists()  # no epoch saved: nothing worth keeping


def test_resume_removes_what_a_kill_9_left_half_written(small_run, tmp_path):
    run = copy_run(small_run, tmp_path / "run")
    (run / writer.SUMMARY).unlink()  # killed after the last checkpoint, while writing the summary
    (run / ".summary.json.k2j3.tmp").write_text('{"half": ')
    shutil.copytree(writer.latest_checkpoint(run), run / "checkpoints" / ".epoch_003.tmp")
    (run / "checkpoints" / ".epoch_003.tmp" / writer.STATE_JSON).unlink()
    cifarlab.train(resume=run, verbose=False)
    assert leftovers(run) == [] and (run / writer.SUMMARY).is_file()


def test_a_failed_rename_keeps_the_previous_checkpoint(reference, tiny_tree, tmp_path, monkeypatch):
    out = tmp_path / "run"
    real_replace = os.replace

    def replace(src, dst, *args, **kwargs):
        if Path(src).name == ".epoch_003.tmp":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(dst))
        return real_replace(src, dst, *args, **kwargs)

    with monkeypatch.context() as patch, pytest.raises(CifarlabError, match="disk full: cannot write the "
                                                                       "checkpoint of epoch 3"):
        patch.setattr(writer.os, "replace", replace)
        cifarlab.train(**KW, data=str(tiny_tree), epochs=3, seed=5, out=str(out))
    assert leftovers(out) == [] and writer.latest_checkpoint(out).name == "epoch_002"
    assert cifarlab.train(resume=out, verbose=False).summary["test_loss"] == reference.summary["test_loss"]


# Resume metadata -------------------------------------------------------------------------------------------------

def test_resume_keeps_the_original_command_and_records_its_own(small_run, tmp_path):
    run = copy_run(small_run, tmp_path / "run")
    cifarlab.train(resume=run, epochs=3, verbose=False, command="cifarlab train --resume run --epochs 3")
    result = cifarlab.train(resume=run, epochs=4, verbose=False, command="cifarlab train --resume run --epochs 4")
    info = json.loads((run / writer.CONFIG).read_text())
    assert info["command"] == "cifarlab train (original)" and info["config"]["epochs"] == 4
    assert [(r["command"], r["from_epoch"], r["epochs"]) for r in info["resumes"]] == [
        ("cifarlab train --resume run --epochs 3", 2, 3), ("cifarlab train --resume run --epochs 4", 3, 4)]
    assert all(r["time"].endswith("+00:00") for r in info["resumes"])
    assert (run / writer.COMMAND).read_text().splitlines() == [
        "cifarlab train (original)", "cifarlab train --resume run --epochs 3", "cifarlab train --resume run --epochs 4"]
    summary = json.loads((run / writer.SUMMARY).read_text())
    assert summary["command"] == "cifarlab train (original)" and len(summary["resumes"]) == 2
    assert summary["epochs"] == summary["epochs_completed"] == 4 == result.summary["epochs"]


@pytest.mark.parametrize("epochs, message", [(1, "--epochs 1 is fewer than the 2 epochs"),
                                             (None, "is already complete \\(2 epochs\\)")])
def test_resuming_a_finished_run_without_more_epochs_leaves_it_untouched(small_run, tmp_path, capsys, epochs,
                                                                         message):
    run = copy_run(small_run, tmp_path / "run")
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    code = main(["train", "--resume", str(run), *(["--epochs", str(epochs)] if epochs else [])])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert re.search(message, err), err
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before


def test_an_interrupted_run_may_not_be_shortened_either(small_run, tmp_path):
    run = copy_run(small_run, tmp_path / "run")
    (run / writer.SUMMARY).unlink()  # as if killed after the last checkpoint
    with pytest.raises(CifarlabError, match="epochs=1 is fewer than the 2 epochs"):
        cifarlab.train(resume=run, epochs=1, verbose=False)
    assert cifarlab.train(resume=run, verbose=False).summary["epochs_completed"] == 2  # finishes what was left


# File modes ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("umask", [0o022, 0o027], ids=["umask-022", "umask-027"])
def test_every_file_a_run_writes_gets_the_usual_mode(tiny_tree, tmp_path, umask):
    out = tmp_path / "run"
    old = os.umask(umask)
    try:
        cifarlab.train(**KW, data=str(tiny_tree), epochs=2, out=str(out))
        assert main(["analyze", str(out), "--robustness-images", "0"]) == 0
        assert main(["report", str(out)]) == 0
    finally:
        os.umask(old)
    modes = {str(p.relative_to(out)): stat.S_IMODE(p.stat().st_mode) for p in out.rglob("*")}
    files = {k: v for k, v in modes.items() if (out / k).is_file()}
    assert {"model.safetensors", "checkpoints/epoch_002/model.safetensors", "checkpoints/epoch_002/state.safetensors",
            "config.json", "command.txt", "analysis/predictions.npz", "report.html"} <= set(files)
    assert {k: v for k, v in files.items() if v != 0o666 & ~umask} == {}
    assert {k: v for k, v in modes.items() if k not in files and v != 0o777 & ~umask} == {}

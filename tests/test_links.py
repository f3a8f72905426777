"""Symbolic links, devices, FIFOs and foreign folders where cifarlab reads or writes.

- A run directory handed over by someone else may hold links to files elsewhere: the report never embeds
  them, and analyze, features and embed replace the link itself, never the file it points to.
- A symbolic link loop in a data tree is a one-line error naming the link.
- A JSON or YAML file linked to /dev/zero or a FIFO is refused after a bounded read, never read for ever.
- `train --overwrite` replaces only a folder that cifarlab made as a run directory.
- `--out` that is a device or a FIFO is refused and left as it is.

The commands that could read /dev/zero without bound run in a child process with a memory limit, so a
regression fails the test instead of exhausting the machine's memory.
"""
from __future__ import annotations

import base64
import json
import os
import resource
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from cifarlab._io import append_jsonl, read_bytes_bounded, write_text_atomic
from cifarlab.cli import main
from cifarlab.errors import CifarlabError
from cifarlab.rundir import layout
from conftest import one_line_error

CHILD_MEMORY = 6 * 2**30  # bytes of address space for a child cifarlab: enough for torch, far from all of /dev/zero


def copy_run(trained_run: Path, dest: Path) -> Path:
    shutil.copytree(trained_run, dest, symlinks=True)
    return dest


def secret_file(folder: Path, name: str) -> Path:
    """A file outside the run whose bytes must never reach a report and that must never be overwritten."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + f"SECRET {name} outside the run".encode() * 20)
    return path


def link(at: Path, target: Path) -> Path:
    at.parent.mkdir(parents=True, exist_ok=True)
    at.symlink_to(target)
    return at


def a_test_image(train_tree) -> Path:
    return next((train_tree / "test" / "cat").iterdir())


# --- links out of a run directory ------------------------------------------------------------------------------

def test_report_never_embeds_a_linked_file_from_outside_the_run(trained_run, tmp_path, capsys):
    run = copy_run(trained_run, tmp_path / "run")
    secrets = {sub: secret_file(tmp_path / "elsewhere", f"{sub}.png") for sub in ("features", "embed", "explain")}
    for sub, target in secrets.items():
        link(run / sub / f"{sub}_linked.png", target)
    (run / "features" / "own.png").write_bytes(b"\x89PNG\r\n\x1a\nmine")  # a regular file beside them is kept
    assert main(["report", str(run)]) == 0
    html = (run / "report.html").read_text()
    for target in secrets.values():
        assert base64.b64encode(target.read_bytes()).decode() not in html
    assert base64.b64encode(b"\x89PNG\r\n\x1a\nmine").decode() in html
    warnings = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert len(warnings) == 3 and all("outside" in w and "left out of the report" in w for w in warnings), warnings


@pytest.mark.parametrize("name", [layout.SUMMARY, layout.METRICS])
def test_a_run_file_linked_outside_the_run_is_an_error_naming_it(name, trained_run, tmp_path, capsys):
    run = copy_run(trained_run, tmp_path / "run")
    outside = tmp_path / "elsewhere" / name
    outside.parent.mkdir()
    shutil.move(run / name, outside)
    link(run / name, outside)
    assert main(["report", str(run)]) == 2
    one_line_error(capsys, str(run / name), "outside")
    assert not (run / "report.html").exists()


def test_weights_linked_outside_the_run_are_not_read(trained_run, tmp_path, capsys):
    run = copy_run(trained_run, tmp_path / "run")
    outside = tmp_path / "elsewhere.safetensors"
    shutil.move(run / layout.WEIGHTS, outside)
    link(run / layout.WEIGHTS, outside)
    assert main(["evaluate", str(run)]) == 2
    one_line_error(capsys, str(run / layout.WEIGHTS), "outside")


def _assert_replaced_not_followed(at: Path, target: Path, before: bytes) -> None:
    assert target.read_bytes() == before, f"{target} was written through the link {at}"
    assert not at.is_symlink() and at.is_file(), f"{at} should now be cifarlab's own regular file"


def test_analyze_features_and_embed_replace_links_never_their_targets(trained_run, train_tree, tmp_path):
    run = copy_run(trained_run, tmp_path / "run")
    elsewhere = tmp_path / "elsewhere"
    targets = {run / "analysis" / "confusion_matrix.png": secret_file(elsewhere, "confusion.png"),
               run / "analysis" / layout.PREDICTIONS: secret_file(elsewhere, "predictions.npz"),
               run / "features" / "first_layer_filters.png": secret_file(elsewhere, "filters.png"),
               run / "embed" / "embed_pca.png": secret_file(elsewhere, "embed.png")}
    before = {at: target.read_bytes() for at, target in targets.items()}
    for at, target in targets.items():
        link(at, target)
    assert main(["analyze", str(run), "--robustness-images", "0", "--device", "cpu"]) == 0
    assert main(["features", str(run), "--image", str(a_test_image(train_tree)), "--device", "cpu"]) == 0
    assert main(["embed", str(run), "--samples", "30", "--device", "cpu"]) == 0
    for at, target in targets.items():
        _assert_replaced_not_followed(at, target, before[at])


def test_an_output_folder_linked_outside_the_run_is_refused(trained_run, tmp_path, capsys):
    run = copy_run(trained_run, tmp_path / "run")
    outside = tmp_path / "elsewhere"
    kept = secret_file(outside, "confusion_matrix.png")
    before = kept.read_bytes()
    link(run / "analysis", outside)
    assert main(["analyze", str(run), "--robustness-images", "0", "--device", "cpu"]) == 2
    one_line_error(capsys, str(run / "analysis"), "outside the run directory")
    assert sorted(p.name for p in outside.iterdir()) == ["confusion_matrix.png"] and kept.read_bytes() == before


def test_a_lock_file_linked_elsewhere_is_not_written_through(trained_run, tmp_path, capsys):
    run = copy_run(trained_run, tmp_path / "run")
    target = secret_file(tmp_path / "elsewhere", "precious.txt")
    before = target.read_bytes()
    link(run / layout.LOCK_NAME, target)
    assert main(["report", str(run)]) == 2
    one_line_error(capsys, str(run / layout.LOCK_NAME), "symbolic link")
    assert target.read_bytes() == before


def test_append_refuses_a_link_and_keeps_its_target(tmp_path):
    target = secret_file(tmp_path / "elsewhere", "metrics.jsonl")
    before = target.read_bytes()
    at = link(tmp_path / "run" / layout.METRICS, target)
    with pytest.raises(CifarlabError, match="symbolic link"):
        append_jsonl(at, {"epoch": 1})
    assert target.read_bytes() == before


def test_an_atomic_write_replaces_the_link_itself(tmp_path):
    target = secret_file(tmp_path / "elsewhere", "summary.json")
    before = target.read_bytes()
    at = link(tmp_path / "run" / "summary.json", target)
    write_text_atomic(at, "{}\n")
    _assert_replaced_not_followed(at, target, before)
    assert at.read_text() == "{}\n"


# --- symbolic link loops in a data tree ------------------------------------------------------------------------

def _loop_class_folder(tree: Path) -> Path:
    return link(tree / "train" / "loop", Path("loop"))


def _loop_image_file(tree: Path) -> Path:
    return link(tree / "train" / "cat" / "loop.png", Path("loop.png"))


def _loop_split_folder(tree: Path) -> Path:
    shutil.rmtree(tree / "test")
    return link(tree / "test", Path("test"))


@pytest.mark.parametrize("make_loop", [_loop_class_folder, _loop_image_file, _loop_split_folder])
def test_a_symbolic_link_loop_in_the_data_tree_is_one_line_naming_it(make_loop, tiny_tree, tmp_path, capsys):
    tree = shutil.copytree(tiny_tree, tmp_path / "data")
    loop = make_loop(tree)
    assert main(["train", "--model", "baseline", "--epochs", "1", "--data", str(tree), "--out", str(tmp_path / "run"),
                 "--device", "cpu", "--quiet"]) == 2
    one_line_error(capsys, str(loop), "symbolic link")
    assert not (tmp_path / "run").exists()


# --- bounded reads ---------------------------------------------------------------------------------------------

def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (CHILD_MEMORY, CHILD_MEMORY))


def cli_in_child(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    """`cifarlab ARGS` in a child process with a memory limit (an unbounded read dies there, not here) and a
    time limit (a read that blocks on a FIFO fails the test)."""
    return subprocess.run([sys.executable, "-m", "cifarlab", *args], capture_output=True, text=True,
                          timeout=timeout, preexec_fn=_limit_memory)


def child_error(proc: subprocess.CompletedProcess, *fragments: str) -> None:
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.mark.parametrize("name, argv", [
    (layout.SUMMARY, ["report"]),
    (layout.CONFIG, ["evaluate"]),
    (layout.METRICS, ["report"]),
])
def test_a_run_file_linked_to_dev_zero_is_refused_after_a_bounded_read(name, argv, trained_run, tmp_path):
    run = copy_run(trained_run, tmp_path / "run")
    (run / name).unlink()
    (run / name).symlink_to("/dev/zero")
    child_error(cli_in_child(*argv, str(run)), str(run / name), "/dev/zero")


def test_a_summary_that_is_a_fifo_does_not_block(trained_run, tmp_path):
    run = copy_run(trained_run, tmp_path / "run")
    (run / layout.SUMMARY).unlink()
    os.mkfifo(run / layout.SUMMARY)
    child_error(cli_in_child("report", str(run), timeout=120), str(run / layout.SUMMARY), "FIFO")


def test_a_config_file_on_dev_zero_is_refused(tmp_path):
    child_error(cli_in_child("train", "--config", "/dev/zero", "--out", str(tmp_path / "run")),
                "/dev/zero", "not a regular file")
    assert not (tmp_path / "run").exists()


def test_a_json_file_larger_than_the_cap_is_refused(tmp_path):
    big = tmp_path / "big.json"
    big.write_text(" " * 2048 + "{}")
    with pytest.raises(CifarlabError, match="larger than"):
        read_bytes_bounded(big, limit=1024)
    assert read_bytes_bounded(big, limit=4096).endswith(b"{}")


# --- train --overwrite -----------------------------------------------------------------------------------------

def _user_folder(folder: Path, config: str) -> dict[str, bytes]:
    """A folder of someone's own files that happens to hold a config.json."""
    (folder / "sub").mkdir(parents=True)
    files = {"config.json": config.encode(), "weights.bin": b"\x00precious weights",
             "sub/notes.txt": b"keep me\n"}
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return files


@pytest.mark.parametrize("config", ['{"lr": 0.1, "note": "my own settings"}', "run config"])
def test_overwrite_refuses_a_folder_that_merely_holds_a_config_json(config, trained_run, tiny_tree, tmp_path, capsys):
    folder = tmp_path / "mine"
    if config == "run config":  # even a genuine cifarlab config.json does not make its folder a run
        config = (trained_run / layout.CONFIG).read_text()
    files = _user_folder(folder, config)
    assert main(["train", "--model", "baseline", "--epochs", "1", "--data", str(tiny_tree), "--out", str(folder),
                 "--overwrite", "--device", "cpu", "--quiet"]) == 2
    one_line_error(capsys, "refusing to overwrite", str(folder))
    assert {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()} == set(files)
    for name, data in files.items():
        assert (folder / name).read_bytes() == data


def test_overwrite_refuses_a_run_that_holds_files_of_its_own(trained_run, tiny_tree, tmp_path, capsys):
    run = copy_run(trained_run, tmp_path / "run")
    (run / "my_notes.txt").write_text("keep me\n")
    assert main(["train", "--model", "baseline", "--epochs", "1", "--data", str(tiny_tree), "--out", str(run),
                 "--overwrite", "--device", "cpu", "--quiet"]) == 2
    one_line_error(capsys, "refusing to overwrite", str(run), "my_notes.txt")
    assert (run / "my_notes.txt").read_text() == "keep me\n" and (run / layout.WEIGHTS).is_file()


def test_a_run_is_marked_and_older_runs_without_the_marker_are_still_recognised(trained_run, tmp_path):
    assert (trained_run / layout.RUN_MARKER).is_file()
    legacy = copy_run(trained_run, tmp_path / "legacy")
    (legacy / layout.RUN_MARKER).unlink()
    assert layout.is_own_run_dir(legacy)  # config.json that parses as a run's, command.txt, nothing foreign
    (legacy / layout.COMMAND).unlink()
    assert not layout.is_own_run_dir(legacy)


def test_overwrite_replaces_a_run_it_made(trained_run, tiny_tree, tmp_path):
    run = copy_run(trained_run, tmp_path / "run")
    (run / layout.RUN_MARKER).unlink()  # an older run, made before the marker
    (run / "analysis").mkdir()
    (run / "analysis" / "old.png").write_bytes(b"old")
    assert main(["train", "--model", "baseline", "--epochs", "1", "--data", str(tiny_tree), "--out", str(run),
                 "--overwrite", "--device", "cpu", "--quiet"]) == 0
    assert not (run / "analysis").exists() and (run / layout.RUN_MARKER).is_file()
    assert json.loads((run / layout.SUMMARY).read_text())["epochs_completed"] == 1


# --- --out on a device or a FIFO -------------------------------------------------------------------------------

def _fifo(tmp_path: Path) -> Path:
    path = tmp_path / "pipe"
    os.mkfifo(path)
    return path


def _out_commands(run: Path, tiny_tree: Path) -> dict[str, list[str]]:
    return {"export": ["export", str(run), "--out"], "report": ["report", str(run), "--out"],
            "augment-preview": ["augment-preview", "--augment", "standard", "--data", str(tiny_tree), "--out"]}


@pytest.mark.parametrize("command", ["export", "report", "augment-preview"])
def test_out_on_a_fifo_is_refused_and_left_as_it_is(command, trained_run, tiny_tree, tmp_path, capsys):
    fifo = _fifo(tmp_path)
    assert main([*_out_commands(trained_run, tiny_tree)[command], str(fifo)]) == 2
    one_line_error(capsys, str(fifo), "FIFO")
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


def _private_null(tmp_path: Path) -> Path | None:
    """A character device like /dev/null in tmp_path (needs the right to make device nodes)."""
    path = tmp_path / "null"
    try:
        os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    except (PermissionError, OSError):
        return None
    return path


@pytest.mark.parametrize("command", ["export", "report", "augment-preview"])
def test_out_on_dev_null_is_refused_and_dev_null_stays_a_device(command, trained_run, tiny_tree, tmp_path, capsys):
    argv = _out_commands(trained_run, tiny_tree)[command]
    # First a device (or a FIFO) of the test's own: should the refusal ever break, this fails here, before the
    # system's /dev/null could be replaced by a regular file.
    own = _private_null(tmp_path) or _fifo(tmp_path)
    assert main([*argv, str(own)]) == 2
    one_line_error(capsys, str(own), "not a regular file")
    assert not stat.S_ISREG(os.lstat(own).st_mode)
    assert main([*argv, "/dev/null"]) == 2
    one_line_error(capsys, "/dev/null", "character device")
    assert stat.S_ISCHR(os.lstat("/dev/null").st_mode)

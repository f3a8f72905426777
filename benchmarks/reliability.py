"""Reliability check: run cifarlab as a careless or hostile user would, and tabulate what happened.

    python benchmarks/reliability.py                      # every case; writes RELIABILITY.md
    python benchmarks/reliability.py --only flags --jobs 2 --out /tmp/r.md

Each case is one `cifarlab` command line run in a fresh process against a small synthetic workspace (a
3-class image tree, a trained 1-epoch run, a small archive in the official format, a decompression-bomb
PNG, a run directory carrying a pickle payload). What each case must do:

- error:   exit 2, exactly one `cifarlab ...: error: ...` line on stderr (warnings aside) that names what it
           must name, no traceback, no temporary file left, no half-made run directory.
- ok:      exit 0, no traceback.
- no-exec: whatever the exit, the payload's marker file is never created and there is no traceback.
- scenario cases (two writers on one run, kill -9 and resume) check what their description says.

The table in RELIABILITY.md has one row per case with the command that reproduces it ($WS is the
workspace the script builds: `--keep` keeps it and prints its path).
"""
from __future__ import annotations

import argparse
import concurrent.futures
import fnmatch
import io
import json
import os
import pickle
import shlex
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
PY = sys.executable
CLASSES = ["cat", "dog", "frog"]
MARKER = "PWNED"


# --------------------------------------------------------------------------------------------- workspace
def write_tree(root: Path) -> Path:
    """The tests' own 3-class synthetic tree (tests/conftest.py): 20 train and 6 test images per class."""
    sys.path.insert(0, str(REPO / "tests"))
    from conftest import write_image_tree

    return write_image_tree(root, n_train=20, n_test=6, classes=CLASSES)


def one_image() -> np.ndarray:
    sys.path.insert(0, str(REPO / "tests"))
    from conftest import synthetic_images

    return synthetic_images(1, CLASSES, seed=5)[0][0]


def write_archive(path: Path) -> Path:
    """A small archive in the layout of cifar-10-python.tar.gz: 5 train batches, a test batch, meta."""
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    rng = np.random.default_rng(0)

    def batch(n: int, label: str) -> bytes:
        labels = [i % 10 for i in range(n)]
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        return pickle.dumps({b"batch_label": label.encode(), b"labels": labels, b"data": data,
                             b"filenames": [f"img_{i}.png".encode() for i in range(n)]}, protocol=2)

    members = {f"data_batch_{i}": batch(20, f"training batch {i} of 5") for i in range(1, 6)}
    members["test_batch"] = batch(20, "testing batch 1 of 1")
    members["batches.meta"] = pickle.dumps({b"num_cases_per_batch": 20, b"label_names": [n.encode() for n in names],
                                            b"num_vis": 3072}, protocol=2)
    with tarfile.open(path, "w:gz") as tar:
        for name, blob in members.items():
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(blob)
            info.mtime = 0
            tar.addfile(info, io.BytesIO(blob))
    return path


class Payload:
    """Unpickling this creates the marker file: what a hostile run directory would carry."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {shlex.quote(self.marker)}",))


def write_payload(path: Path, marker: Path) -> None:
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"epoch": 1, "x": Payload(marker)}, path)


def build_workspace(ws: Path) -> None:
    print(f"building the workspace in {ws} ...", flush=True)
    write_tree(ws / "data")
    write_archive(ws / "cifar-10-python.tar.gz")
    Image.new("L", (14000, 14000)).save(ws / "bomb.png")  # 196 M pixels, a few KB on disk
    Image.fromarray(one_image()).save(ws / "cat.png")
    (ws / "afile.txt").write_text("not a directory\n")
    (ws / "notes.png").write_text("this is text, not a PNG\n")
    run = cifarlab(["train", "--model", "baseline", "--epochs", "1", "--data", str(ws / "data"), "--val-size", "6",
                    "--precision", "fp32", "--out", str(ws / "run"), "--quiet"], cwd=ws, timeout=600)
    if run.returncode != 0:
        raise SystemExit(f"could not train the workspace's run:\n{run.stderr}")


def cifarlab(argv: list[str], cwd: Path, timeout: float = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.run([PY, "-m", "cifarlab", *argv], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env=env, stdin=subprocess.DEVNULL)


# --------------------------------------------------------------------------------------------- cases
@dataclass
class Case:
    id: str
    group: str
    what: str
    argv: list[str] = field(default_factory=list)  # {ws} and {case} are replaced
    expect: str = "error"  # error | ok | clean | no-exec | scenario
    mention: str | None = None  # the error line must contain this ({ws}/{case} replaced)
    absent: list[str] = field(default_factory=list)  # paths that must not exist afterwards
    setup: Callable[[Path, Path], None] | None = None  # (ws, case_dir)
    scenario: Callable[[Path, Path], tuple[bool, str]] | None = None
    env: dict = field(default_factory=dict)


def copy_run(ws: Path, case: Path, name: str = "run") -> Path:
    dst = case / name
    shutil.copytree(ws / "run", dst)
    return dst


def copy_data(ws: Path, case: Path) -> Path:
    dst = case / "data"
    shutil.copytree(ws / "data", dst)
    return dst


def train_argv(*extra: str, out: str = "{case}/out") -> list[str]:
    return ["train", "--data", "{ws}/data", "--epochs", "1", "--val-size", "6", "--precision", "fp32", "--quiet",
            "--out", out, *extra]


def flag_cases() -> list[Case]:
    bad = [
        ("--epochs", "0"), ("--epochs", "-1"), ("--epochs", "two"), ("--epochs", "1.5"),
        ("--batch-size", "0"), ("--batch-size", "-8"), ("--batch-size", "1e3"),
        ("--lr", "-1"), ("--lr", "nan"), ("--lr", "inf"), ("--lr", "abc"),
        ("--weight-decay", "-1"), ("--momentum", "-1"), ("--warmup-epochs", "-2"),
        ("--label-smoothing", "1.5"), ("--label-smoothing", "-0.1"),
        ("--seed", "-1"), ("--seed", "4294967296"), ("--seed", "x"),
        ("--val-size", "-1"), ("--val-size", "100000"), ("--val-size", "59"),
        ("--train-size", "0"), ("--train-size", "-5"),
        ("--dropout", "1.5"), ("--dropout", "-0.1"), ("--drop-path", "2"),
        ("--ema", "1.5"), ("--ema", "-1"), ("--early-stopping", "0"), ("--early-stopping", "-1"),
        ("--model", "nosuchnet"), ("--model", "timm:nosuchnet"), ("--model", "tv:nosuchnet"),
        ("--optimizer", "nosuch"), ("--schedule", "nosuch"), ("--augment", "nosuch"), ("--augment", "standard+"),
        ("--precision", "fp8"), ("--device", "tpu"), ("--device", "cuda:7"), ("--tta", "bogus"),
        ("--compile", "maybe"), ("--recipe", "nosuch"),
        ("--progressive-resize", "abc"), ("--progressive-resize", "4:1"), ("--progressive-resize", "24:0"),
        ("--input-size", "0"), ("--input-size", "-32"),
        ("--classes", "cat,unicorn"), ("--classes", "cat,cat"), ("--classes", "cat"),
        ("--label-fraction", "0"), ("--label-fraction", "2"),
        ("--budget-minutes", "-1"), ("--budget-minutes", "0"),
        ("--grad-accum", "0"), ("--grad-accum", "-2"), ("--l1", "-1"), ("--l2", "-1"),
        ("--eval-batch-size", "0"), ("--dist-timeout", "-5"),
        ("--freeze", "bogus"), ("--unfreeze-schedule", "bogus"), ("--backbone-lr-scale", "-1"),
        ("--pretrained", "imagenet"),  # the baseline has no pretrained weights
    ]
    cases = [Case(f"flag{i:03d}", "flags", f"train {flag} {value}", train_argv(flag, value),
                  absent=["{case}/out"]) for i, (flag, value) in enumerate(bad)]
    cases += [
        Case("flag-vgg-offline", "flags", "tv:vgg16 --pretrained imagenet offline (no hub)",
             train_argv("--model", "tv:vgg16", "--pretrained", "imagenet"), absent=["{case}/out"]),
        Case("flag-weights-missing", "flags", "--weights of a missing file",
             train_argv("--model", "tv:resnet18", "--pretrained", "imagenet", "--weights", "{case}/nope.pth"),
             mention="nope.pth", absent=["{case}/out"]),
        Case("flag-initfrom-missing", "flags", "--init-from a missing path",
             train_argv("--init-from", "{case}/nope"), mention="nope", absent=["{case}/out"]),
        Case("flag-initfrom-text", "flags", "--init-from a text file",
             train_argv("--init-from", "{ws}/afile.txt"), mention="afile.txt", absent=["{case}/out"]),
        Case("flag-resume-missing", "flags", "--resume a missing directory",
             ["train", "--resume", "{case}/nope"], mention="nope"),
        Case("flag-resume-notrun", "flags", "--resume a directory that is not a run",
             ["train", "--resume", "{ws}/data"], mention="data"),
        Case("flag-resume-change", "flags", "--resume with a changed --model",
             ["train", "--resume", "{case}/run", "--model", "resnet20"], setup=lambda ws, c: copy_run(ws, c)),
        Case("flag-unknown", "flags", "an unknown flag (the closest is suggested)", train_argv("--epochz", "2"),
             mention="did you mean --epochs?"),
        Case("flag-nocommand", "flags", "no command at all (prints the help, exit 2)", [], expect="clean"),
        Case("flag-unknown-command", "flags", "an unknown command (the closest is suggested)", ["trian"],
             mention="did you mean train?"),
        Case("flag-model-typo", "flags", "a mistyped model name (the closest is suggested)",
             train_argv("--model", "resnt20"), mention="did you mean resnet20?", absent=["{case}/out"]),
        Case("flag-tv-typo-no-data", "flags", "a mistyped tv: model and no --data: refused before any data is "
             "fetched", ["train", "--model", "tv:resnt18", "--out", "{case}/out"],
             mention="did you mean tv:resnet18?", absent=["{case}/out"], env={"CIFARLAB_DATA": ""}),
        Case("flag-from-study-missing", "flags", "--from-study of a missing directory",
             ["train", "--from-study", "{case}/nostudy", "--out", "{case}/out"], absent=["{case}/out"]),
    ]
    return cases


CONFIGS = {
    "str-epochs": 'epochs: "two"\n', "str-lr": 'lr: "0.01"\n', "float-epochs": "epochs: 1.5\n",
    "kwargs-str": 'model_kwargs: "abc"\n', "kwargs-bad-arg": "model_kwargs: {width: 7}\n",
    "list": "- epochs\n- 2\n", "unknown-key": "epoch: 2\n", "syntax": "epochs: [1, 2\n",
    "neg-batch": "batch_size: -4\n", "bool-lr": "lr: true\n", "null-model": "model: null\n",
    "nested": "epochs: {a: 1}\n", "huge-int": "epochs: 100000000000000000000000\n",
    "classes-str": "classes: 5\n", "augment-int": "augment: 3\n",
}


def config_argv() -> list[str]:
    """train with --config and no recipe flags of its own: the file's values are what gets checked."""
    return ["train", "--data", "{ws}/data", "--val-size", "6", "--precision", "fp32", "--quiet", "--out",
            "{case}/out", "--config", "{case}/cfg.yaml"]


def config_cases() -> list[Case]:
    cases = []
    for name, text in CONFIGS.items():
        def setup(ws, case, text=text):
            (case / "cfg.yaml").write_text(text)
        cases.append(Case(f"config-{name}", "config", f"--config with {text.strip()!r}", config_argv(),
                          mention="cfg.yaml", setup=setup, absent=["{case}/out"]))

    def latin1(ws, case):
        (case / "cfg.yaml").write_bytes("model: baseline\n# caf\xe9\n".encode("latin-1"))
    cases += [
        Case("config-not-utf8", "config", "--config file that is not UTF-8", config_argv(), mention="cfg.yaml",
             setup=latin1, absent=["{case}/out"]),
        Case("config-missing", "config", "--config of a missing file", train_argv("--config", "{case}/nope.yaml"),
             mention="nope.yaml", absent=["{case}/out"]),
        Case("config-directory", "config", "--config of a directory", train_argv("--config", "{ws}/data"),
             mention="data", absent=["{case}/out"]),
    ]
    return cases


def data_cases() -> list[Case]:
    def empty(ws, case):
        (case / "data").mkdir()

    def no_train(ws, case):
        shutil.copytree(ws / "data" / "test", case / "data" / "test")

    def text_png(ws, case):
        copy_data(ws, case)
        (case / "data/train/cat/zz_text.png").write_text("hello")

    def truncated(ws, case):
        copy_data(ws, case)
        blob = (case / "data/train/cat/img_0000.png").read_bytes()
        (case / "data/train/cat/img_0000.png").write_bytes(blob[: len(blob) // 2])

    def zero_byte(ws, case):
        copy_data(ws, case)
        (case / "data/train/dog/img_0020.png").write_bytes(b"")

    def bomb(ws, case):
        copy_data(ws, case)
        shutil.copy(ws / "bomb.png", case / "data/train/frog/zz_bomb.png")

    def one_class(ws, case):
        for split in ("train", "test"):
            shutil.copytree(ws / "data" / split / "cat", case / "data" / split / "cat")

    def test_extra_class(ws, case):
        copy_data(ws, case)
        shutil.copytree(ws / "data/test/cat", case / "data/test/unicorn")

    def empty_class(ws, case):
        copy_data(ws, case)
        (case / "data/train/unicorn").mkdir()

    def not_gzip(ws, case):
        (case / "cifar-10-python.tar.gz").write_bytes(b"not a gzip stream at all" * 100)

    def truncated_archive(ws, case):
        blob = (ws / "cifar-10-python.tar.gz").read_bytes()
        (case / "cifar-10-python.tar.gz").write_bytes(blob[: len(blob) // 2])

    def tar_without_batches(ws, case):
        with tarfile.open(case / "cifar-10-python.tar.gz", "w:gz") as tar:
            info = tarfile.TarInfo("readme.txt")
            info.size = 5
            tar.addfile(info, io.BytesIO(b"hello"))

    def traversal(ws, case):
        with tarfile.open(case / "cifar-10-python.tar.gz", "w:gz") as tar:
            info = tarfile.TarInfo("../../escaped.txt")
            info.size = 5
            tar.addfile(info, io.BytesIO(b"hello"))

    data = "{case}/data"
    cases = [
        Case("data-missing", "data", "--data of a missing path", train_argv("--data", "{case}/nope"), mention="nope",
             absent=["{case}/out"]),
        Case("data-empty", "data", "--data of an empty folder", train_argv("--data", data), setup=empty,
             mention="data", absent=["{case}/out"]),
        Case("data-no-train", "data", "an image tree without train/", train_argv("--data", data), setup=no_train,
             mention="data", absent=["{case}/out"]),
        Case("data-text-png", "data", "a text file named .png in a class folder", train_argv("--data", data),
             setup=text_png, mention="zz_text.png", absent=["{case}/out"]),
        Case("data-truncated-png", "data", "a truncated PNG", train_argv("--data", data), setup=truncated,
             mention="img_0000.png", absent=["{case}/out"]),
        Case("data-zero-byte", "data", "a zero-byte PNG", train_argv("--data", data), setup=zero_byte,
             mention="img_0020.png", absent=["{case}/out"]),
        Case("data-bomb", "data", "a 14000x14000 PNG (decompression bomb) in a class folder",
             train_argv("--data", data), setup=bomb, mention="zz_bomb.png", absent=["{case}/out"]),
        Case("data-one-class", "data", "a tree with one class", train_argv("--data", data), setup=one_class,
             absent=["{case}/out"]),
        Case("data-test-extra-class", "data", "a test class that train lacks", train_argv("--data", data),
             setup=test_extra_class, mention="unicorn", absent=["{case}/out"]),
        Case("data-empty-class", "data", "an empty class folder in train", train_argv("--data", data),
             setup=empty_class, expect="clean", absent=[]),
        Case("archive-not-gzip", "archive", "a .tar.gz that is not gzip",
             train_argv("--data", "{case}/cifar-10-python.tar.gz"), setup=not_gzip,
             mention="cifar-10-python.tar.gz", absent=["{case}/out"]),
        Case("archive-truncated", "archive", "an archive cut in half",
             train_argv("--data", "{case}/cifar-10-python.tar.gz"), setup=truncated_archive,
             mention="cifar-10-python.tar.gz", absent=["{case}/out"]),
        Case("archive-no-batches", "archive", "a tar.gz without CIFAR batches",
             train_argv("--data", "{case}/cifar-10-python.tar.gz"), setup=tar_without_batches,
             mention="cifar-10-python.tar.gz", absent=["{case}/out"]),
        Case("archive-traversal", "archive", "a tar.gz whose member climbs out (../../escaped.txt)",
             train_argv("--data", "{case}/cifar-10-python.tar.gz"), setup=traversal,
             mention="cifar-10-python.tar.gz", absent=["{case}/out", "{case}/../escaped.txt"]),
    ]
    # 40 single-bit flips of an archive: each must be refused (md5 and the gzip CRC), never loaded.
    for i in range(40):
        def flip(ws, case, i=i):
            blob = bytearray((ws / "cifar-10-python.tar.gz").read_bytes())
            pos = int(np.random.default_rng(1000 + i).integers(0, len(blob)))
            blob[pos] ^= 1 << int(np.random.default_rng(2000 + i).integers(0, 8))
            (case / "cifar-10-python.tar.gz").write_bytes(bytes(blob))
        cases.append(Case(f"archive-bitflip-{i:02d}", "archive", f"a single flipped bit (seed {i})",
                          train_argv("--data", "{case}/cifar-10-python.tar.gz"), setup=flip,
                          mention="cifar-10-python.tar.gz", absent=["{case}/out"]))
    return cases


def path_cases() -> list[Case]:
    def corrupt(name: str, text: str | bytes):
        def setup(ws, case):
            run = copy_run(ws, case)
            target = run / name
            if isinstance(text, bytes):
                target.write_bytes(text)
            else:
                target.write_text(text)
        return setup

    def truncate_weights(ws, case):
        run = copy_run(ws, case)
        blob = (run / "model.safetensors").read_bytes()
        (run / "model.safetensors").write_bytes(blob[: len(blob) // 3])

    def other_model(ws, case):
        run = copy_run(ws, case)
        info = json.loads((run / "config.json").read_text())
        info["config"]["model"] = "resnet20"
        (run / "config.json").write_text(json.dumps(info))

    def no_weights(ws, case):
        run = copy_run(ws, case)
        (run / "model.safetensors").unlink()
        shutil.rmtree(run / "checkpoints", ignore_errors=True)

    def pickled_state(ws, case):
        import torch

        run = copy_run(ws, case)
        for ckpt in (run / "checkpoints").glob("epoch_*"):
            for f in ckpt.iterdir():
                if f.name != "model.safetensors":
                    f.unlink()
            torch.save({"epoch": 1, "step": 1}, ckpt / "state.pt")

    run = "{case}/run"
    cases = [
        Case("out-is-file", "paths", "train --out an existing file", train_argv(out="{ws}/afile.txt"),
             mention="afile.txt"),
        Case("out-under-file", "paths", "train --out a path under a file", train_argv(out="{ws}/afile.txt/run"),
             mention="afile.txt"),
        Case("out-proc", "paths", "train --out /proc/x", train_argv(out="/proc/cifarlab-x"), mention="/proc"),
        Case("out-existing-run", "paths", "train --out an existing run (no --overwrite)", train_argv(out=run),
             setup=lambda ws, c: copy_run(ws, c), mention="run"),
        Case("out-overwrite-nonrun", "paths", "train --overwrite a folder that is not a run",
             train_argv("--overwrite", out="{case}/data"), setup=lambda ws, c: copy_data(ws, c), mention="data",
             absent=[]),
        Case("analyze-out-proc", "paths", "analyze --out /proc/x", ["analyze", "{ws}/run", "--out", "/proc/cifarlab-x",
                                                                     "--robustness-images", "0"], mention="/proc"),
        Case("analyze-out-file", "paths", "analyze --out an existing file",
             ["analyze", "{ws}/run", "--out", "{ws}/afile.txt/analysis", "--robustness-images", "0"],
             mention="afile.txt"),
        Case("report-out-proc", "paths", "report --out /proc/x/report.html",
             ["report", "{ws}/run", "--out", "/proc/cifarlab-x/report.html"], mention="/proc"),
        Case("export-out-proc", "paths", "export --out /proc/x/model.onnx",
             ["export", "{ws}/run", "--out", "/proc/cifarlab-x/model.onnx"], mention="/proc"),
        Case("preview-out-proc", "paths", "augment-preview --out /proc/x.png",
             ["augment-preview", "--augment", "keras", "--data", "{ws}/data", "--out", "/proc/cifarlab-x.png"],
             mention="/proc"),
        Case("explain-out-file", "paths", "explain --out under a file",
             ["explain", "{ws}/run", "--image", "{ws}/cat.png", "--out", "{ws}/afile.txt/x"], mention="afile.txt"),
        Case("features-out-file", "paths", "features --out under a file",
             ["features", "{ws}/run", "--image", "{ws}/cat.png", "--out", "{ws}/afile.txt/x"], mention="afile.txt"),
        Case("embed-out-file", "paths", "embed --out under a file",
             ["embed", "{ws}/run", "--out", "{ws}/afile.txt/x"], mention="afile.txt"),
        Case("compare-out-file", "paths", "compare --out an existing file",
             ["compare", "--models", "baseline", "--epochs", "1", "--data", "{ws}/data", "--out", "{ws}/afile.txt"],
             mention="afile.txt"),
        Case("tune-out-file", "paths", "tune --out under a file",
             ["tune", "--trials", "1", "--epochs", "1", "--data", "{ws}/data", "--out", "{ws}/afile.txt/t"],
             mention="afile.txt"),
        Case("evaluate-missing", "paths", "evaluate a missing run", ["evaluate", "{case}/nope"], mention="nope"),
        Case("evaluate-data-dir", "paths", "evaluate a folder that is not a run", ["evaluate", "{ws}/data"],
             mention="data"),
        Case("report-notrun", "paths", "report on a folder that is not a run", ["report", "{ws}/data"],
             mention="data"),
        Case("run-config-corrupt", "run dir", "config.json is not JSON", ["evaluate", run],
             setup=corrupt("config.json", "{not json"), mention="config.json"),
        Case("run-config-nokey", "run dir", "config.json without its config", ["evaluate", run],
             setup=corrupt("config.json", "{}"), mention="config.json"),
        Case("run-config-list", "run dir", "config.json holds a list", ["evaluate", run],
             setup=corrupt("config.json", "[1, 2]"), mention="config.json"),
        Case("run-config-badtype", "run dir", "config.json with epochs \"two\"", ["evaluate", run],
             setup=corrupt("config.json", json.dumps({"config": {"model": "baseline", "epochs": "two"},
                                                      "classes": CLASSES})), mention="config.json"),
        Case("run-config-binary", "run dir", "config.json of binary bytes", ["evaluate", run],
             setup=corrupt("config.json", b"\xff\xfe\x00garbage"), mention="config.json"),
        Case("run-weights-truncated", "run dir", "model.safetensors cut short", ["evaluate", run],
             setup=truncate_weights, mention="model.safetensors"),
        Case("run-weights-other-model", "run dir", "weights of another architecture", ["evaluate", run],
             setup=other_model, mention="model.safetensors"),
        Case("run-no-weights", "run dir", "a run without weights or checkpoints", ["evaluate", run],
             setup=no_weights, mention="run"),
        Case("run-summary-corrupt", "run dir", "report with summary.json not JSON", ["report", run],
             setup=corrupt("summary.json", "{oops"), mention="summary.json"),
        Case("run-metrics-corrupt", "run dir", "report with metrics.jsonl not JSON lines", ["report", run],
             setup=corrupt("metrics.jsonl", "{oops\n"), mention="metrics.jsonl"),
        Case("run-old-pickled-state", "run dir", "resume a run whose checkpoint is an old pickled state.pt",
             ["train", "--resume", run, "--epochs", "2"], setup=pickled_state, mention="state.pt"),
    ]
    return cases


def command_cases() -> list[Case]:
    run = "{ws}/run"
    cases = [
        Case("predict-missing", "commands", "predict a missing image", ["predict", run, "{case}/nope.png"],
             mention="nope.png"),
        Case("predict-text", "commands", "predict a text file named .png", ["predict", run, "{ws}/notes.png"],
             mention="notes.png"),
        Case("predict-bomb", "commands", "predict a 14000x14000 PNG", ["predict", run, "{ws}/bomb.png"],
             mention="bomb.png"),
        Case("predict-topk-0", "commands", "predict --top-k 0", ["predict", run, "{ws}/cat.png", "--top-k", "0"]),
        Case("predict-topk-neg", "commands", "predict --top-k -1", ["predict", run, "{ws}/cat.png", "--top-k", "-1"]),
        Case("predict-topk-big", "commands", "predict --top-k 99 (more than classes)",
             ["predict", run, "{ws}/cat.png", "--top-k", "99"], expect="clean"),
        Case("predict-noimage", "commands", "predict without images", ["predict", run]),
        Case("predict-dir", "commands", "predict a directory as an image", ["predict", run, "{ws}/data"],
             mention="data"),
        Case("predict-ok", "commands", "predict one good image", ["predict", run, "{ws}/cat.png"], expect="ok"),
        Case("explain-bomb", "commands", "explain a 14000x14000 PNG", ["explain", run, "--image", "{ws}/bomb.png",
                                                                       "--out", "{case}/x"], mention="bomb.png"),
        Case("explain-missing", "commands", "explain a missing image", ["explain", run, "--image", "{case}/no.png",
                                                                        "--out", "{case}/x"], mention="no.png"),
        Case("explain-method", "commands", "explain --method nosuch",
             ["explain", run, "--image", "{ws}/cat.png", "--method", "nosuch"]),
        Case("explain-target-name", "commands", "explain --target unicorn",
             ["explain", run, "--image", "{ws}/cat.png", "--target", "unicorn", "--out", "{case}/x"],
             mention="unicorn"),
        Case("explain-target-index", "commands", "explain --target 99",
             ["explain", run, "--image", "{ws}/cat.png", "--target", "99", "--out", "{case}/x"], mention="99"),
        Case("explain-layer", "commands", "explain --layer nosuch",
             ["explain", run, "--image", "{ws}/cat.png", "--layer", "nosuch", "--out", "{case}/x"],
             mention="nosuch"),
        Case("explain-spc-0", "commands", "explain --samples-per-class 0",
             ["explain", run, "--samples-per-class", "0", "--out", "{case}/x"]),
        Case("explain-spc-neg", "commands", "explain --samples-per-class -1",
             ["explain", run, "--samples-per-class", "-1", "--out", "{case}/x"]),
        Case("explain-evaluate-neg", "commands", "explain --evaluate -1",
             ["explain", run, "--evaluate", "-1", "--out", "{case}/x"]),
        Case("explain-steps-0", "commands", "explain --steps 0",
             ["explain", run, "--image", "{ws}/cat.png", "--steps", "0", "--out", "{case}/x"]),
        Case("explain-nothing", "commands", "explain without anything to explain", ["explain", run]),
        Case("explain-images-missing", "commands", "explain --images of a missing folder",
             ["explain", run, "--images", "{case}/nodir", "--out", "{case}/x"], mention="nodir"),
        Case("features-bomb", "commands", "features of a 14000x14000 PNG",
             ["features", run, "--image", "{ws}/bomb.png", "--out", "{case}/x"], mention="bomb.png"),
        Case("features-layer", "commands", "features --layers nosuch",
             ["features", run, "--image", "{ws}/cat.png", "--layers", "nosuch", "--out", "{case}/x"],
             mention="nosuch"),
        Case("features-channel-bad", "commands", "features --channel-top-images garbage",
             ["features", run, "--channel-top-images", "garbage", "--out", "{case}/x"], mention="garbage"),
        Case("features-k-0", "commands", "features --k 0",
             ["features", run, "--channel-top-images", "features.0:0", "--k", "0", "--out", "{case}/x"]),
        Case("features-topk-neg", "commands", "features --top-k-channels -3",
             ["features", run, "--image", "{ws}/cat.png", "--top-k-channels", "-3", "--out", "{case}/x"]),
        Case("embed-samples-neg", "commands", "embed --samples -1", ["embed", run, "--samples", "-1",
                                                                     "--out", "{case}/x"]),
        Case("embed-method", "commands", "embed --method nosuch", ["embed", run, "--method", "nosuch"]),
        Case("analyze-folds-1", "commands", "analyze --label-check --label-check-folds 1",
             ["analyze", run, "--label-check", "--label-check-folds", "1", "--out", "{case}/x"]),
        Case("analyze-robust-abc", "commands", "analyze --robustness-images abc",
             ["analyze", run, "--robustness-images", "abc", "--out", "{case}/x"], mention="abc"),
        Case("analyze-robust-neg", "commands", "analyze --robustness-images -5",
             ["analyze", run, "--robustness-images", "-5", "--out", "{case}/x"]),
        Case("analyze-split", "commands", "analyze --split train", ["analyze", run, "--split", "train"]),
        Case("evaluate-data-missing", "commands", "evaluate --data of a missing path",
             ["evaluate", run, "--data", "{case}/nope"], mention="nope"),
        Case("evaluate-precision", "commands", "evaluate --precision fp8", ["evaluate", run, "--precision", "fp8"]),
        Case("evaluate-ok", "commands", "evaluate a good run", ["evaluate", run], expect="ok"),
        Case("compare-unknown", "commands", "compare --models nosuch",
             ["compare", "--models", "nosuch", "--epochs", "1", "--data", "{ws}/data", "--out", "{case}/cmp"],
             mention="nosuch", absent=["{case}/cmp"]),
        Case("compare-empty", "commands", "compare --models ''",
             ["compare", "--models", "", "--epochs", "1", "--data", "{ws}/data", "--out", "{case}/cmp"],
             absent=["{case}/cmp"]),
        Case("compare-seeds", "commands", "compare --seeds a,b",
             ["compare", "--models", "baseline", "--seeds", "a,b", "--out", "{case}/cmp"]),
        Case("tune-trials-0", "commands", "tune --trials 0",
             ["tune", "--trials", "0", "--data", "{ws}/data", "--out", "{case}/t"]),
        Case("tune-trials-neg", "commands", "tune --trials -1",
             ["tune", "--trials", "-1", "--data", "{ws}/data", "--out", "{case}/t"]),
        Case("tune-space-missing", "commands", "tune --space of a missing file",
             ["tune", "--trials", "1", "--space", "{case}/nope.yaml", "--data", "{ws}/data", "--out", "{case}/t"],
             mention="nope.yaml"),
        Case("tune-space-bad", "commands", "tune --space with a bad type",
             ["tune", "--trials", "1", "--space", "{case}/space.yaml", "--data", "{ws}/data", "--out", "{case}/t"],
             setup=lambda ws, c: (c / "space.yaml").write_text("lr: {type: wobbly, low: 1, high: 0}\n"),
             mention="space.yaml"),
        Case("tune-storage-bad", "commands", "tune --storage bogus://",
             ["tune", "--trials", "1", "--storage", "bogus://x", "--data", "{ws}/data", "--out", "{case}/t"],
             mention="bogus"),
        Case("tune-timeout-neg", "commands", "tune --timeout -1",
             ["tune", "--trials", "1", "--timeout", "-1", "--data", "{ws}/data", "--out", "{case}/t"]),
        Case("ablate-field", "commands", "ablate --vary nosuch=1,2",
             ["ablate", "--model", "baseline", "--vary", "nosuch=1,2", "--out", "{case}/a"], mention="nosuch"),
        Case("ablate-values", "commands", "ablate --vary epochs=a,b",
             ["ablate", "--model", "baseline", "--vary", "epochs=a,b", "--out", "{case}/a"]),
        Case("ablate-noequals", "commands", "ablate --vary epochs",
             ["ablate", "--model", "baseline", "--vary", "epochs", "--out", "{case}/a"]),
        Case("lrfind-start-0", "commands", "lr-find --start 0",
             ["lr-find", "--start", "0", "--data", "{ws}/data", "--out", "{case}/lr"]),
        Case("lrfind-end-lt-start", "commands", "lr-find --end below --start",
             ["lr-find", "--start", "1", "--end", "1e-9", "--data", "{ws}/data", "--out", "{case}/lr"]),
        Case("lrfind-steps-0", "commands", "lr-find --steps 0",
             ["lr-find", "--steps", "0", "--data", "{ws}/data", "--out", "{case}/lr"]),
        Case("serve-port-neg", "commands", "serve --port -1", ["serve", run, "--port", "-1"]),
        Case("serve-port-big", "commands", "serve --port 70000", ["serve", run, "--port", "70000"]),
        Case("serve-upload-0", "commands", "serve --max-upload-mb 0", ["serve", run, "--max-upload-mb", "0"]),
        Case("serve-missing", "commands", "serve a missing run", ["serve", "{case}/nope"], mention="nope"),
        Case("models-nomatch", "commands", "models with a pattern matching nothing", ["models", "nosuch*"],
             expect="clean"),
        Case("preview-augment", "commands", "augment-preview --augment nosuch",
             ["augment-preview", "--augment", "nosuch", "--out", "{case}/p.png"]),
        Case("preview-n-0", "commands", "augment-preview --n 0",
             ["augment-preview", "--augment", "keras", "--data", "{ws}/data", "--n", "0", "--out", "{case}/p.png"]),
        Case("preview-scale-0", "commands", "augment-preview --scale 0",
             ["augment-preview", "--augment", "keras", "--data", "{ws}/data", "--scale", "0", "--out",
              "{case}/p.png"]),
        Case("probe-notrun", "commands", "probe a folder that is not a run", ["probe", "{ws}/data"], mention="data"),
        Case("probe-epochs-0", "commands", "probe --probe-epochs 0", ["probe", run, "--probe-epochs", "0"]),
        Case("export-format", "commands", "export --format tflite", ["export", run, "--format", "tflite",
                                                                     "--out", "{case}/m.x"]),
        Case("export-opset", "commands", "export --opset 1", ["export", run, "--opset", "1", "--out", "{case}/m.onnx"]),
        Case("predict-onnx-missing", "commands", "predict --onnx of a missing file",
             ["predict", "--onnx", "{case}/nope.onnx", "{ws}/cat.png"], mention="nope.onnx"),
    ]
    return cases


PAYLOAD_COMMANDS = {
    "resume": ["train", "--resume", "{case}/run", "--epochs", "2", "--quiet"],
    "evaluate": ["evaluate", "{case}/run"],
    "predict": ["predict", "{case}/run", "{ws}/cat.png"],
    "analyze": ["analyze", "{case}/run", "--robustness-images", "0", "--out", "{case}/x"],
    "explain": ["explain", "{case}/run", "--image", "{ws}/cat.png", "--out", "{case}/x"],
    "features": ["features", "{case}/run", "--image", "{ws}/cat.png", "--out", "{case}/x"],
    "embed": ["embed", "{case}/run", "--out", "{case}/x"],
    "report": ["report", "{case}/run"],
    "export": ["export", "{case}/run", "--out", "{case}/m.onnx"],
    "probe": ["probe", "{case}/run", "--probe-epochs", "1", "--data", "{ws}/data", "--val-size", "6"],
    "init-from": train_argv("--init-from", "{case}/run"),
    "init-from-file": train_argv("--init-from", "{case}/run/checkpoints/epoch_001/state.pt"),
    "weights": train_argv("--model", "tv:resnet18", "--pretrained", "imagenet", "--weights",
                          "{case}/run/checkpoints/epoch_001/state.pt"),
}


def payload_cases() -> list[Case]:
    def plant(ws, case):
        run = copy_run(ws, case)
        marker = case / MARKER
        for ckpt in (run / "checkpoints").glob("epoch_*"):
            write_payload(ckpt / "state.pt", marker)  # the old file name
            for f in ckpt.iterdir():
                if f.suffix in (".pt", ".pth", ".pkl", ".bin") and f.name != "state.pt":
                    write_payload(f, marker)
        for name in ("model.pt", "state.pt", "model.pth"):
            write_payload(run / name, marker)
    return [Case(f"payload-{name}", "untrusted", f"a pickle payload in the run directory, then {argv[0]}"
                 f"{' ' + argv[1] if argv[1].startswith('--') else ''}", argv, expect="no-exec", setup=plant)
            for name, argv in PAYLOAD_COMMANDS.items()]


# --------------------------------------------------------------------------------------------- scenarios
def two_writers(ws: Path, case: Path) -> tuple[bool, str]:
    """Two `train` on one --out started together: one must refuse, the run must be one run's alone."""
    argv = [a.format(ws=ws, case=case) for a in train_argv(out="{case}/out")]
    argv[argv.index("--epochs") + 1] = "3"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([PY, "-m", "cifarlab", *argv], cwd=case, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env) for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    codes = sorted(p.returncode for p in procs)
    errors = [e for _, e in outs if e.strip()]
    ok = codes == [0, 2] and any("pid" in e or "already" in e for e in errors) and not any("Traceback" in e
                                                                                          for _, e in outs)
    if ok:
        info = json.loads((case / "out/config.json").read_text())
        lines = (case / "out/metrics.jsonl").read_text().splitlines()
        ok = len(lines) == 3 and info["config"]["epochs"] == 3
    return ok, f"exit codes {codes}; " + (errors[0].strip().splitlines()[-1][:120] if errors else "no error line")


def overwrite_while_training(ws: Path, case: Path) -> tuple[bool, str]:
    """--overwrite, --resume and report of a run another process is training: refused with the holder's pid,
    the first run untouched (it trains for long enough, then is stopped)."""
    base = [a.format(ws=ws, case=case) for a in train_argv(out="{case}/out")]
    first = list(base)
    first[first.index("--epochs") + 1] = "100000"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    p1 = subprocess.Popen([PY, "-m", "cifarlab", *first], cwd=case, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, env=env, start_new_session=True)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not (case / "out/metrics.jsonl").exists():
            time.sleep(0.2)
        others = [base + ["--overwrite"], ["train", "--resume", str(case / "out"), "--quiet"],
                  ["report", str(case / "out")]]
        results = [subprocess.run([PY, "-m", "cifarlab", *argv], cwd=case, capture_output=True, text=True,
                                  env=env, timeout=600) for argv in others]
        still_running = p1.poll() is None
    finally:
        os.killpg(p1.pid, signal.SIGKILL)
        p1.wait()
    refused = [r.returncode == 2 and f"pid {p1.pid}" in r.stderr and "Traceback" not in r.stderr for r in results]
    info = json.loads((case / "out/config.json").read_text())
    ok = still_running and all(refused) and info["config"]["epochs"] == 100000
    return ok, (f"first run still training: {still_running}; overwrite, resume, report refused with its pid: "
                f"{refused}; " + (results[0].stderr.strip().splitlines() or [""])[-1][:100])


def kill_and_resume(ws: Path, case: Path) -> tuple[bool, str]:
    """kill -9 in the middle of training, then --resume: the same final weights as an uninterrupted run."""
    from safetensors.numpy import load_file

    def argv(out: str, epochs: str) -> list[str]:
        a = [x.format(ws=ws, case=case) for x in train_argv(out=out)]
        a[a.index("--epochs") + 1] = epochs
        return a

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    full = subprocess.run([PY, "-m", "cifarlab", *argv(str(case / "full"), "4")], cwd=case, capture_output=True,
                          text=True, env=env, timeout=600)
    p = subprocess.Popen([PY, "-m", "cifarlab", *argv(str(case / "cut"), "4")], cwd=case, env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline:
        metrics = case / "cut/metrics.jsonl"
        if metrics.exists() and len(metrics.read_text().splitlines()) >= 2:
            break
        time.sleep(0.05)
    os.killpg(p.pid, signal.SIGKILL)
    p.wait()
    resumed = subprocess.run([PY, "-m", "cifarlab", "train", "--resume", str(case / "cut"), "--quiet"], cwd=case,
                             capture_output=True, text=True, env=env, timeout=600)
    if full.returncode or resumed.returncode:
        return False, f"exit codes full {full.returncode}, resume {resumed.returncode}: {resumed.stderr[-200:]}"
    a, b = load_file(str(case / "full/model.safetensors")), load_file(str(case / "cut/model.safetensors"))
    same = a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    leftovers = [str(x) for x in case.rglob("*.tmp")]
    return same and not leftovers, f"weights identical: {same}; temporary files left: {len(leftovers)}"


def _suite(command: list[str], parse: Callable[[str], tuple[bool, str]], timeout: float = 1800):
    """A scenario that runs one of the project's own checks (pytest selections, the serve load test)."""
    def run(ws: Path, case: Path) -> tuple[bool, str]:
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
        proc = subprocess.run([PY, *command], cwd=REPO, capture_output=True, text=True, env=env, timeout=timeout,
                              stdin=subprocess.DEVNULL)
        ok, summary = parse(proc.stdout + proc.stderr)
        return ok and proc.returncode == 0, f"exit {proc.returncode}: {summary}"
    run.__name__ = "python " + shlex.join(command)
    return run


def _pytest_summary(out: str) -> tuple[bool, str]:
    lines = [line.strip("= ") for line in out.splitlines() if " passed" in line or " failed" in line]
    last = lines[-1] if lines else "no pytest summary"
    return " failed" not in last and " passed" in last, last


def _load_summary(out: str) -> tuple[bool, str]:
    lines = [line.strip() for line in out.splitlines() if line.startswith(("server RSS", "FAIL"))
             or " requests, " in line]
    return bool(lines) and not any(line.startswith("FAIL") for line in lines), "; ".join(lines)[:300]


def pytest_case(id_: str, group: str, what: str, selection: list[str]) -> Case:
    return Case(id_, group, what, expect="scenario",
                scenario=_suite(["-m", "pytest", "-q", "-p", "no:cacheprovider", *selection], _pytest_summary))


def _image_modes():
    """tests/image_modes_helper.py: image files of each mode, with the 8-bit picture a viewer shows."""
    sys.path.insert(0, str(REPO / "tests"))
    import image_modes_helper

    return image_modes_helper


def same_as_8bit_view(mode: str) -> Callable[[Path, Path], tuple[bool, str]]:
    """`cifarlab predict` on an image of `mode` and on its 8-bit picture: the same classes and probabilities."""
    def check(ws: Path, case: Path) -> tuple[bool, str]:
        path, view = _image_modes().mode_images(case)[mode]
        Image.fromarray(view).save(case / "view.png")
        proc = cifarlab(["predict", str(ws / "run"), str(path), str(case / "view.png"), "--json"], cwd=case)
        if proc.returncode or "Traceback" in proc.stderr:
            return False, f"exit {proc.returncode}: {(proc.stderr.strip().splitlines() or [''])[-1][:140]}"
        got, want = (r["predictions"] for r in json.loads(proc.stdout))
        same = [p["class"] for p in got] == [p["class"] for p in want] and all(
            abs(a["probability"] - b["probability"]) <= 1e-6 for a, b in zip(got, want))
        return same, (f"exit 0: {got[0]['class']} {got[0]['probability']:.3f}; its 8-bit picture: "
                      f"{want[0]['class']} {want[0]['probability']:.3f}")
    check.__name__ = f"cifarlab predict $WS/run <{mode} file> <its 8-bit picture>.png --json"
    return check


def intake_cases() -> list[Case]:
    shown = "the classes of the picture a viewer shows"
    modes = {"I;16 PNG": f"a 16-bit grey PNG: {shown}, not of pure white",
             "I;16 TIFF": f"a 16-bit grey TIFF: {shown}, not of pure white",
             "I TIFF": f"a 32-bit integer TIFF: {shown} (its range stretched), not of black and white",
             "F TIFF": f"a 32-bit float TIFF with a NaN pixel: {shown} (its range stretched), not of pure black",
             "EXIF 6 JPEG": f"a JPEG stored sideways, EXIF orientation 6: {shown}, turned upright",
             "EXIF 8 JPEG": f"a JPEG stored sideways, EXIF orientation 8: {shown}, turned upright"}
    cases = [Case("intake-" + mode.lower().replace(";", "").replace(" ", "-"), "intake", f"predict on {what}",
                  expect="scenario", scenario=same_as_8bit_view(mode)) for mode, what in modes.items()]

    def write_blanks(ws: Path, case: Path) -> None:
        _image_modes().blank_images(case)

    blanks = {"constant.tif": "a 32-bit integer TIFF of one value", "constant_f.tif": "a 32-bit float TIFF of one "
              "value", "nan.tif": "a 32-bit float TIFF of NaN only"}
    cases += [Case(f"intake-{file.removesuffix('.tif').replace('_', '-')}", "intake",
                   f"predict on {what}: nothing to show, refused", ["predict", "{ws}/run", f"{{case}}/{file}"],
                   mention=f"{{case}}/{file}", setup=write_blanks) for file, what in blanks.items()]
    return cases


def link_cases() -> list[Case]:
    """Symbolic links, devices, FIFOs and foreign folders where cifarlab reads or writes: a run directory's links
    to files elsewhere are never embedded nor written through, a loop in a data tree is one line, a JSON file on
    /dev/zero or a FIFO is refused after a bounded read, --overwrite spares folders cifarlab did not make, and
    --out on a device or a FIFO is refused and left as it is."""
    secret = b"\x89PNG\r\n\x1a\n" + b"SECRET bytes from outside the run " * 20

    def outside(case: Path, name: str) -> Path:
        path = case / "elsewhere" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(secret)
        return path

    def linked_run(*names: str) -> Callable[[Path, Path], None]:
        """A copy of the run whose `names` (made if missing) are links to files outside it."""
        def setup(ws: Path, case: Path) -> None:
            run = copy_run(ws, case)
            for name in names:
                at = run / name
                at.parent.mkdir(parents=True, exist_ok=True)
                at.unlink(missing_ok=True)
                at.symlink_to(outside(case, name.replace("/", "_")))
        return setup

    def linked_dir(ws: Path, case: Path) -> None:
        run = copy_run(ws, case)
        outside(case, "confusion_matrix.png")
        (run / "analysis").symlink_to(case / "elsewhere", target_is_directory=True)

    def fifo(ws: Path, case: Path) -> None:
        os.mkfifo(case / "pipe")

    def fifo_summary(ws: Path, case: Path) -> None:
        run = copy_run(ws, case)
        (run / "summary.json").unlink()
        os.mkfifo(run / "summary.json")

    def data_loop(rel: str, target: str) -> Callable[[Path, Path], None]:
        def setup(ws: Path, case: Path) -> None:
            (copy_data(ws, case) / rel).symlink_to(target)
        return setup

    def user_folder(ws: Path, case: Path) -> None:
        mine = case / "mine"
        (mine / "sub").mkdir(parents=True)
        shutil.copy(ws / "run" / "config.json", mine / "config.json")  # even a genuine run config.json
        (mine / "weights.bin").write_bytes(b"precious weights")
        (mine / "sub" / "notes.txt").write_text("keep me\n")

    def run_with_notes(ws: Path, case: Path) -> None:
        (copy_run(ws, case) / "my_notes.txt").write_text("keep me\n")

    def limit_memory() -> None:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (6 * 2**30, 6 * 2**30))  # an unbounded read dies, the machine lives

    def cli(argv: list[str], case: Path, bounded: bool = False) -> tuple[int | None, str]:
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        try:
            p = subprocess.run([PY, "-m", "cifarlab", *map(str, argv)], cwd=case, capture_output=True, text=True,
                               env=env, timeout=300, stdin=subprocess.DEVNULL,
                               preexec_fn=limit_memory if bounded else None)
        except subprocess.TimeoutExpired:
            return None, "timed out"
        return p.returncode, p.stderr

    def refused(rc: int | None, stderr: str, *names: str) -> bool:
        lines = error_lines(stderr)
        return rc == 2 and len(lines) == 1 and "Traceback" not in stderr and all(n in lines[0] for n in names)

    def last_line(stderr: str) -> str:
        return (error_lines(stderr) or stderr.strip().splitlines() or [""])[-1][:120]

    def report_embeds_nothing(ws: Path, case: Path) -> tuple[bool, str]:
        rc, err = cli(["report", case / "run"], case)
        html = (case / "run" / "report.html").read_text() if rc == 0 else ""
        embedded = __import__("base64").b64encode(secret).decode() in html
        warned = sum("left out of the report" in line for line in err.splitlines())
        return rc == 0 and not embedded and warned == 3, (f"exit {rc}; outside bytes embedded: {embedded}; "
                                                          f"warnings: {warned} of 3")

    def writers_replace_links(ws: Path, case: Path) -> tuple[bool, str]:
        run = case / "run"
        steps = [["analyze", run, "--robustness-images", "0"], ["features", run, "--image", ws / "cat.png"],
                 ["embed", run, "--samples", "30"]]
        codes = [cli(argv, case)[0] for argv in steps]
        targets = sorted((case / "elsewhere").iterdir())
        intact = all(t.read_bytes() == secret for t in targets)
        still_links = [p.name for p in run.rglob("*") if p.is_symlink()]
        return codes == [0, 0, 0] and intact and len(targets) == 4 and not still_links, (
            f"exit codes {codes}; {len(targets)} outside targets intact: {intact}; links left: {still_links}")

    def dev_zero_reads(ws: Path, case: Path) -> tuple[bool, str]:
        results = {}
        for name, argv in (("summary.json", ["report"]), ("config.json", ["evaluate"]),
                           ("metrics.jsonl", ["report"])):
            run = copy_run(ws, case, f"run-{name}")
            (run / name).unlink()
            (run / name).symlink_to("/dev/zero")
            results[name] = refused(*cli([*argv, run], case, bounded=True), name)
        rc, err = cli(["train", "--config", "/dev/zero", "--out", case / "out"], case, bounded=True)
        results["--config"] = refused(rc, err, "/dev/zero") and not (case / "out").exists()
        return all(results.values()), "refused with one line: " + ", ".join(f"{k} {v}" for k, v in results.items())

    def overwrite_keeps_user_files(ws: Path, case: Path) -> tuple[bool, str]:
        mine = case / "mine"
        before = {p: p.read_bytes() for p in mine.rglob("*") if p.is_file()}
        rc, err = cli([a.format(ws=ws, case=case) for a in train_argv("--overwrite", out="{case}/mine")], case)
        after = {p: p.read_bytes() for p in mine.rglob("*") if p.is_file()}
        return refused(rc, err, str(mine)) and after == before, f"exit {rc}; files intact: {after == before}; " \
                                                                 + last_line(err)

    def study_db_link_refused(ws: Path, case: Path) -> tuple[bool, str]:
        (case / "t").mkdir()
        outside = case / "elsewhere.db"
        outside.write_bytes(b"a file of the user's\n")
        (case / "t" / "study.db").symlink_to(outside)
        rc, err = cli([a.format(ws=ws, case=case) for a in tune_argv()], case)
        intact = outside.read_bytes() == b"a file of the user's\n"
        return refused(rc, err, str(case / "t" / "study.db")) and intact, \
            f"exit {rc}; file intact: {intact}; " + last_line(err)

    def dev_null_stays(ws: Path, case: Path) -> tuple[bool, str]:
        import stat

        own = case / "null"
        try:  # first a device of the case's own: a broken refusal fails here, before /dev/null is at stake
            os.mknod(own, stat.S_IFCHR | 0o666, os.makedev(1, 3))
        except OSError:
            os.mkfifo(own)
        commands = {"export": ["export", ws / "run", "--out"], "report": ["report", ws / "run", "--out"],
                    "augment-preview": ["augment-preview", "--augment", "keras", "--data", ws / "data", "--out"]}
        results = {}
        for name, argv in commands.items():
            ok = refused(*cli([*argv, own], case), str(own)) and not stat.S_ISREG(os.lstat(own).st_mode)
            if ok:
                rc, err = cli([*argv, "/dev/null"], case)
                ok = refused(rc, err, "/dev/null") and stat.S_ISCHR(os.lstat("/dev/null").st_mode)
            results[name] = ok
        return all(results.values()), "refused, /dev/null still a device: " + ", ".join(
            f"{k} {v}" for k, v in results.items())

    run = "{case}/run"
    loop_argv = [a.replace("{ws}/data", "{case}/data") for a in train_argv(out="{case}/out")]
    return [
        Case("links-report-embed", "links", "report of a run whose features/, embed/ and explain/ PNGs link to a "
             "file outside it: the file's bytes are not embedded, one warning each", expect="scenario",
             setup=linked_run("features/a.png", "embed/b.png", "explain/c.png"), scenario=report_embeds_nothing),
        Case("links-writers", "links", "analyze, features and embed of a run whose confusion_matrix.png, "
             "predictions.npz, first_layer_filters.png and embed_pca.png link outside it: the links are replaced, "
             "their targets untouched", expect="scenario",
             setup=linked_run("analysis/confusion_matrix.png", "analysis/predictions.npz",
                              "features/first_layer_filters.png", "embed/embed_pca.png"),
             scenario=writers_replace_links),
        Case("links-outdir-outside", "links", "analyze a run whose analysis/ is a link to a folder outside it",
             ["analyze", run, "--robustness-images", "0"], setup=linked_dir, mention=f"{run}/analysis"),
        Case("links-weights-outside", "links", "evaluate a run whose model.safetensors links outside it",
             ["evaluate", run], setup=linked_run("model.safetensors"), mention="model.safetensors"),
        Case("links-summary-outside", "links", "report of a run whose summary.json links outside it",
             ["report", run], setup=linked_run("summary.json"), mention="summary.json"),
        Case("links-lock-link", "links", "report of a run whose .cifarlab.lock links to a file elsewhere",
             ["report", run], setup=linked_run(".cifarlab.lock"), mention=".cifarlab.lock"),
        Case("links-summary-fifo", "links", "report of a run whose summary.json is a FIFO (no writer)",
             ["report", run], setup=fifo_summary, mention="summary.json"),
        Case("links-dev-zero", "links", "summary.json, config.json, metrics.jsonl linked to /dev/zero and "
             "--config /dev/zero (memory-limited child): refused after a bounded read", expect="scenario",
             scenario=dev_zero_reads),
        Case("links-data-loop-class", "links", "a class folder of the data tree that links to itself",
             loop_argv, setup=data_loop("train/loop", "loop"),
             mention="{case}/data/train/loop", absent=["{case}/out"]),
        Case("links-data-loop-image", "links", "an image of the data tree that links to itself",
             loop_argv, setup=data_loop("train/cat/loop.png", "loop.png"),
             mention="{case}/data/train/cat/loop.png", absent=["{case}/out"]),
        Case("links-overwrite-user-folder", "links", "train --overwrite a folder of one's own files that holds a "
             "cifarlab config.json: refused, every file intact", expect="scenario", setup=user_folder,
             scenario=overwrite_keeps_user_files),
        Case("links-overwrite-run-plus-notes", "links", "train --overwrite a run that also holds a file of the "
             "user's", train_argv("--overwrite", out=run), setup=run_with_notes, mention="my_notes.txt"),
        *[Case(f"links-out-fifo-{name}", "links", f"{name} --out a FIFO", [*argv, "{case}/pipe"], setup=fifo,
               mention="{case}/pipe") for name, argv in (
            ("export", ["export", "{ws}/run", "--out"]), ("report", ["report", "{ws}/run", "--out"]),
            ("augment-preview", ["augment-preview", "--augment", "keras", "--data", "{ws}/data", "--out"]))],
        Case("links-study-db", "links", "tune --out a folder whose study.db links to a file elsewhere: refused, "
             "the file intact", expect="scenario", scenario=study_db_link_refused),
        Case("links-out-dev-null", "links", "export, report and augment-preview --out /dev/null (after the same "
             "on a device of the case's own): refused, /dev/null still a character device", expect="scenario",
             scenario=dev_null_stays),
    ]


def nested_space(depth: int, block: bool) -> str:
    return ("lr:\n" + "- " * depth + "x\n") if block else ("lr: " + "[" * depth + "]" * depth + "\n")


def laughing_space(levels: int = 9) -> str:
    """A "billion laughs" under the alias cap: 9 levels of 9 aliases, 9**9 strings once copied out."""
    lines = ["l0: &l0 [ha, ha, ha, ha, ha, ha, ha, ha, ha]"]
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, levels)]
    return "\n".join(lines) + f"\nlr: {{type: categorical, choices: *l{levels - 1}}}\n"


STUDY_DAMAGE = {  # what, and the SQL on a study's storage that makes it: a damaged or foreign storage
    "index": ("a categorical index past its choices",
              "UPDATE trial_params SET param_value = 99 WHERE param_name = 'batch_size'"),
    "distribution": ("an unknown distribution", "UPDATE trial_params SET distribution_json = "
                     "'{\"name\": \"NormalDistribution\", \"attributes\": {}}' WHERE param_name = 'lr'"),
    "base-config": ("fixed settings that are not a mapping",
                    "UPDATE study_user_attributes SET value_json = '[1, 2]' WHERE key = 'base_config'"),
}


def write_study(ws: Path, case: Path, damage: str) -> None:
    """A tune study (case/study/study.db) with one complete trial, made without training, then damaged."""
    import sqlite3

    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    from cifarlab.config import TrainConfig

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    (case / "study").mkdir()
    study = optuna.create_study(storage=f"sqlite:///{case / 'study' / 'study.db'}", study_name="cifarlab-baseline",
                                direction="maximize")
    study.set_user_attr("base_config", TrainConfig(data=str(ws / "data"), epochs=1, val_size=6, precision="fp32",
                                                   evaluate_test=False).to_dict())
    study.add_trial(optuna.trial.create_trial(
        params={"lr": 0.01, "batch_size": 16}, value=0.5,
        distributions={"lr": FloatDistribution(1e-4, 1e-1, log=True), "batch_size": CategoricalDistribution([16, 32])}))
    db = sqlite3.connect(case / "study" / "study.db")
    try:
        db.execute(STUDY_DAMAGE[damage][1])
        db.commit()
    finally:
        db.close()


def non_finite_run(value: float) -> Callable[[Path, Path], None]:
    def setup(ws: Path, case: Path) -> None:
        from safetensors import safe_open
        from safetensors.numpy import load_file, save_file

        run = copy_run(ws, case)
        with safe_open(str(run / "model.safetensors"), "np") as f:
            metadata = f.metadata()
        weights = {k: np.full_like(v, value) for k, v in load_file(str(run / "model.safetensors")).items()}
        save_file(weights, str(run / "model.safetensors"), metadata=metadata)
    return setup


def relative_data_run(data: str) -> Callable[[Path, Path], None]:
    """The workspace's run in case/proj/run as a run from before absolute data paths: its config names its
    data by a relative path and records no working directory; the workspace's data in case/proj/data."""
    def setup(ws: Path, case: Path) -> None:
        (case / "proj").mkdir()
        run = copy_run(ws, case / "proj")
        shutil.copytree(ws / "data", case / "proj" / "data")
        info = json.loads((run / "config.json").read_text())
        info["config"]["data"] = data
        info.pop("cwd", None)
        (run / "config.json").write_text(json.dumps(info))
    return setup


def tune_argv(*extra: str, out: str = "{case}/t") -> list[str]:
    return ["tune", "--model", "baseline", "--trials", "1", "--data", "{ws}/data", "--val-size", "6", "--epochs", "1",
            "--precision", "fp32", "--out", out, *extra]


def input_cases() -> list[Case]:
    """Inputs no flag check sees: hostile tune space files, tampered tune studies, weights that are NaN or
    infinite, an older run whose data path is relative, a --resume asking for other threads."""
    spaces = {"latin1": ("lr: {type: float, low: 0.001, high: 0.1}\n# caf\xe9\n".encode("latin-1"),
                         "a space file in Latin-1 (not UTF-8)"),
              "deep": (nested_space(20_000, block=False).encode(), "a space file nested 20,000 deep ([[[...]]])"),
              "deep-block": (nested_space(20_000, block=True).encode(), "a space file nested 20,000 deep (- - -)"),
              "laughs": (laughing_space().encode(), "a space file whose 81 aliases expand to 9**9 strings")}
    cases = []
    for name, (content, what) in spaces.items():
        def write_space(ws, case, content=content):
            (case / "space.yaml").write_bytes(content)
        cases.append(Case(f"inputs-space-{name}", "inputs", f"tune --space with {what}",
                          tune_argv("--space", "{case}/space.yaml"), mention="{case}/space.yaml", setup=write_space,
                          absent=["{case}/t"]))
    for damage, (what, _) in STUDY_DAMAGE.items():
        cases.append(Case(f"inputs-study-{damage}", "inputs", f"train --from-study of a study with {what}",
                          ["train", "--from-study", "{case}/study", "--out", "{case}/out"],
                          mention="study cifarlab-baseline", setup=lambda ws, c, d=damage: write_study(ws, c, d),
                          absent=["{case}/out"]))
    cases.append(Case("inputs-study-tune-again", "inputs", "tune again on a study with a categorical index past its "
                      "choices", tune_argv("--trials", "2", out="{case}/study"), mention="study cifarlab-baseline",
                      setup=lambda ws, c: write_study(ws, c, "index")))
    weights = "{case}/run/model.safetensors"
    for command, argv in (("evaluate", ["evaluate", "{case}/run"]),
                          ("predict", ["predict", "{case}/run", "{ws}/cat.png"]),
                          ("export", ["export", "{case}/run", "--out", "{case}/model.onnx"]),
                          ("serve", ["serve", "{case}/run", "--port", "47815"])):
        cases.append(Case(f"inputs-nan-weights-{command}", "inputs", f"{command} a run whose weights are all NaN",
                          argv, mention=weights, setup=non_finite_run(float("nan")), absent=["{case}/model.onnx"]))
    cases += [
        Case("inputs-inf-weights-evaluate", "inputs", "evaluate a run whose weights are all infinite",
             ["evaluate", "{case}/run"], mention=weights, setup=non_finite_run(float("inf"))),
        Case("inputs-relative-data-old-run", "inputs", "evaluate, from another directory, an older run whose config "
             "names its data relatively (found beside the run)", ["evaluate", "{case}/proj/run"], expect="ok",
             setup=relative_data_run("data")),
        Case("inputs-relative-data-lost", "inputs", "evaluate an older run whose relative data path is found nowhere",
             ["evaluate", "{case}/proj/run"], mention="{case}/proj/run/config.json",
             setup=relative_data_run("moved-away")),
        Case("inputs-resume-other-threads", "inputs", "train --resume with another --threads than the run recorded",
             ["train", "--resume", "{case}/run", "--epochs", "2", "--threads", "2"], mention="--threads",
             setup=lambda ws, c: copy_run(ws, c)),
    ]
    return cases


def sigterm_and_resume(ws: Path, case: Path) -> tuple[bool, str]:
    """SIGTERM in the middle of a --threads 1 run, then a plain --resume where the default would be every core:
    the interrupt message, the lock released, the resume on 1 thread, the same final weights as an
    uninterrupted run."""
    from safetensors.numpy import load_file

    def argv(out: str, *extra: str) -> list[str]:
        a = [x.format(ws=ws, case=case) for x in train_argv(out=out)]
        a[a.index("--epochs") + 1] = "6"
        return [x for x in a if x != "--quiet"] + ["--threads", "1", *extra]

    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}  # what a shell gives: no fixed count
    env["PYTHONUNBUFFERED"] = "1"
    full = subprocess.run([PY, "-m", "cifarlab", *argv(str(case / "full"), "--quiet")], cwd=case,
                          capture_output=True, text=True, env=env, timeout=600)
    with open(case / "stdout.txt", "w") as out, open(case / "stderr.txt", "w") as err:
        p = subprocess.Popen([PY, "-m", "cifarlab", *argv(str(case / "cut"))], cwd=case, env=env, stdout=out,
                             stderr=err)
        deadline = time.time() + 300
        metrics = case / "cut/metrics.jsonl"
        while time.time() < deadline and p.poll() is None:
            if metrics.exists() and len(metrics.read_text().splitlines()) >= 2:
                break
            time.sleep(0.05)
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=120)
    said = (case / "stdout.txt").read_text()
    told = (case / "stderr.txt").read_text()
    interrupted = (p.returncode == 128 + signal.SIGTERM and f"continue with: cifarlab train --resume {case / 'cut'}"
                   in said and "cifarlab: interrupted (SIGTERM)" in told and "Traceback" not in told)
    unlocked = not (case / "cut/.cifarlab.lock").exists()
    resumed = subprocess.run([PY, "-m", "cifarlab", "train", "--resume", str(case / "cut"), "--quiet"], cwd=case,
                             capture_output=True, text=True, env=env, timeout=600)
    if full.returncode or resumed.returncode:
        return False, f"exit codes full {full.returncode}, resume {resumed.returncode}: {resumed.stderr[-200:]}"
    threads = json.loads((case / "cut/summary.json").read_text())["versions"].get("threads", "")
    a, b = load_file(str(case / "full/model.safetensors")), load_file(str(case / "cut/model.safetensors"))
    same = a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    ok = interrupted and unlocked and threads.startswith("1: ") and same
    return ok, (f"exit {p.returncode}, interrupt message and resume hint: {interrupted}; lock released: {unlocked}; "
                f"resumed with threads {threads!r}; weights identical: {same}")


def scenario_cases() -> list[Case]:
    return [
        pytest_case("faults-checkpoint-writes", "faults injected",
                    "each file of a checkpoint, the metrics line, the final weights and the summary fail to write in "
                    "turn (ENOSPC, EIO), and the final rename: one line, no temporary file, previous checkpoint "
                    "intact, resume ends bit for bit as an uninterrupted run",
                    ["tests/test_rundir_safety.py", "-k", "failed_write or disk_full or failed_rename or kill_9"]),
        pytest_case("untrusted-every-reader", "untrusted",
                    "pickle payloads in state.pt, every .safetensors, --init-from and --weights files, caches and "
                    "predictions.npz, then every command that reads a run: the payload never runs",
                    ["tests/test_rundir_safety.py", "-k", "poisoned or pickled or legacy or payload"]),
        pytest_case("hypothesis-config-and-flags", "generated inputs",
                    "Hypothesis: generated YAML configs, Python-API configs and flag values of every subcommand "
                    "either work or exit 2 with one line",
                    ["tests/test_config_safety.py", "-k", "generated"]),
        pytest_case("hypothesis-uploads", "generated inputs",
                    "Hypothesis: generated uploads, form fields, file names and seeds never get a 5xx from serve",
                    ["tests/test_input_safety.py", "-k", "generated"]),
        pytest_case("archive-bitflips-300", "archive",
                    "300 single-bit flips of small archives (150 held to the md5, 150 to the gzip CRC): none loads "
                    "altered pixels",
                    ["tests/test_archive.py", "-k", "flip"]),
        Case("load-serve", "load", "a bounded load test of serve on 127.0.0.1: 12 stalled uploads (more than the 8 "
             "body slots) and 4 more holding a slot each, beside valid uploads and GETs, answered within 5 s while "
             "the stalled get a 408 within the 10 s body limit; then 300 requests of 22 kinds, 20 at a time, a "
             "chunked 30 MB body, two bursts of 20 simultaneous 4096x4096 uploads: no 5xx, RSS back within 150 MB",
             expect="scenario", scenario=_suite(["benchmarks/load_serve.py"], _load_summary)),
        Case("two-writers", "concurrency", "two `train` on one --out started together", expect="scenario",
             scenario=two_writers),
        Case("overwrite-while-training", "concurrency", "--overwrite a run another process is training",
             expect="scenario", scenario=overwrite_while_training),
        Case("kill9-resume", "kill -9", "kill -9 after epoch 2 of 4, then --resume", expect="scenario",
             scenario=kill_and_resume),
        Case("sigterm-resume", "sigterm", "SIGTERM after epoch 2 of 6 of a --threads 1 run, then a plain --resume",
             expect="scenario", scenario=sigterm_and_resume),
    ]


def write_other_classes(ws: Path, case: Path) -> None:
    sys.path.insert(0, str(REPO / "tests"))
    from conftest import write_image_tree

    write_image_tree(case / "other", n_train=4, n_test=2, classes=["a", "b", "c"])


def label_cases() -> list[Case]:
    """The label check and acting on it: arguments that cannot work, data that does not match the run, an
    analysis that is missing or is not a label check."""
    run = "{ws}/run"
    analyze = ["analyze", run, "--label-check", "--robustness-images", "0", "--out", "{case}/x"]
    return [
        Case("label-folds-too-many", "label check", "analyze --label-check-folds 50 (20 images per class)",
             [*analyze, "--label-check-folds", "50"], mention="at least 50 training images of every class",
             absent=["{case}/x"]),
        Case("label-model-unknown", "label check", "analyze --label-check-model nosuch",
             [*analyze, "--label-check-model", "nosuch"], mention="nosuch", absent=["{case}/x"]),
        Case("label-input-size-fast", "label check", "--label-check-input-size with the fast fold model",
             [*analyze, "--label-check-model", "fast", "--label-check-input-size", "64"],
             mention="--label-check-input-size", absent=["{case}/x"]),
        Case("label-epochs-features", "label check", "--label-check-epochs with the features fold model",
             [*analyze, "--label-check-epochs", "2"], mention="--label-check-epochs", absent=["{case}/x"]),
        Case("label-other-classes", "label check", "analyze --label-check --data of a tree with other classes",
             [*analyze, "--data", "{case}/other"], mention="differ from the run's", setup=write_other_classes,
             absent=["{case}/x"]),
        Case("label-drop-missing", "label check", "train --drop-label-issues of a missing run",
             train_argv("--drop-label-issues", "{case}/nope"), mention="{case}/nope: no such directory",
             absent=["{case}/out"]),
        Case("label-drop-unanalyzed", "label check", "train --drop-label-issues of a run never analyzed",
             train_argv("--drop-label-issues", "{case}/run"), mention="no analysis.json",
             setup=lambda ws, c: copy_run(ws, c), absent=["{case}/out"]),
        Case("label-action-alone", "label check", "train --label-issues-action relabel without a run to act on",
             train_argv("--label-issues-action", "relabel"), mention="--label-issues-action",
             absent=["{case}/out"]),
    ]


def all_cases() -> list[Case]:
    return flag_cases() + config_cases() + data_cases() + path_cases() + command_cases() + payload_cases() \
        + intake_cases() + link_cases() + input_cases() + label_cases() + scenario_cases()


# --------------------------------------------------------------------------------------------- running
@dataclass
class Result:
    case: Case
    passed: bool
    observed: str
    seconds: float
    command: str


def _fill(text: str, ws: Path, case: Path) -> str:
    return text.replace("{ws}", str(ws)).replace("{case}", str(case))


def error_lines(stderr: str) -> list[str]:
    """The lines of stderr that are not warnings or progress."""
    return [line for line in stderr.splitlines()
            if line.strip() and not line.startswith("cifarlab: warning:") and "Warning" not in line.split(":")[0]]


def run_case(case: Case, ws: Path, root: Path) -> Result:
    case_dir = root / case.id
    case_dir.mkdir(parents=True)
    start = time.perf_counter()
    if case.setup is not None:
        case.setup(ws, case_dir)
    if case.expect == "scenario":
        try:
            passed, observed = case.scenario(ws, case_dir)
        except Exception as e:  # a scenario that breaks is a failed case, not a broken table
            passed, observed = False, f"{type(e).__name__}: {e}"
        name = case.scenario.__name__
        command = name if name.startswith("python ") else f"(scenario: {name})"
        return Result(case, passed, observed, time.perf_counter() - start, command)
    argv = [_fill(a, ws, case_dir) for a in case.argv]
    try:
        proc = cifarlab(argv, cwd=case_dir, env=case.env)
        rc, stderr = proc.returncode, proc.stderr
    except subprocess.TimeoutExpired:
        rc, stderr = None, "timed out"
    seconds = time.perf_counter() - start
    problems = []
    if "Traceback" in (stderr or ""):
        problems.append("traceback")
    lines = error_lines(stderr or "")
    if case.expect == "error":
        if rc != 2:
            problems.append(f"exit {rc}")
        if len(lines) != 1:
            problems.append(f"{len(lines)} error lines")
        if case.mention and lines and _fill(case.mention, ws, case_dir) not in lines[-1]:
            problems.append(f"does not name {case.mention.replace('{case}/', '').replace('{ws}/', '')}")
    elif case.expect == "ok" and rc != 0 or case.expect == "clean" and rc not in (0, 2):
        problems.append(f"exit {rc}")
    elif case.expect == "no-exec" and (case_dir / MARKER).exists():
        problems.append("PAYLOAD EXECUTED")
    for path in case.absent:
        if Path(_fill(path, ws, case_dir)).exists():
            problems.append(f"left {Path(path).name}")
    leftovers = [p for p in case_dir.rglob("*") if p.name.endswith(".tmp") or p.name.startswith(".epoch_")]
    if leftovers:
        problems.append(f"left {leftovers[0].name}")
    shown = (lines[-1] if lines else (stderr or "").strip().splitlines()[-1:] or [""])
    shown = shown if isinstance(shown, str) else shown[0]
    shown = shown.replace(str(case_dir), "$CASE").replace(str(ws), "$WS")
    observed = f"exit {rc}: {shown[:140]}" + (f" — **{', '.join(problems)}**" if problems else "")
    command = "cifarlab " + shlex.join(a.replace(str(case_dir), "$CASE").replace(str(ws), "$WS") for a in argv)
    return Result(case, not problems, observed, seconds, command)


def markdown(results: list[Result], seconds: float) -> str:
    groups: dict[str, list[Result]] = {}
    for r in results:
        groups.setdefault(r.case.group, []).append(r)
    failed = [r for r in results if not r.passed]
    tracebacks = sum("traceback" in r.observed for r in results)
    executed = sum("PAYLOAD EXECUTED" in r.observed for r in results)
    head = textwrap.dedent(f"""\
        # Reliability

        cifarlab tried as a careless or hostile user would: {len(results)} cases, each a `cifarlab`
        command in a fresh process against a small synthetic workspace. Regenerate this file with

            python benchmarks/reliability.py --out RELIABILITY.md

        ($WS is the workspace the script builds: a 3-class image tree, a trained 1-epoch run, a small archive
        in the official format, a 14000×14000 PNG; $CASE is the case's own folder.) Expected outcomes:
        **error** = exit 2 and exactly one `error:` line naming the problem (and the file, where one is
        involved), no traceback, no temporary file or half-made run directory left; **ok** = exit 0;
        **clean** = exit 0 or 2 with no traceback; **no-exec** = the pickle payload planted in the run
        directory never runs.

        | | count |
        |---|---|
        | cases | {len(results)} |
        | passed | {len(results) - len(failed)} |
        | failed | {len(failed)} |
        | tracebacks | {tracebacks} |
        | payloads executed | {executed} |

        {len(results)} cases ran in {seconds:.0f} s on {os.cpu_count()} CPUs.
        """)
    parts = [head]
    for group, rows in groups.items():
        parts.append(f"\n## {group} ({sum(r.passed for r in rows)}/{len(rows)} passed)\n\n"
                     "| case | what | expected | result | observed | command |\n|---|---|---|---|---|---|\n")
        for r in rows:
            observed = r.observed.replace("|", "\\|")
            command = r.command.replace("|", "\\|")
            parts.append(f"| {r.case.id} | {r.case.what} | {r.case.expect} | {'pass' if r.passed else '**FAIL**'} "
                         f"| {observed} | `{command}` |\n")
    return "".join(parts)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(REPO / "RELIABILITY.md"), help="the markdown table (default RELIABILITY.md)")
    ap.add_argument("--only", help="glob over case ids or groups, e.g. 'archive*' or 'flags'")
    ap.add_argument("--jobs", type=int, default=2, help="cases run at once (default 2)")
    ap.add_argument("--keep", action="store_true", help="keep the workspace and print its path")
    ap.add_argument("--list", action="store_true", help="list the cases and exit")
    args = ap.parse_args()
    cases = all_cases()
    if args.only:
        cases = [c for c in cases if fnmatch.fnmatch(c.id, args.only) or fnmatch.fnmatch(c.group, args.only)]
    if args.list:
        for c in cases:
            print(f"{c.id:28s} {c.group:12s} {c.expect:9s} {c.what}")
        print(f"{len(cases)} cases")
        return 0
    tmp = Path(tempfile.mkdtemp(prefix="cifarlab-reliability-"))
    ws, root = tmp / "ws", tmp / "cases"
    ws.mkdir()
    root.mkdir()
    start = time.perf_counter()
    try:
        build_workspace(ws)
        scenarios = [c for c in cases if c.expect == "scenario"]
        plain = [c for c in cases if c.expect != "scenario"]
        results: dict[str, Result] = {}
        with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
            futures = {pool.submit(run_case, c, ws, root): c for c in plain}
            for n, fut in enumerate(concurrent.futures.as_completed(futures), 1):
                r = fut.result()
                results[r.case.id] = r
                print(f"[{n}/{len(cases)}] {'pass' if r.passed else 'FAIL'} {r.case.id}: {r.observed}", flush=True)
        for c in scenarios:  # alone: they race processes against each other on purpose
            r = run_case(c, ws, root)
            results[c.id] = r
            print(f"[{len(results)}/{len(cases)}] {'pass' if r.passed else 'FAIL'} {c.id}: {r.observed}", flush=True)
        ordered = [results[c.id] for c in cases]
        Path(args.out).write_text(markdown(ordered, time.perf_counter() - start), encoding="utf-8")
        failed = [r for r in ordered if not r.passed]
        print(f"{len(ordered) - len(failed)}/{len(ordered)} passed; table: {args.out}")
        return 1 if failed else 0
    finally:
        if args.keep:
            print(f"workspace kept: {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

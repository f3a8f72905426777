"""Distributed tuning for real: a throwaway PostgreSQL server on localhost (from the system's packages,
which `make test` installs with scripts/install-system-deps.sh) and two `cifarlab tune` workers sharing
one study through it."""
from __future__ import annotations

import glob
import json
import os
import pwd
import re
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import optuna
import pytest

from cifarlab.cli import main

SPACE = {"lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
         "batch_size": {"type": "categorical", "choices": [16, 32]}}
TINY = ["--epochs", "1", "--train-size", "30", "--val-size", "15", "--precision", "fp32", "--pruner", "none"]


def postgres_bin() -> Path | None:
    """The newest server installed by the Debian packages (/usr/lib/postgresql/N/bin), else initdb on PATH."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    initdb = found[-1] if found else shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def postgres_url():
    """postgresql://cifarlab@127.0.0.1:PORT/optuna on a server of its own, removed afterwards."""
    bindir = postgres_bin()
    if bindir is None:
        pytest.skip("PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb, no initdb on PATH); "
                    "scripts/install-system-deps.sh installs it as root or with passwordless sudo")
    pytest.importorskip("psycopg", reason="the psycopg driver is missing: pip install -e '.[postgres]'")
    as_user: list[str] = []
    root = Path(tempfile.mkdtemp(prefix="cifarlab-pg-"))
    if os.geteuid() == 0:  # the server refuses to run as root: run it as the packages' postgres user
        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            shutil.rmtree(root)
            pytest.skip("running as root and there is no 'postgres' user to run the PostgreSQL server as")
        os.chown(root, user.pw_uid, user.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    data, port = root / "data", free_port()

    def run(*cmd: str) -> None:
        proc = subprocess.run([*as_user, *cmd], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, f"{' '.join(cmd)}: {proc.stdout[-2000:]}{proc.stderr[-2000:]}"

    run(str(bindir / "initdb"), "-D", str(data), "-U", "cifarlab", "--auth=trust", "-E", "UTF8")
    run(str(bindir / "pg_ctl"), "-D", str(data), "-l", str(root / "server.log"), "-w", "-t", "60",
        "-o", f"-p {port} -k {root} -h 127.0.0.1", "start")
    try:
        run(str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "cifarlab", "optuna")
        yield f"postgresql://cifarlab@127.0.0.1:{port}/optuna"
    finally:
        subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                       capture_output=True, timeout=60)
        shutil.rmtree(root, ignore_errors=True)


def test_two_workers_share_one_postgresql_study(postgres_url, tiny_tree, tmp_path):
    (tmp_path / "space.yaml").write_text(json.dumps(SPACE))  # JSON is YAML
    cmd = [sys.executable, "-m", "cifarlab", "tune", "--model", "baseline", "--trials", "5", "--data", str(tiny_tree),
           "--storage", postgres_url, "--study", "shared", "--space", str(tmp_path / "space.yaml"), *TINY]
    procs = [subprocess.Popen([*cmd, "--out", str(tmp_path / f"w{i}")], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(2)]
    ran: list[list[int]] = []
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=240)
        assert proc.returncode == 0, stderr[-3000:]
        ran.append([int(n) for n in re.findall(r"#(\d+)", re.search(r"this process ran .*", stdout).group())])
    trials = optuna.load_study(study_name="shared", storage=postgres_url).get_trials()
    numbers = sorted(t.number for t in trials)
    assert numbers == list(range(len(trials)))  # none lost, none twice
    assert sorted(ran[0] + ran[1]) == numbers  # each trial ran in exactly one worker
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials) and len(trials) >= 5
    for worker, mine in enumerate(ran):  # each trial's run directory is in the worker that ran it
        for n in mine:
            assert (tmp_path / f"w{worker}" / "trials" / f"trial_{n:04d}" / "summary.json").exists()
    assert "postgresql://" in json.loads((tmp_path / "w0" / "tune.json").read_text())["storage"]


def test_an_unreachable_storage_is_one_line(tiny_tree, tmp_path, capsys):
    url = f"postgresql://someone:secret@127.0.0.1:{free_port()}/nothing"  # nothing listens there
    assert main(["tune", "--model", "baseline", "--trials", "1", "--data", str(tiny_tree), "--storage", url,
                 "--out", str(tmp_path / "t"), *TINY]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot open the Optuna storage postgresql://someone:***@127.0.0.1" in err[0]
    assert "secret" not in err[0]

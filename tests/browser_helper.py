"""Headless Chromium for the tests that look at pages as a person would (Playwright driving the system's
Chromium: scripts/install-system-deps.sh installs it; nothing is downloaded), and a `cifarlab serve`
started on a free local port."""
from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def chromium_path() -> str:
    """$CIFARLAB_CHROMIUM, else the system's chromium; skips (saying how to get it) when there is none."""
    path = os.environ.get("CIFARLAB_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not path and Path("/usr/bin/chromium").exists():
        path = "/usr/bin/chromium"
    if not path:
        pytest.skip("Chromium is not installed (scripts/install-system-deps.sh installs it with apt-get; it needs "
                    "root or passwordless sudo) - set CIFARLAB_CHROMIUM to use another one")
    return path


@contextlib.contextmanager
def browser() -> Iterator:
    """A headless Chromium (Playwright's sync API); skips, saying why, where Chromium cannot start."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed (pip install playwright)")
    with sync_api.sync_playwright() as p:
        path = chromium_path()
        try:
            b = p.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        except sync_api.Error as e:
            pytest.skip(f"Chromium ({path}) cannot start here: {str(e).strip().splitlines()[0]}")
        try:
            yield b
        finally:
            b.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def served(run_dir: Path, timeout: float = 90.0) -> Iterator[str]:
    """`cifarlab serve RUN_DIR` in a subprocess on a free local port; yields its URL, stops it after."""
    import cifarlab

    port = free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(Path(cifarlab.__file__).parents[1]), *filter(None, [os.environ.get("PYTHONPATH")])])}
    proc = subprocess.Popen([sys.executable, "-m", "cifarlab", "serve", str(run_dir), "--port", str(port)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"cifarlab serve exited with {proc.returncode}: {proc.stdout.read()}")
            try:
                with urllib.request.urlopen(url + "api/info", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"cifarlab serve did not answer on {url} within {timeout:.0f} s")
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

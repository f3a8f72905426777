"""One writer per run directory. `train` (new, --resume, --overwrite) and the commands that write into a
run (analyze, explain, features, embed, report) hold an advisory lock, RUN_DIR/.cifarlab.lock, while they
write; a second writer refuses at once with the holder's pid instead of mixing two runs in one folder.

The lock is `fcntl.flock` on an open file: the kernel drops it when the process ends, kill -9 included,
so a crashed command never leaves a stale lock behind. The file holds the holder's pid and command, for
the message. Taking the lock also creates the directory, so an output that cannot be written (a file in
the way, a read-only or virtual file system) fails here, with one line naming the path, before any work;
a directory created here and left empty is removed again.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shlex
import stat
import sys
from collections.abc import Iterator
from pathlib import Path

from .._io import file_kind, is_inside
from ..errors import CifarlabError
from .layout import LOCK_NAME

_HELD: dict[str, int] = {}  # real path -> nesting depth: a process may re-enter its own lock


@contextlib.contextmanager
def run_dir_lock(run_dir: str | Path, command: str | None = None) -> Iterator[Path]:
    """Create `run_dir` if needed and hold its write lock until the block ends."""
    run_dir = Path(run_dir)
    with made_dir(run_dir):
        key = os.path.realpath(run_dir)
        if key in _HELD:
            _HELD[key] += 1
            try:
                yield run_dir
            finally:
                _HELD[key] -= 1
            return
        fd = _acquire(run_dir / LOCK_NAME, command or shlex.join(sys.argv))
        _HELD[key] = 1
        try:
            yield run_dir
        finally:
            del _HELD[key]
            with contextlib.suppress(OSError):  # unlink first: a newcomer then makes a fresh file (see _acquire)
                os.unlink(run_dir / LOCK_NAME)
            os.close(fd)


@contextlib.contextmanager
def writing_into(out_dir: str | Path, run_dir: str | Path | None = None, command: str | None = None,
                 lock_outside: bool = True) -> Iterator[Path]:
    """For a command that writes into `out_dir`: hold the lock of the run directory when `out_dir` lies
    inside it (so that `train --overwrite` cannot delete it meanwhile), else the lock of `out_dir` itself
    (or, without `lock_outside`, only create it). A run directory that does not exist is left to the
    command to report (nothing is created then)."""
    out_dir = Path(out_dir)
    if run_dir is not None and _inside(out_dir, Path(run_dir)):
        if not Path(run_dir).is_dir():
            yield out_dir
            return
        if not is_inside(out_dir, run_dir):  # RUN_DIR/analysis a link elsewhere: its files there would be replaced
            raise CifarlabError(f"cannot write into {out_dir}: it is a symbolic link to "
                                f"{os.path.realpath(out_dir)}, outside the run directory {run_dir}; remove the "
                                "link or give --out")
        with run_dir_lock(run_dir, command), made_dir(out_dir):
            yield out_dir
        return
    with run_dir_lock(out_dir, command) if lock_outside else made_dir(out_dir):
        yield out_dir


@contextlib.contextmanager
def made_dir(path: Path) -> Iterator[Path]:
    """mkdir -p `path` with a one-line error when it cannot be; on the way out, remove the directories made
    here that are still empty (a command that failed before writing leaves nothing behind)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise CifarlabError(f"cannot write into {path}: it is a file, not a directory")
    missing = [p for p in [path, *path.parents] if not p.exists()]
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        _remove_empty(missing)
        raise CifarlabError(f"cannot create directory {path}: {_reason(e)}") from None
    try:
        yield path
    finally:
        _remove_empty(missing)


def _acquire(lock_path: Path, command: str) -> int:
    while True:
        try:  # O_NOFOLLOW: a link planted at the lock's name is refused, not followed to a file elsewhere
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK, 0o644)
        except OSError as e:
            if os.path.islink(lock_path):
                raise CifarlabError(f"cannot lock {lock_path}: it is a symbolic link, not cifarlab's lock file; "
                                    "remove it") from None
            raise CifarlabError(f"cannot write into {lock_path.parent}: {_reason(e)}") from None
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            os.close(fd)
            raise CifarlabError(f"cannot lock {lock_path}: it is {file_kind(mode)}, not cifarlab's lock file; "
                                "remove it")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = _holder(fd)
            os.close(fd)
            if e.errno not in (errno.EAGAIN, errno.EACCES):
                raise CifarlabError(f"cannot lock {lock_path}: {_reason(e)}") from None
            raise CifarlabError(f"{lock_path.parent} is in use by another cifarlab process ({holder}); wait for "
                                "it to end, or write somewhere else") from None
        # The holder before us may have unlinked the file between our open and our flock: then we locked a
        # file nobody else will see. Lock the one at the path instead.
        try:
            same = os.stat(lock_path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()} {command}\n".encode())
            return fd
        os.close(fd)


def _holder(fd: int) -> str:
    try:
        text = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip()
    except OSError:
        text = ""
    pid, _, command = text.partition(" ")
    return f"pid {pid}: {command}" if pid.isdigit() else "pid unknown"


def _inside(path: Path, folder: Path) -> bool:
    path, folder = Path(os.path.abspath(path)), Path(os.path.abspath(folder))
    return path == folder or folder in path.parents


def _remove_empty(created: list[Path]) -> None:
    for p in created:  # deepest first
        with contextlib.suppress(OSError):
            p.rmdir()


def _reason(e: OSError) -> str:
    return e.strerror or str(e)

"""Small file helpers, the one way cifarlab reads and writes its files.

Writing: everything goes through an atomic write, so a crash or a kill -9 never leaves a half-written file
where a reader would trust it. The rename replaces a symbolic link itself, never the file it points to, and
only a regular file, a link or a new name is ever replaced: a device or a FIFO (/dev/null) is refused.

Reading: only regular files, and JSON or YAML documents only up to MAX_DOCUMENT_BYTES, so a file linked to
/dev/zero or a FIFO ends in one line instead of exhausting memory or blocking. Given the folder a file
belongs to (a run directory), a file whose real location lies outside it (through a symbolic link) is
refused: a run directory handed over by someone else cannot make cifarlab read or embed files elsewhere.
"""
from __future__ import annotations

import contextlib
import json
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import CifarlabError

MAX_DOCUMENT_BYTES = 64 * 2**20  # JSON and YAML files; what cifarlab writes stays far below (64 MiB)
MAX_FIGURE_BYTES = 64 * 2**20  # a figure embedded in a report


def file_kind(mode: int) -> str:
    """What a stat mode describes, for messages: "a FIFO", "a character device" ..."""
    kinds = ((stat.S_ISDIR, "a directory"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
             (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"), (stat.S_ISLNK, "a symbolic link"))
    return next((name for test, name in kinds if test(mode)), "not a regular file")


def is_inside(path: str | Path, root: str | Path) -> bool:
    """Whether the real location of `path` (every link followed) lies inside the real location of `root`."""
    real, base = os.path.realpath(path), os.path.realpath(root)
    return real == base or real.startswith(base.rstrip(os.sep) + os.sep)


def check_inside(path: str | Path, root: str | Path) -> None:
    """Refuse `path` when a symbolic link takes it out of `root`."""
    if not is_inside(path, root):
        raise CifarlabError(f"{path} is a symbolic link to {os.path.realpath(path)}, outside {root}: "
                            "cifarlab reads and writes only files inside it")


def check_regular_file(path: str | Path, root: str | Path | None = None) -> None:
    """Refuse to read anything but a regular file (inside `root`, when given). A missing file raises
    FileNotFoundError, for the caller to report in its own words."""
    if root is not None:
        check_inside(path, root)
    mode = os.stat(path).st_mode
    if not stat.S_ISREG(mode):
        raise CifarlabError(f"cannot read {path}: it is {file_kind(mode)}, not a regular file")


def read_bytes_bounded(path: str | Path, limit: int = MAX_DOCUMENT_BYTES, root: str | Path | None = None) -> bytes:
    """The bytes of a regular file of at most `limit` bytes (inside `root`, when given), else a one-line
    CifarlabError naming it. A missing file raises FileNotFoundError, other failures OSError."""
    if root is not None:
        check_inside(path, root)
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # O_NONBLOCK: opening a FIFO must not wait for a writer
    with os.fdopen(fd, "rb") as f:
        mode = os.fstat(f.fileno()).st_mode  # the file opened, not the name: nothing can swap it in between
        if not stat.S_ISREG(mode):
            raise CifarlabError(f"cannot read {path}: it is {file_kind(mode)}, not a regular file")
        data = f.read(limit + 1)
    if len(data) > limit:
        raise CifarlabError(f"cannot read {path}: it is larger than {limit / 2**20:.0f} MiB, "
                            "more than such a file ever holds")
    return data


def read_text_bounded(path: str | Path, limit: int = MAX_DOCUMENT_BYTES, root: str | Path | None = None) -> str:
    """read_bytes_bounded, decoded as UTF-8 (UnicodeDecodeError for the caller to report)."""
    return read_bytes_bounded(path, limit, root).decode("utf-8")


def check_destination(path: str | Path) -> None:
    """A file is written only as a new name, over a regular file or over a symbolic link (the link itself is
    replaced, not followed); a device, a FIFO, a socket or a folder in the way is a one-line error."""
    try:
        mode = os.lstat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return
    if not (stat.S_ISREG(mode) or stat.S_ISLNK(mode)):
        raise CifarlabError(f"cannot write {path}: it is {file_kind(mode)}, not a regular file; "
                            "give the path of a file")


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it replaces `path` in one rename (a symbolic link at
    `path` is replaced itself: the file it points to is never written)."""
    path = Path(path)
    check_destination(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual permissions
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as f:  # flush to disk before the rename makes it visible
            os.fsync(f.fileno())
        check_destination(path)  # again: a FIFO made while the file was written is not replaced either
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


def save_figure_atomic(fig: Any, path: str | Path, **savefig_kwargs: Any) -> Path:
    """A matplotlib figure written as PNG through atomic_path (never through a link at `path`)."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", **savefig_kwargs)
    return Path(path)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text_atomic(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json_atomic(path: str | Path, obj: Any) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(obj: Any) -> Any:
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item"):  # numpy / torch scalars
        return obj.item()
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")


def append_jsonl(path: str | Path, record: dict) -> None:
    """Add one line to a regular file (made when missing); a symbolic link or a device at `path` is refused
    rather than written through."""
    check_destination(path)
    # O_NOFOLLOW: a link put there after the check is refused too; O_NONBLOCK: a FIFO does not hang the open
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK
    try:
        fd = os.open(path, flags, 0o666)
    except OSError:
        if os.path.islink(path):
            raise CifarlabError(f"cannot append to {path}: it is a symbolic link; cifarlab writes only "
                                "regular files of its own") from None
        raise
    with os.fdopen(fd, "a", encoding="utf-8") as f:
        mode = os.fstat(f.fileno()).st_mode
        if not stat.S_ISREG(mode):
            raise CifarlabError(f"cannot append to {path}: it is {file_kind(mode)}, not a regular file")
        f.write(json.dumps(record, default=_json_default) + "\n")
        f.flush()


def read_jsonl(path: str | Path, root: str | Path | None = None) -> list[dict]:
    path = Path(path)
    if not os.path.lexists(path):
        return []
    text = read_text_bounded(path, root=root)
    return [json.loads(line) for line in text.splitlines() if line.strip()]

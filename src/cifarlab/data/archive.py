"""The official CIFAR-10 archive: download it (resumable, checksummed, atomic) and read it into arrays.

The archive (`cifar-10-python.tar.gz`) holds pickled batches. Pickle can run arbitrary code, so the
batches are loaded with a restricted unpickler that only rebuilds numpy arrays, dicts, lists and
bytes: a data file must never be able to execute anything.
"""
from __future__ import annotations

import errno
import hashlib
import io
import os
import pickle
import socket
import ssl
import sys
import tarfile
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Iterator
from http.client import HTTPException
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from cifarlab.data.types import CifarData, ImageSet
from cifarlab.errors import DataError

try:  # tarfile's "r:*" also opens .tar.xz, whose errors are not OSErrors
    import lzma

    _LZMA_ERRORS: tuple[type[BaseException], ...] = (lzma.LZMAError,)
except ImportError:  # pragma: no cover - Python built without lzma
    _LZMA_ERRORS = ()

try:
    from numpy._core.multiarray import _reconstruct as _np_reconstruct
except ImportError:  # pragma: no cover - numpy < 2
    from numpy.core.multiarray import _reconstruct as _np_reconstruct

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
ARCHIVE_NAME = "cifar-10-python.tar.gz"
ARCHIVE_SIZE = 170_498_071  # bytes of the official archive: a renamed copy is still held to its md5
BATCHES_DIR = "cifar-10-batches-py"

TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
META = "batches.meta"
_MEMBERS = (*TRAIN_BATCHES, TEST_BATCH, META)

_LOCAL_DATA_HINT = (
    "point cifarlab at local data instead: --data PATH or CIFARLAB_DATA=PATH "
    "(an image-folder tree with train/ and test/, or cifar-10-python.tar.gz)"
)
_CHUNK = 1 << 16  # download read size
_HASH_CHUNK = 1 << 20
_BACKOFF_S = 0.5  # first pause between download attempts; doubles each time (tests set it to 0)
_BACKOFF_MAX_S = 8.0
_MAX_MEMBER_BYTES = 1 << 30  # a real batch is ~31 MB; refuse absurd members instead of exhausting memory
_PIXELS = 32 * 32 * 3


def _one_line(text: object, limit: int = 300) -> str:
    """An exception text squeezed onto one line (the CLI shows errors as one line)."""
    s = " ".join(str(text).split())
    return s if len(s) <= limit else s[: limit - 3] + "..."


def _reason(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return _one_line(f"HTTP {exc.code} {exc.reason}")
    if isinstance(exc, urllib.error.URLError):
        exc_reason = exc.reason
        if isinstance(exc_reason, BaseException):
            return _reason(exc_reason)
        return _one_line(exc_reason) or type(exc).__name__
    if isinstance(exc, TimeoutError | socket.timeout):
        return "timed out"
    if isinstance(exc, _Incomplete):
        return _one_line(exc)
    text = _one_line(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# ----------------------------------------------------------------------------------------- download


def md5sum(path: str | Path) -> str:
    """The hex md5 of a file, read in 1 MiB chunks."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class _Incomplete(Exception):
    """The server closed the connection before sending everything it announced."""


class _Unreachable(Exception):
    """An error that retrying will not fix (no such host, connection refused, HTTP 404, ...)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _is_unreachable(exc: BaseException) -> bool:
    """True for errors meaning the host isn't there at all, as opposed to a flaky transfer."""
    if isinstance(exc, urllib.error.HTTPError):
        return not (exc.code >= 500 or exc.code in (408, 429))
    if isinstance(exc, urllib.error.URLError):
        if not isinstance(exc.reason, BaseException):  # "unknown url type", "no host given", ...
            return True
        exc = exc.reason
    if isinstance(exc, socket.gaierror | ConnectionRefusedError | ssl.SSLCertVerificationError):
        return True
    return isinstance(exc, OSError) and exc.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH)


def _make_bar(dest: Path, progress: bool) -> Any:
    from tqdm import tqdm

    stream = sys.stderr
    enabled = progress and stream is not None
    try:
        tty = bool(enabled and stream.isatty())
    except (AttributeError, ValueError, OSError):
        tty = False
    return tqdm(
        desc=f"downloading {dest.name}",
        total=None,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        file=stream,
        disable=not enabled,
        mininterval=0.1 if tty else 5.0,  # a log file gets an occasional line, not a torrent of \r updates
        dynamic_ncols=tty,
        leave=True,
    )


def _fetch_once(url: str, part: Path, timeout: float, bar: Any) -> None:
    """One attempt: fetch into `part`, continuing after its current size when the server allows it."""
    offset = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "cifarlab"})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and offset:  # range not satisfiable: the part file is off, start over
            e.close()
            part.unlink(missing_ok=True)
            raise _Incomplete("server refused to resume; restarting") from e
        raise
    with response:
        status = getattr(response, "status", None)
        length_header = response.headers.get("Content-Length")
        length = int(length_header) if length_header and length_header.isdigit() else None
        if status == 206 and offset:
            start, total = _parse_content_range(response.headers.get("Content-Range"))
            if start != offset:  # not the range asked for: start over
                part.unlink(missing_ok=True)
                raise _Incomplete("server answered a different range; restarting")
            if total is None and length is not None:
                total = offset + length
        else:  # 200 (or a file: URL): the whole file again
            offset = 0
            total = length
        bar.reset(total=total)
        bar.update(offset)
        received = offset
        try:
            f = open(part, "ab" if offset else "wb")  # noqa: SIM115 - closed below; write errors reported apart
        except OSError as e:
            raise _write_error(part, e) from e
        # read1: whatever has arrived, so bytes received before a timeout are kept for the resume
        read = getattr(response, "read1", response.read)
        with f:
            while True:
                chunk = read(_CHUNK)  # network errors propagate to download()'s retry loop
                if not chunk:
                    break
                try:
                    f.write(chunk)
                except OSError as e:
                    raise _write_error(part, e) from e
                received += len(chunk)
                bar.update(len(chunk))
            try:
                f.flush()
                os.fsync(f.fileno())
            except OSError as e:
                raise _write_error(part, e) from e
    if total is not None and received != total:
        if received > total:
            part.unlink(missing_ok=True)
        raise _Incomplete(f"connection closed after {received} of {total} bytes")


def _write_error(part: Path, exc: OSError) -> DataError:
    return DataError(f"could not write {part} ({_reason(exc)}); free some space or set another cache dir")


def _parse_content_range(value: str | None) -> tuple[int | None, int | None]:
    """'bytes 100-199/200' -> (100, 200); total None when '*' or unparsable."""
    if not value:
        return None, None
    try:
        unit, _, spec = value.strip().partition(" ")
        span, _, total = spec.partition("/")
        start = int(span.split("-")[0])
        return (start if unit.lower() == "bytes" else None), (int(total) if total.isdigit() else None)
    except ValueError:
        return None, None


def download(
    url: str,
    dest: Path,
    md5: str | None,
    *,
    retries: int = 3,
    timeout: float = 30.0,
    progress: bool = True,
) -> Path:
    """Download `url` to `dest` and return `dest`.

    Bytes go to `dest.part` first; a dropped connection, a timeout or a short read is retried up to
    `retries` times (with a short backoff), resuming with an HTTP Range request when the server answers
    206, else starting over. The md5 (when given) is checked before `dest.part` is renamed onto `dest`,
    so `dest` is either absent or complete. Raises DataError, with one line saying what to do, when the
    host can't be reached, the transfer keeps failing, or the checksum is wrong.
    """
    dest = Path(dest)
    part = dest.with_name(dest.name + ".part")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(f"could not create the download directory {dest.parent} ({_reason(e)})") from e
    part.unlink(missing_ok=True)  # never resume from a part file of unknown origin
    attempts = max(0, int(retries)) + 1
    done = False
    bar = _make_bar(dest, progress)
    try:
        last_reason = ""
        for attempt in range(attempts):
            if attempt:
                time.sleep(min(_BACKOFF_S * 2 ** (attempt - 1), _BACKOFF_MAX_S))
            try:
                _fetch_once(url, part, timeout, bar)
                break
            except DataError:
                raise
            except ValueError as e:  # urllib: "unknown url type"
                raise DataError(
                    f"could not download CIFAR-10 from {url} ({_reason(e)}); {_LOCAL_DATA_HINT}"
                ) from e
            except (_Incomplete, urllib.error.URLError, HTTPException, OSError) as e:
                if isinstance(e, urllib.error.HTTPError):
                    e.close()
                last_reason = _reason(e)
                if _is_unreachable(e):
                    raise _Unreachable(last_reason) from e
        else:
            raise DataError(
                f"could not download CIFAR-10 from {url} ({last_reason}; gave up after {attempts} "
                f"attempt{'s' if attempts > 1 else ''}); {_LOCAL_DATA_HINT}"
            )
        if md5 is not None:
            actual = md5sum(part)
            if actual.lower() != md5.lower():
                part.unlink(missing_ok=True)
                raise DataError(
                    f"checksum mismatch for {url}: expected md5 {md5.lower()}, got {actual} (the download is "
                    f"corrupt or the file changed; try again, or {_LOCAL_DATA_HINT.replace(' instead', '')})"
                )
        os.replace(part, dest)
        done = True
        return dest
    except _Unreachable as e:
        raise DataError(f"could not download CIFAR-10 from {url} ({e.reason}); {_LOCAL_DATA_HINT}") from None
    except OSError as e:  # md5sum / os.replace on the part file
        raise DataError(f"could not save the download of {url} to {dest} ({_reason(e)})") from e
    finally:
        bar.close()
        if not done:
            part.unlink(missing_ok=True)


def ensure_archive(
    cache_dir: Path,
    *,
    url: str = CIFAR10_URL,
    md5: str | None = CIFAR10_MD5,
    progress: bool = True,
) -> Path:
    """`cache_dir/cifar-10-python.tar.gz`, downloaded first if it isn't there.

    An archive already in the cache is not hashed here: read_cifar10 checks its md5 whenever it decodes
    it (the decoded cache then spares every later run that cost).
    """
    path = Path(cache_dir) / ARCHIVE_NAME
    if path.is_file():
        return path
    return download(url, path, md5, progress=progress)


# ------------------------------------------------------------------------------------------ checking


def expected_md5(path: Path) -> str | None:
    """The md5 an archive file must have: the official one for a file named cifar-10-python.tar.gz or
    of the official size (a renamed or bit-flipped copy), None for anything else (an archive the user
    re-packed under another name, checked by its gzip CRC alone)."""
    path = Path(path)
    try:
        official_size = path.stat().st_size == ARCHIVE_SIZE
    except OSError:
        official_size = False
    return CIFAR10_MD5 if path.name == ARCHIVE_NAME or official_size else None


def verify_md5(path: Path, md5: str) -> None:
    """DataError (one line, naming the file and both sums) unless `path` has the md5 `md5`."""
    try:
        actual = md5sum(path)
    except OSError as e:
        raise DataError(f"could not read {path} ({_reason(e)})") from e
    if actual.lower() == md5.lower():
        return
    official = md5.lower() == CIFAR10_MD5
    hint = (f"delete it and download again, or point --data at a good copy; an archive you re-packed "
            f"yourself must not be named {ARCHIVE_NAME} nor have the official size"
            if official else "the file is corrupt or not the one expected")
    raise DataError(f"checksum mismatch for the CIFAR-10 archive {path}: expected md5 {md5.lower()}"
                    f"{' (the official archive)' if official else ''}, got {actual}; {hint}")


# ------------------------------------------------------------------------------------------ reading


def _latin1_encode(obj: object, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    """Stand-in for _codecs.encode, which Python 3 pickles (protocol <= 2) use to rebuild bytes."""
    if not isinstance(obj, str) or encoding.lower().replace("_", "-") not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError("unexpected _codecs.encode call in a data file")
    return obj.encode("latin-1", errors)


_SAFE_BUILTINS = {
    "bytes": bytes,
    "bytearray": bytearray,
    "list": list,
    "dict": dict,
    "tuple": tuple,
    "set": set,
    "frozenset": frozenset,
}
_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _np_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _np_reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _latin1_encode,
    **{("builtins", k): v for k, v in _SAFE_BUILTINS.items()},
    **{("__builtin__", k): v for k, v in _SAFE_BUILTINS.items()},  # Python 2 pickles
}


class _RestrictedUnpickler(pickle.Unpickler):
    """Rebuilds numpy arrays, dicts, lists and bytes; refuses every other global (os.system, ...)."""

    def __init__(self, file: io.BufferedIOBase, where: str) -> None:
        super().__init__(file, encoding="bytes")
        self._where = where

    def find_class(self, module: str, name: str) -> Any:
        obj = _ALLOWED_GLOBALS.get((module, name))
        if obj is None:
            raise DataError(
                f"{self._where}: refusing to load {module}.{name} from a data file (CIFAR-10 batches hold "
                f"only arrays, lists and bytes); this is not genuine CIFAR-10 data, use another copy"
            )
        return obj


def _unpickle(data: bytes, where: str) -> Any:
    try:
        return _RestrictedUnpickler(io.BytesIO(data), where).load()
    except DataError:
        raise
    except Exception as e:  # noqa: BLE001 - corrupt pickles raise about anything (EOFError, ValueError, ...)
        raise DataError(f"{where}: not a readable CIFAR-10 batch ({_reason(e)})") from e


def _find_batches_dir(path: Path) -> Path | None:
    if any((path / name).is_file() for name in _MEMBERS):
        return path
    if (path / BATCHES_DIR).is_dir():
        return path / BATCHES_DIR
    return None


def _missing_error(where: Path, missing: list[str]) -> DataError:
    return DataError(
        f"{where} is missing {', '.join(missing)}: not a complete CIFAR-10 dataset (expected "
        f"{BATCHES_DIR}/ with data_batch_1..5, test_batch and batches.meta); download it again or point "
        f"--data at a complete copy"
    )


def _load_dir(directory: Path) -> dict[str, tuple[str, Any]]:
    missing = [name for name in _MEMBERS if not (directory / name).is_file()]
    if missing:
        raise _missing_error(directory, missing)
    loaded = {}
    for name in _MEMBERS:
        file = directory / name
        try:
            data = file.read_bytes()
        except OSError as e:
            raise DataError(f"could not read {file} ({_reason(e)})") from e
        loaded[name] = (str(file), _unpickle(data, str(file)))
    return loaded


def _iter_tar(path: Path) -> Iterator[tuple[str, bytes]]:
    """(member name, bytes) of the wanted members, in one forward pass over the (compressed) archive."""
    try:
        tf = tarfile.open(path, "r:*")  # noqa: SIM115 - closed by the `with tf` below
    except (tarfile.TarError, OSError, EOFError, zlib.error, *_LZMA_ERRORS) as e:
        raise DataError(
            f"could not open the CIFAR-10 archive {path}: not a tar.gz file, or truncated/corrupt "
            f"({_reason(e)}); delete it and download again, or point --data at a good copy"
        ) from e
    with tf:
        seen: set[str] = set()
        at = ""  # where a truncation or corruption was hit, for the message
        try:
            for member in tf:
                name = PurePosixPath(member.name).name
                if name not in _MEMBERS or name in seen or not member.isfile():
                    at = f" after member {member.name}"
                    continue
                if member.size > _MAX_MEMBER_BYTES:
                    raise DataError(
                        f"{path} (member {member.name}): {member.size} bytes is too large "
                        f"for a CIFAR-10 batch"
                    )
                seen.add(name)
                at = f" in member {member.name}"
                stream = tf.extractfile(member)
                if stream is None:  # pragma: no cover - a regular file always has one
                    continue
                data = stream.read()
                at = f" after member {member.name}"
                yield member.name, data
            # Read the compressed stream to its very end: gzip (and xz) check their CRC only there, and
            # a flipped bit in a member read earlier would otherwise go unnoticed.
            at = " at its end"
            if tf.fileobj is not None:
                while tf.fileobj.read(_HASH_CHUNK):
                    pass
        except (tarfile.TarError, OSError, EOFError, zlib.error, *_LZMA_ERRORS) as e:
            raise DataError(
                f"could not read the CIFAR-10 archive {path}{at}: truncated or corrupt ({_reason(e)}); "
                f"delete it and download again, or point --data at a good copy"
            ) from e


def _load_tar(path: Path, md5: str | None) -> dict[str, tuple[str, Any]]:
    if md5 is not None:
        verify_md5(path, md5)
    loaded: dict[str, tuple[str, Any]] = {}
    for member, data in _iter_tar(path):
        where = f"{path} (member {member})"
        loaded[PurePosixPath(member).name] = (where, _unpickle(data, where))
    missing = [name for name in _MEMBERS if name not in loaded]
    if missing:
        raise _missing_error(path, missing)
    return loaded


def _str_keys(obj: Any, where: str, what: str) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise DataError(f"{where}: not a CIFAR-10 {what} (expected a dict, found {type(obj).__name__})")
    return {(k.decode("latin-1") if isinstance(k, bytes) else str(k)): v for k, v in obj.items()}


def _decode(value: Any) -> str:
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)


def _batch(obj: Any, where: str, batch: str, num_classes: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    d = _str_keys(obj, where, "batch")
    data = d.get("data")
    is_array = isinstance(data, np.ndarray)
    if not (is_array and data.dtype == np.uint8 and data.ndim == 2 and data.shape[1] == _PIXELS):
        found = f"{data.shape} {data.dtype} array" if is_array else type(data).__name__
        raise DataError(f"{where}: 'data' is a {found}, expected an (N, {_PIXELS}) uint8 array")
    n = data.shape[0]
    raw_labels = d.get("labels")
    try:
        labels = np.asarray(raw_labels)
    except (ValueError, TypeError):
        labels = np.asarray([])
    integers = labels.ndim == 1 and np.issubdtype(labels.dtype, np.integer)
    if raw_labels is None or not integers or len(labels) != n:
        sized = isinstance(raw_labels, list | tuple | np.ndarray)
        found = f"{len(raw_labels)} values" if sized else type(raw_labels).__name__
        raise DataError(f"{where}: 'labels' must be {n} integers, one per image, found {found}")
    labels = labels.astype(np.int64)
    if n and (labels.min() < 0 or labels.max() >= num_classes):
        raise DataError(
            f"{where}: labels range over {labels.min()}..{labels.max()} "
            f"but batches.meta names {num_classes} classes"
        )
    images = np.ascontiguousarray(data.reshape(n, 3, 32, 32).transpose(0, 2, 3, 1))
    names = d.get("filenames")
    if isinstance(names, list | tuple) and len(names) == n:
        files = [f"{batch}/{_decode(x)}" for x in names]
    else:
        files = [f"{batch}/{i}" for i in range(n)]
    return images, labels, files


def _image_set(loaded: dict[str, tuple[str, Any]], batches: tuple[str, ...], classes: list[str]) -> ImageSet:
    parts = [_batch(loaded[b][1], loaded[b][0], b, len(classes)) for b in batches]
    images = np.concatenate([p[0] for p in parts]) if len(parts) > 1 else parts[0][0]
    labels = np.concatenate([p[1] for p in parts]) if len(parts) > 1 else parts[0][1]
    files = [f for p in parts for f in p[2]]
    return ImageSet(images, labels, classes, files)


def read_cifar10(path: Path, *, md5: str | None = None) -> CifarData:
    """Read CIFAR-10 in the official python format into memory.

    `path` is the `cifar-10-python.tar.gz` archive (batches are read straight from the tar, nothing is
    extracted), an extracted `cifar-10-batches-py` directory, or a directory containing either. Images
    come back as (N, 32, 32, 3) uint8. An archive must have the md5 `md5`, by default the official one
    when it is the official archive (see expected_md5), and its compressed stream is read to the end so
    that its CRC is checked. Raises DataError (one line, naming the file) for anything missing,
    truncated, corrupt, not matching its checksum or not in the expected format.
    """
    path = Path(path)
    if path.is_dir():
        directory = _find_batches_dir(path)
        if directory is None:
            if (path / ARCHIVE_NAME).is_file():
                return read_cifar10(path / ARCHIVE_NAME, md5=md5)
            raise DataError(
                f"{path} holds no CIFAR-10 batches (expected {BATCHES_DIR}/ with data_batch_1..5, test_batch "
                f"and batches.meta, or {ARCHIVE_NAME})"
            )
        loaded = _load_dir(directory)
    elif path.is_file():
        loaded = _load_tar(path, md5 or expected_md5(path))
    else:
        raise DataError(
            f"{path} does not exist; point --data at {ARCHIVE_NAME} or an extracted {BATCHES_DIR}/"
        )

    where, meta_obj = loaded[META]
    meta = _str_keys(meta_obj, where, "batches.meta")
    names = meta.get("label_names")
    if not isinstance(names, list | tuple) or not names:
        raise DataError(f"{where}: no 'label_names' list of class names")
    classes = [_decode(x) for x in names]
    train = _image_set(loaded, TRAIN_BATCHES, classes)
    test = _image_set(loaded, (TEST_BATCH,), list(classes))
    return CifarData(train, test, source=f"CIFAR-10 archive {path}")


def is_cifar10_source(path: Path) -> bool:
    """Whether `path` looks like something read_cifar10 reads: a tar archive of the batches, a batches
    directory, or a directory holding cifar-10-python.tar.gz. Cheap: only looks at the archive's first
    members, does not validate the batches."""
    path = Path(path)
    try:
        if path.is_dir():
            return _find_batches_dir(path) is not None or (path / ARCHIVE_NAME).is_file()
        if not path.is_file() or not path.name.lower().endswith((".tar.gz", ".tgz", ".tar")):
            return False
        with tarfile.open(path, "r:*") as tf:
            for _, member in zip(range(4), tf, strict=False):
                parts = PurePosixPath(member.name).parts
                if BATCHES_DIR in parts or (parts and parts[-1] in _MEMBERS):
                    return True
        return False
    except (tarfile.TarError, OSError, EOFError, zlib.error, *_LZMA_ERRORS):
        return False

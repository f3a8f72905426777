"""cifarlab.data.archive: reading the official CIFAR-10 format, and downloading it.

Everything runs offline: archives are built by tests/cifar_archive_helper.py, and downloads are
served by a throwaway http.server on 127.0.0.1 started (and stopped) by the tests themselves.
"""
from __future__ import annotations

import hashlib
import os
import pickle
import socket
import sys
import tarfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from cifarlab.data import archive
from cifarlab.data.archive import (
    ARCHIVE_NAME,
    CIFAR10_MD5,
    CIFAR10_URL,
    download,
    ensure_archive,
    is_cifar10_source,
    md5sum,
    read_cifar10,
)
from cifarlab.errors import DataError

try:
    import cifar_archive_helper as helper
except ImportError:  # run with --import-mode=importlib: tests/ is not on sys.path
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import cifar_archive_helper as helper

pytestmark = pytest.mark.timeout(60)

# Synthetic archives are tiny and have their own md5, so most tests give them a name of their own: only a
# file named like the official archive (or of its size) is held to the official md5.
SMALL = "small-cifar-10.tar.gz"


@pytest.fixture
def as_official(monkeypatch):
    """Make a synthetic archive count as the official one: its md5 becomes the official md5."""

    def make_official(path: Path) -> Path:
        monkeypatch.setattr(archive, "CIFAR10_MD5", md5sum(path))
        return path

    return make_official


def _one_line(err: pytest.ExceptionInfo) -> str:
    message = str(err.value)
    assert "\n" not in message, message
    return message


# --------------------------------------------------------------------------------------------- read


def test_constants():
    assert CIFAR10_URL == "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
    assert CIFAR10_MD5 == "c58f30108f718f92721af3b95e74349a"
    assert ARCHIVE_NAME == "cifar-10-python.tar.gz"


def test_archive_round_trip(tmp_path):
    path = tmp_path / SMALL
    written = helper.make_cifar10_archive(path, n_train_per_batch=5, n_test=7, seed=3)
    data = read_cifar10(path)

    assert data.classes == helper.CLASSES
    assert data.source == f"CIFAR-10 archive {path}"
    assert data.train.images.shape == (25, 32, 32, 3) and data.train.images.dtype == np.uint8
    assert data.test.images.shape == (7, 32, 32, 3)
    assert data.train.labels.dtype == np.int64
    np.testing.assert_array_equal(data.train.images, written.train_images)
    np.testing.assert_array_equal(data.train.labels, written.train_labels)
    np.testing.assert_array_equal(data.test.images, written.test_images)
    np.testing.assert_array_equal(data.test.labels, written.test_labels)
    assert data.train.files == written.train_files
    assert data.train.files[0] == "data_batch_1/img_0_0.png"
    assert data.test.files == written.test_files
    assert data.test.classes == data.train.classes


def test_rows_are_chw_and_come_back_hwc(tmp_path):
    """Independent of the helper's own transposes: a row is 1024 red, 1024 green, 1024 blue values,
    each plane row-major, so pixel (y, x) channel c sits at c*1024 + y*32 + x."""
    rng = np.random.default_rng(0)
    rows = rng.integers(0, 256, size=(2, 3072), dtype=np.uint8)
    batch = pickle.dumps({b"data": rows, b"labels": [1, 2], b"filenames": [b"a.png", b"b.png"]}, protocol=2)
    helper.write_cifar10_batches(tmp_path, replace={"data_batch_1": batch})
    data = read_cifar10(tmp_path)
    first = data.train.images[:2]
    y, x, c = np.meshgrid(np.arange(32), np.arange(32), np.arange(3), indexing="ij")
    np.testing.assert_array_equal(first, rows[:, c * 1024 + y * 32 + x])
    assert first[0, 0, 1, 0] == rows[0, 1]  # next pixel to the right, red
    assert first[0, 0, 0, 1] == rows[0, 1024]  # same pixel, green
    assert first[0, 1, 0, 0] == rows[0, 32]  # next row, red
    assert data.train.labels[:2].tolist() == [1, 2]
    assert data.train.files[:2] == ["data_batch_1/a.png", "data_batch_1/b.png"]


def test_extracted_directory_reads_the_same(tmp_path, as_official):
    path = tmp_path / ARCHIVE_NAME
    helper.make_cifar10_archive(path, seed=5)
    as_official(path)
    with tarfile.open(path) as tf:
        tf.extractall(tmp_path / "x", filter="data")
    from_archive = read_cifar10(path)
    for where in (tmp_path / "x", tmp_path / "x" / "cifar-10-batches-py"):
        from_dir = read_cifar10(where)
        np.testing.assert_array_equal(from_dir.train.images, from_archive.train.images)
        np.testing.assert_array_equal(from_dir.train.labels, from_archive.train.labels)
        np.testing.assert_array_equal(from_dir.test.images, from_archive.test.images)
        np.testing.assert_array_equal(from_dir.test.labels, from_archive.test.labels)
        assert from_dir.classes == from_archive.classes
        assert from_dir.train.files == from_archive.train.files
    # a directory holding the archive itself
    np.testing.assert_array_equal(read_cifar10(tmp_path).test.images, from_archive.test.images)


def test_python2_style_pickles_are_read(tmp_path):
    """The real batches were pickled by Python 2: str (bytes) values, numpy.core module paths."""
    rows = np.arange(2 * 3072, dtype=np.uint8).reshape(2, 3072)
    batch = pickle.dumps({b"data": rows, b"labels": [0, 9], b"filenames": [b"x", b"y"]}, protocol=2)
    # rewrite the pickle as numpy 1.x / Python 2 would name the array reconstructor
    batch = batch.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    helper.write_cifar10_batches(tmp_path, replace={"test_batch": batch})
    data = read_cifar10(tmp_path)
    assert data.test.labels.tolist() == [0, 9]
    assert data.test.images.shape == (2, 32, 32, 3)


def test_is_cifar10_source(tmp_path):
    path = tmp_path / "a" / ARCHIVE_NAME
    helper.make_cifar10_archive(path)
    helper.write_cifar10_batches(tmp_path / "b")
    assert is_cifar10_source(path)
    assert is_cifar10_source(path.parent)
    assert is_cifar10_source(tmp_path / "b") and is_cifar10_source(tmp_path / "b" / "cifar-10-batches-py")
    (tmp_path / "c" / "train").mkdir(parents=True)
    assert not is_cifar10_source(tmp_path / "c")
    assert not is_cifar10_source(tmp_path / "missing.tar.gz")
    (tmp_path / "junk.tar.gz").write_bytes(b"not a tar")
    assert not is_cifar10_source(tmp_path / "junk.tar.gz")
    other = tmp_path / "other.tar.gz"
    with tarfile.open(other, "w:gz") as tf:
        tf.add(tmp_path / "c", arcname="images")
    assert not is_cifar10_source(other)


@pytest.mark.parametrize("keep", [0.05, 0.4, 0.75, 0.97])
def test_truncated_archive_is_a_data_error(tmp_path, keep):
    path = tmp_path / SMALL
    helper.make_cifar10_archive(path, n_train_per_batch=20)
    whole = path.read_bytes()
    path.write_bytes(whole[: int(len(whole) * keep)])
    with pytest.raises(DataError) as err:
        read_cifar10(path)
    message = _one_line(err)
    assert str(path) in message and "corrupt" in message


def test_corrupt_and_non_archives_are_data_errors(tmp_path):
    path = tmp_path / SMALL
    helper.make_cifar10_archive(path, n_train_per_batch=20)
    whole = bytearray(path.read_bytes())
    middle = len(whole) // 2
    whole[middle : middle + 64] = bytes(64)
    path.write_bytes(bytes(whole))
    with pytest.raises(DataError) as err:
        read_cifar10(path)
    assert str(path) in _one_line(err)

    for junk in (b"", b"hello, not an archive", os.urandom(4096)):
        path.write_bytes(junk)
        with pytest.raises(DataError) as err:
            read_cifar10(path)
        assert str(path) in _one_line(err)

    with pytest.raises(DataError) as err:
        read_cifar10(tmp_path / "nope")
    assert "nope" in _one_line(err)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError):
        read_cifar10(tmp_path / "empty")


@pytest.mark.parametrize("layout", ["archive", "directory"])
def test_missing_batch_is_named(tmp_path, layout):
    if layout == "archive":
        path = tmp_path / SMALL
        helper.make_cifar10_archive(path, omit=("data_batch_3",))
    else:
        path = tmp_path
        helper.write_cifar10_batches(path, omit=("data_batch_3",))
    with pytest.raises(DataError) as err:
        read_cifar10(path)
    message = _one_line(err)
    assert "data_batch_3" in message and str(path) in message
    assert "data_batch_2" not in message


BAD_BATCHES = {
    "wrong width": {b"data": np.zeros((2, 3000), np.uint8), b"labels": [0, 1]},
    "wrong dtype": {b"data": np.zeros((2, 3072), np.float32), b"labels": [0, 1]},
    "flat data": {b"data": np.zeros(3072 * 2, np.uint8), b"labels": [0, 1]},
    "too few labels": {b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]},
    "text labels": {b"data": np.zeros((2, 3072), np.uint8), b"labels": [b"cat", b"dog"]},
    "label out of range": {b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]},
    "no data": {b"labels": [0, 1]},
    "not a dict": [1, 2, 3],
}


@pytest.mark.parametrize("problem", list(BAD_BATCHES))
def test_malformed_batch_is_named(tmp_path, problem):
    bad = pickle.dumps(BAD_BATCHES[problem], protocol=2)
    path = tmp_path / SMALL
    helper.make_cifar10_archive(path, replace={"data_batch_2": bad})
    with pytest.raises(DataError) as err:
        read_cifar10(path)
    message = _one_line(err)
    assert str(path) in message and "data_batch_2" in message


def test_garbage_pickle_is_a_data_error(tmp_path):
    helper.write_cifar10_batches(tmp_path, replace={"batches.meta": b"\x80\x02}q\x00(U\x03abc"})
    with pytest.raises(DataError) as err:
        read_cifar10(tmp_path)
    assert "batches.meta" in _one_line(err)


class _Evil:
    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


@pytest.mark.parametrize("layout", ["archive", "directory"])
@pytest.mark.parametrize("how", ["os.system", "builtins.exec", "builtins.getattr"])
def test_pickle_with_forbidden_global_is_refused(tmp_path, layout, how):
    marker = tmp_path / "pwned"
    payload = {
        "os.system": _Evil(os.system, f"touch {marker}"),
        "builtins.exec": _Evil(exec, f"open({str(marker)!r}, 'w').close()"),
        "builtins.getattr": _Evil(getattr, b"x", "hex"),
    }[how]
    evil = pickle.dumps({b"data": payload, b"labels": [0]}, protocol=2)
    if layout == "archive":
        path = tmp_path / SMALL
        helper.make_cifar10_archive(path, replace={"test_batch": evil})
    else:
        path = tmp_path / "d"
        helper.write_cifar10_batches(path, replace={"test_batch": evil})
    with pytest.raises(DataError) as err:
        read_cifar10(path)
    message = _one_line(err)
    assert "test_batch" in message and "refusing" in message
    assert not marker.exists()


# ----------------------------------------------------------------------------- checksums and CRC


def _flipped(data: bytes, bit: int) -> bytes:
    out = bytearray(data)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


def _flip_positions(n_bytes: int, count: int, seed: int = 0) -> list[int]:
    """Bit positions over the whole file: the gzip header and trailer, the first and last tar blocks
    (member headers, end-of-archive padding), and random bits in between."""
    rng = np.random.default_rng(seed)
    edges = [*range(0, 10 * 8, 3), *range((n_bytes - 8) * 8, n_bytes * 8, 5)]
    return sorted({*edges, *rng.integers(0, n_bytes * 8, size=count - len(edges)).tolist()})


def test_every_bit_flip_of_the_official_archive_is_refused(tmp_path, as_official):
    path = tmp_path / ARCHIVE_NAME
    helper.make_cifar10_archive(path, n_train_per_batch=3, n_test=3)
    good = as_official(path).read_bytes()
    read_cifar10(path)  # the unflipped archive reads
    positions = _flip_positions(len(good), 150)
    for bit in positions:
        path.write_bytes(_flipped(good, bit))
        with pytest.raises(DataError) as err:
            read_cifar10(path)
        message = _one_line(err)
        assert message.startswith(f"checksum mismatch for the CIFAR-10 archive {path}: expected md5 "), bit
        assert "(the official archive)" in message and "download again" in message
    assert len(positions) > 100


def test_bit_flips_in_another_archive_never_alter_the_data(tmp_path):
    """Without an md5 to hold it to (a re-packed archive of another name), the gzip CRC read at the very
    end still refuses every flip that changes what is read: a flip may only pass where it changes
    nothing (the gzip header's time or OS byte)."""
    path = tmp_path / SMALL
    helper.make_cifar10_archive(path, n_train_per_batch=3, n_test=3, seed=1)
    good = path.read_bytes()
    expected = read_cifar10(path)
    refused = harmless = 0
    for bit in _flip_positions(len(good), 150, seed=1):
        path.write_bytes(_flipped(good, bit))
        try:
            data = read_cifar10(path)
        except DataError as err:
            assert str(path) in str(err) and "\n" not in str(err)
            refused += 1
            continue
        assert bit // 8 < 10, f"a flip at byte {bit // 8} was read without an error"
        np.testing.assert_array_equal(data.train.images, expected.train.images)
        np.testing.assert_array_equal(data.train.labels, expected.train.labels)
        np.testing.assert_array_equal(data.test.images, expected.test.images)
        harmless += 1
    assert refused > 120


def test_a_bad_gzip_crc_at_the_end_is_refused(tmp_path):
    path = tmp_path / SMALL
    helper.make_cifar10_archive(path, n_train_per_batch=3, n_test=3)
    good = path.read_bytes()
    path.write_bytes(good[:-8] + bytes(b ^ 0xFF for b in good[-8:-4]) + good[-4:])  # the CRC32 of the data
    with pytest.raises(DataError) as err:
        read_cifar10(path)
    message = _one_line(err)
    assert str(path) in message and "at its end" in message and "CRC" in message


def test_a_renamed_copy_of_the_official_size_is_still_checked(tmp_path, monkeypatch, as_official):
    path = tmp_path / "cifar10.tgz"
    helper.make_cifar10_archive(path, n_train_per_batch=3, n_test=3)
    as_official(path)
    monkeypatch.setattr(archive, "ARCHIVE_SIZE", path.stat().st_size)
    assert archive.expected_md5(path) == archive.CIFAR10_MD5
    read_cifar10(path)
    path.write_bytes(_flipped(path.read_bytes(), 8 * 5))  # the gzip header's time: harmless to gzip
    with pytest.raises(DataError, match="checksum mismatch"):
        read_cifar10(path)
    assert archive.expected_md5(tmp_path / "other.tar.gz") is None  # no such file: not the official one


def test_an_explicit_md5_is_checked(tmp_path):
    path = tmp_path / SMALL
    helper.make_cifar10_archive(path, n_train_per_batch=3, n_test=3)
    assert len(read_cifar10(path, md5=md5sum(path).upper()).test) == 3
    with pytest.raises(DataError) as err:
        read_cifar10(path, md5="0" * 32)
    message = _one_line(err)
    assert str(path) in message and "0" * 32 in message and md5sum(path) in message
    assert "official" not in message


def test_a_corrupt_archive_in_the_cache_is_refused(tmp_path, monkeypatch, as_official):
    """The download cache's archive is checked when it is decoded, though ensure_archive does not hash it."""
    from cifarlab.data import cache, load_data

    path = cache.cache_root() / ARCHIVE_NAME
    helper.make_cifar10_archive(path, n_train_per_batch=3, n_test=3)
    as_official(path)
    path.write_bytes(_flipped(path.read_bytes(), 8 * 300 + 2))
    with pytest.raises(DataError) as err:
        load_data(progress=False)
    assert str(path) in _one_line(err) and "checksum mismatch" in str(err.value)


def test_the_cli_refuses_a_flipped_archive_in_one_line(tmp_path, as_official, capsys):
    from cifarlab.cli import main

    path = tmp_path / ARCHIVE_NAME
    helper.make_cifar10_archive(path, n_train_per_batch=3, n_test=3)
    good = as_official(path).read_bytes()
    for bit in (8 * 40 + 1, 8 * (len(good) // 2), 8 * (len(good) - 6)):
        path.write_bytes(_flipped(good, bit))
        out = tmp_path / f"run{bit}"
        assert main(["train", "--data", str(path), "--epochs", "1", "--out", str(out)]) == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and "Traceback" not in err
        assert str(path) in err and "checksum mismatch" in err
        assert not out.exists() or not any(out.iterdir())


# ---------------------------------------------------------------------------------------- download


class _Server:
    """A tiny HTTP server on 127.0.0.1 with knobs for misbehaving: drop the connection or stall
    part-way, fail with a status code, support Range or not."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.ranges = True
        self.drop_after: int | None = None  # first GET: send this many body bytes, then hang up
        self.stall_after: int | None = None  # first GET: send this many body bytes, then go silent
        self.stall_s = 1.5
        self.fail_first: list[int] = []  # status codes to answer the first GETs with
        self.requests: list[dict] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def do_GET(self):  # noqa: N802 - http.server's name
                first = not server.requests
                server.requests.append({"path": self.path, "range": self.headers.get("Range")})
                if server.fail_first:
                    self.send_error(server.fail_first.pop(0))
                    return
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                start = 0
                wanted = self.headers.get("Range")
                if server.ranges and wanted and wanted.startswith("bytes=") and wanted.endswith("-"):
                    start = int(wanted[len("bytes="):-1])
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(body) - start))
                self.send_header("Accept-Ranges", "bytes" if server.ranges else "none")
                self.end_headers()
                chunk = body[start:]
                if first and server.drop_after is not None:
                    self.wfile.write(chunk[: server.drop_after])
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if first and server.stall_after is not None:
                    self.wfile.write(chunk[: server.stall_after])
                    self.wfile.flush()
                    time.sleep(server.stall_s)
                    return
                self.wfile.write(chunk)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def add(self, path: str, body: bytes) -> str:
        self.files[path] = body
        return self.url(path)


@pytest.fixture
def server():
    s = _Server()
    s.thread.start()
    try:
        yield s
    finally:
        s.httpd.shutdown()
        s.httpd.server_close()
        s.thread.join(timeout=5)


@pytest.fixture(autouse=True)
def _fast_backoff(monkeypatch):
    monkeypatch.setattr(archive, "_BACKOFF_S", 0.01)


@pytest.fixture
def payload() -> bytes:
    return np.random.default_rng(1).integers(0, 256, size=300_000, dtype=np.uint8).tobytes()


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def test_md5sum(tmp_path, payload):
    (tmp_path / "f").write_bytes(payload)
    assert md5sum(tmp_path / "f") == _md5(payload)
    assert md5sum(str(tmp_path / "f")) == _md5(payload)


@pytest.mark.parametrize("progress", [False, True])
def test_download_from_local_server(tmp_path, server, payload, progress, capsys):
    url = server.add("/data.bin", payload)
    dest = tmp_path / "cache" / "data.bin"
    assert download(url, dest, _md5(payload), progress=progress, timeout=5) == dest
    assert dest.read_bytes() == payload
    assert sorted(p.name for p in dest.parent.iterdir()) == ["data.bin"]  # no .part left behind
    err = capsys.readouterr().err
    if progress:  # stderr is not a terminal here: the bar still works and does not crash
        assert "data.bin" in err
    else:
        assert err == ""


def test_download_without_checksum(tmp_path, server, payload):
    url = server.add("/x", payload)
    dest = download(url, tmp_path / "x", None, progress=False, timeout=5)
    assert dest.read_bytes() == payload


def test_wrong_checksum_leaves_nothing(tmp_path, server, payload):
    url = server.add("/data.bin", payload)
    cache = tmp_path / "cache"
    wrong = "0" * 32
    with pytest.raises(DataError) as err:
        download(url, cache / "data.bin", wrong, progress=False, timeout=5)
    message = _one_line(err)
    assert url in message and wrong in message and _md5(payload) in message
    assert list(cache.iterdir()) == []


def test_dropped_connection_resumes_with_range(tmp_path, server, payload):
    url = server.add("/data.bin", payload)
    server.drop_after = 100_000
    dest = tmp_path / "data.bin"
    download(url, dest, _md5(payload), progress=False, timeout=5, retries=2)
    assert dest.read_bytes() == payload
    assert len(server.requests) == 2
    assert server.requests[0]["range"] is None
    assert server.requests[1]["range"] == "bytes=100000-"  # resumed, not restarted


def test_dropped_connection_restarts_without_range_support(tmp_path, server, payload):
    url = server.add("/data.bin", payload)
    server.ranges = False
    server.drop_after = 100_000
    dest = tmp_path / "data.bin"
    download(url, dest, _md5(payload), progress=False, timeout=5, retries=2)
    assert dest.read_bytes() == payload
    assert len(server.requests) == 2


def test_stalled_transfer_times_out_and_resumes(tmp_path, server, payload):
    url = server.add("/data.bin", payload)
    server.stall_after = 50_000
    dest = tmp_path / "data.bin"
    download(url, dest, _md5(payload), progress=False, timeout=0.3, retries=2)
    assert dest.read_bytes() == payload
    assert server.requests[1]["range"] == "bytes=50000-"


def test_server_error_is_retried(tmp_path, server, payload):
    url = server.add("/data.bin", payload)
    server.fail_first = [503]
    download(url, tmp_path / "data.bin", _md5(payload), progress=False, timeout=5, retries=1)
    assert (tmp_path / "data.bin").read_bytes() == payload


def test_gives_up_after_retries(tmp_path, server, payload):
    url = server.add("/data.bin", payload)
    server.fail_first = [503, 503, 503]
    with pytest.raises(DataError) as err:
        download(url, tmp_path / "data.bin", _md5(payload), progress=False, timeout=5, retries=2)
    message = _one_line(err)
    assert url in message and "503" in message and "data=PATH" in message
    assert len(server.requests) == 3
    assert list(tmp_path.iterdir()) == []


def test_not_found_is_not_retried(tmp_path, server):
    url = server.url("/missing.tar.gz")
    with pytest.raises(DataError) as err:
        download(url, tmp_path / "a.tar.gz", None, progress=False, timeout=5, retries=3)
    message = _one_line(err)
    assert url in message and "404" in message and "CIFARLAB_DATA" in message
    assert len(server.requests) == 1
    assert list(tmp_path.iterdir()) == []


def test_bad_url_fails_at_once(tmp_path):
    with pytest.raises(DataError) as err:
        download("nosuchscheme://host/x", tmp_path / "x", None, progress=False, retries=50)
    assert "nosuchscheme://host/x" in _one_line(err) and "data=" in str(err.value)
    assert list(tmp_path.iterdir()) == []


def test_refused_connection_says_how_to_use_local_data(tmp_path):
    with socket.socket() as closed:  # bound but not listening: connecting is refused, race-free
        closed.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{closed.getsockname()[1]}/{ARCHIVE_NAME}"
        started = time.monotonic()
        with pytest.raises(DataError) as err:
            download(url, tmp_path / ARCHIVE_NAME, CIFAR10_MD5, progress=False, timeout=2, retries=1)
        assert time.monotonic() - started < 5
    message = _one_line(err)
    assert message.startswith(f"could not download CIFAR-10 from {url} (")
    assert "data=PATH" in message and "CIFARLAB_DATA" in message
    assert list(tmp_path.iterdir()) == []


def test_ensure_archive_downloads_once(tmp_path, server, monkeypatch, as_official):
    body_path = tmp_path / "served.tar.gz"
    written = helper.make_cifar10_archive(body_path, seed=9)
    as_official(body_path)
    body = body_path.read_bytes()
    url = server.add("/cifar.tar.gz", body)
    cache = tmp_path / "cache"

    path = ensure_archive(cache, url=url, md5=_md5(body), progress=False)
    assert path == cache / ARCHIVE_NAME and path.read_bytes() == body
    assert len(server.requests) == 1
    np.testing.assert_array_equal(read_cifar10(path).test.images, written.test_images)

    def no_download(*args, **kwargs):
        raise AssertionError("ensure_archive downloaded although the archive was there")

    def no_hashing(*args, **kwargs):
        raise AssertionError("ensure_archive re-hashed the cached archive")

    monkeypatch.setattr(archive, "download", no_download)
    monkeypatch.setattr(archive, "md5sum", no_hashing)
    assert ensure_archive(cache, url=url, md5=_md5(body), progress=False) == path
    assert len(server.requests) == 1


def test_ensure_archive_uses_existing_file_offline(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / ARCHIVE_NAME).write_bytes(b"already here")
    monkeypatch.setattr(archive, "download", lambda *a, **k: pytest.fail("should not download"))
    assert ensure_archive(cache, url="http://127.0.0.1:9/unreachable") == cache / ARCHIVE_NAME
    assert (cache / ARCHIVE_NAME).read_bytes() == b"already here"

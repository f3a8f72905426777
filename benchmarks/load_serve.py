"""A bounded load test of `cifarlab serve` on 127.0.0.1: valid and invalid uploads, some concurrent.

Starts `cifarlab serve RUN_DIR` on a free port of 127.0.0.1 (nothing else is ever contacted), warms it up,
then sends --requests requests drawn from a fixed mix (good images of several formats and sizes, a
4096x4096 PNG, a class chosen by name and by index, an unknown class, text, a truncated PNG, a
decompression bomb, too many pixels, a 6 MB file with a Content-Length and a 30 MB one sent chunked,
/api/random with good and bad seeds), --concurrency at a time, then two bursts of --burst (default
--concurrency) simultaneous 4096x4096 uploads (the worst case for memory), and stops the server. Every kind has the
status it must get; the server's resident memory (RSS) is sampled throughout.

Before that, stalled clients: --stalled uploads (default: the server's body slots + 4) send their headers
and a few bytes, and BODY_SLOTS // 2 more send 100 KB (enough to take a body slot), then all of them stop
sending; while they hang, valid uploads (small and 200 KB) and valid GETs (/, /api/info, /api/random) are
sent. Every valid request must be answered within --answer-s seconds, every stalled one must get a 408
within the server's body time limit (webapp.limits.BODY_SECONDS) and 2 s.

Passes (exit 0) when no answer is a 5xx or a dropped connection, every kind got its expected status, the
stalled clients kept no one waiting, and the server's RSS, after the load and a short rest, is back within
--rss-bound-mb of its level after the warm-up. Without RUN_DIR it trains a tiny throwaway run first (3
classes of synthetic images, 1 epoch).

    python benchmarks/load_serve.py [RUN_DIR] [--requests 300] [--concurrency 20] [--json out.json]

Bounded: at most --requests + 2 x --burst requests and --deadline seconds (then it stops sending), the stalled
clients BODY_SECONDS + 5 s at most, and the server is always stopped at the end.
"""
from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

HOST = "127.0.0.1"
BOUNDARY = "cifarlabloadtestboundary"


# ------------------------------------------------------------------------------------------ payloads


def _image(fmt: str, size: tuple[int, int], mode: str = "RGB", seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    img = Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).convert(mode)
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def _smooth_png(size: tuple[int, int]) -> bytes:
    """A large image that compresses well: within the upload limit, ~50 MB once decoded."""
    y, x = np.indices((size[1], size[0]))
    rgb = np.stack([x % 256, y % 256, (x + y) // 32 % 256], axis=-1).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return buf.getvalue()


def _flat_png(size: tuple[int, int]) -> bytes:
    """A one-colour PNG: tiny on disk, huge once decoded (a decompression bomb when large)."""
    buf = io.BytesIO()
    Image.new("1", size).save(buf, format="PNG")
    return buf.getvalue()


def _multipart(data: bytes, filename: str = "image.png", **fields: str) -> bytes:
    parts = [f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
             for k, v in fields.items()]
    parts.append(f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
                 f"Content-Type: application/octet-stream\r\n\r\n".encode() + data + b"\r\n")
    return b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()


def request_kinds(classes: list[str], big_mb: int = 30) -> dict[str, dict]:
    """Each kind of request: how to send it, and the status it must get."""
    png = _image("PNG", (32, 32))
    truncated = _image("PNG", (64, 64), seed=1)
    form = lambda data, **f: {"method": "POST", "path": "/api/predict", "body": _multipart(data, **f)}  # noqa: E731
    return {
        "png 32x32": {**form(png), "expect": 200},
        "jpeg 64x48": {**form(_image("JPEG", (64, 48)), filename="a.jpg"), "expect": 200},
        "gif palette": {**form(_image("GIF", (40, 40), "P"), filename="a.gif"), "expect": 200},
        "png 4096x4096": {**form(_smooth_png((4096, 4096))), "expect": 200},
        "target by name": {**form(png, target=classes[-1]), "expect": 200},
        "target by index": {**form(png, target=str(len(classes) - 1)), "expect": 200},
        "unknown target": {**form(png, target="no-such-class"), "expect": 400},
        "target index out of range": {**form(png, target=str(len(classes))), "expect": 400},
        "top_k 0": {**form(png, top_k="0"), "expect": 422},
        "text file": {**form(b"just text, not a picture\n" * 20, filename="a.txt"), "expect": 415},
        "ico": {**form(_image("ICO", (32, 32)), filename="a.ico"), "expect": 415},
        "truncated png": {**form(truncated[: len(truncated) // 2]), "expect": 400},
        "empty file": {**form(b""), "expect": 400},
        "bomb 14000x14000": {**form(_flat_png((14000, 14000))), "expect": 413},
        "5000x4000 pixels": {**form(_flat_png((5000, 4000))), "expect": 413},
        "6 MB with length": {**form(b"\x89PNG" + bytes(6 * 2**20)), "expect": 413},
        f"{big_mb} MB chunked": {"method": "POST", "path": "/api/predict", "chunked_mb": big_mb, "expect": 413},
        "no file": {"method": "POST", "path": "/api/predict", "body": f"--{BOUNDARY}--\r\n".encode(),
                    "expect": 422},
        "random seed 7": {"method": "GET", "path": "/api/random?seed=7", "expect": 200},
        "random seed -1": {"method": "GET", "path": "/api/random?seed=-1", "expect": 422},
        "random seed abc": {"method": "GET", "path": "/api/random?seed=abc", "expect": 422},
        "info": {"method": "GET", "path": "/api/info", "expect": 200},
    }


def _chunks(mb: int):
    yield f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="big.png"\r\n\r\n'.encode()
    block = b"\x89PNG" + bytes(2**20 - 4)
    for _ in range(mb):
        yield block
    yield f"\r\n--{BOUNDARY}--\r\n".encode()


def send(port: int, kind: dict, timeout: float = 120.0) -> tuple[int | str, float]:
    """(status code, or the name of the error that replaced it; seconds)."""
    start = time.perf_counter()
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        headers = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"} if kind["method"] == "POST" else {}
        if "chunked_mb" in kind:
            conn.request("POST", kind["path"], body=_chunks(kind["chunked_mb"]), headers=headers, encode_chunked=True)
        else:
            conn.request(kind["method"], kind["path"], body=kind.get("body"), headers=headers)
        response = conn.getresponse()
        body = response.read()
        status: int | str = response.status
        if response.status >= 400:
            try:
                detail = json.loads(body).get("detail")
            except ValueError:
                detail = None
            if not detail:
                status = f"{response.status} without a message"
    except (OSError, http.client.HTTPException) as e:
        status = type(e).__name__
    finally:
        conn.close()
    return status, time.perf_counter() - start


# ------------------------------------------------------------------------------------------ stalled clients
STALL_MARGIN_S = 2.0  # a stalled client's 408 may come this much after the server's body time limit


def _stalled_upload(port: int, sent: int) -> socket.socket:
    """A connection that announced a 1 MB upload, sent its headers and `sent` bytes of it, and stops."""
    s = socket.create_connection((HOST, port), timeout=5)
    s.sendall(f"POST /api/predict HTTP/1.1\r\nHost: {HOST}:{port}\r\nContent-Type: multipart/form-data; "
              f"boundary={BOUNDARY}\r\nContent-Length: {2**20}\r\n\r\n".encode()
              + f"--{BOUNDARY}\r\n".encode().ljust(sent, b"x"))
    return s


def _status_line(s: socket.socket, timeout: float) -> int | str:
    """The status a stalled connection gets, or what happened instead."""
    s.settimeout(timeout)
    try:
        head = s.recv(4096).split(b"\r\n", 1)[0].split()
        return int(head[1]) if len(head) > 1 and head[1].isdigit() else "closed without an answer"
    except TimeoutError:
        return "no answer"
    except OSError as e:
        return type(e).__name__
    finally:
        s.close()


def stall_test(port: int, kinds: dict[str, dict], n_stalled: int, answer_s: float) -> dict:
    """Stalled uploads hang while valid requests (uploads and GETs, twice each) are sent: what each side got,
    and after how long."""
    from cifarlab.webapp.limits import BODY_SECONDS, BODY_SLOTS, SMALL_BODY_BYTES

    big = _multipart(_image("PNG", (256, 256)))  # ~200 KB: it needs a body slot
    valid = {"png 32x32": kinds["png 32x32"], "info": kinds["info"], "random seed 7": kinds["random seed 7"],
             "png 256x256": {"method": "POST", "path": "/api/predict", "body": big, "expect": 200},
             "page": {"method": "GET", "path": "/", "expect": 200}}
    heavy = 100 * 1024  # past SMALL_BODY_BYTES: each of these holds a slot while it hangs
    assert min(heavy, len(big)) > SMALL_BODY_BYTES
    started = time.monotonic()
    stalled = [_stalled_upload(port, n) for n in [16] * n_stalled + [heavy] * (BODY_SLOTS // 2)]
    time.sleep(0.5)  # the server has read what they sent and waits for the rest
    with ThreadPoolExecutor(len(stalled) + 2 * len(valid)) as pool:
        waiting = pool.map(lambda s: (_status_line(s, BODY_SECONDS + 5), time.monotonic() - started), stalled)
        results = list(pool.map(lambda name: (name, *send(port, valid[name], timeout=answer_s + 5)),
                                list(valid) * 2))
        answers = list(waiting)
    rows = [{"kind": name, "status": status, "seconds": round(took, 2),
             "ok": status == valid[name]["expect"] and took <= answer_s} for name, status, took in results]
    bound = BODY_SECONDS + STALL_MARGIN_S
    return {"stalled": len(stalled), "body_slots": BODY_SLOTS, "stalled_bound_s": bound, "answer_s": answer_s,
            "stalled_statuses": {str(k): v for k, v in Counter(status for status, _ in answers).items()},
            "stalled_max_s": round(max(took for _, took in answers), 2),
            "stalled_ok": all(status == 408 and took <= bound for status, took in answers), "valid": rows}


# ------------------------------------------------------------------------------------------ the server


def rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import psutil

    return psutil.Process(pid).memory_info().rss / 2**20


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def start_server(run_dir: Path, port: int, timeout: float = 120.0) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "cifarlab", "serve", str(run_dir), "--host", HOST, "--port", str(port),
           "--device", "cpu"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")})
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited ({proc.returncode}): {proc.stderr.read()[-2000:]}")
        try:
            conn = http.client.HTTPConnection(HOST, port, timeout=2)
            conn.request("GET", "/api/info")
            if conn.getresponse().status == 200:
                conn.close()
                return proc
        except OSError:
            time.sleep(0.2)
    stop_server(proc)
    raise RuntimeError(f"the server did not answer within {timeout:.0f} s")


def stop_server(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def tiny_run(workdir: Path) -> Path:
    """A throwaway trained run: 3 classes x 40 synthetic images, baseline, 1 epoch (seconds on a CPU)."""
    import cifarlab

    data = workdir / "data"
    rng = np.random.default_rng(0)
    for split, n in (("train", 40), ("test", 8)):
        for c, name in enumerate(("cat", "dog", "frog")):
            folder = data / split / name
            folder.mkdir(parents=True)
            for i in range(n):
                img = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
                img[..., c] //= 4  # a learnable colour cue
                Image.fromarray(img).save(folder / f"{i:03d}.png")
    out = workdir / "run"
    cifarlab.train(model="baseline", epochs=1, data=str(data), val_size=12, out=str(out), precision="fp32",
                   verbose=False)
    return out


# ------------------------------------------------------------------------------------------ the test


def load_test(run_dir: Path, n_requests: int = 300, concurrency: int = 20, deadline_s: float = 600.0,
              big_mb: int = 30, rest_s: float = 3.0, burst: int | None = None, seed: int = 0,
              n_stalled: int | None = None, answer_s: float = 5.0) -> dict:
    port = free_port()
    server = start_server(run_dir, port)
    try:
        conn = http.client.HTTPConnection(HOST, port, timeout=30)
        conn.request("GET", "/api/info")
        classes = json.loads(conn.getresponse().read())["classes"]
        conn.close()
        kinds = request_kinds(classes, big_mb)
    except BaseException:
        stop_server(server)
        raise
    samples: list[float] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            samples.append(rss_mb(server.pid))
            stop.wait(0.05)

    try:
        for kind in kinds.values():  # warm-up: every code path once (lazy imports, the test split, caches)
            status, _ = send(port, kind)
            if kind["path"].startswith("/api/random?seed=7") and status == 404:
                kind["expect"] = 404  # the run's test images are not on this machine: a 404 is the answer
        from cifarlab.webapp.limits import BODY_SLOTS

        stall = stall_test(port, kinds, BODY_SLOTS + 4 if n_stalled is None else n_stalled, answer_s)
        time.sleep(rest_s)
        before = rss_mb(server.pid)
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        rng = random.Random(seed)
        names = list(kinds)
        # every kind at least once, the rest at random; the big ones are rarer
        weights = [0.3 if ("4096" in n or "chunked" in n or "6 MB" in n) else 1.0 for n in names]
        plan = names + rng.choices(names, weights, k=max(0, n_requests - len(names)))
        rng.shuffle(plan)
        plan = plan[:n_requests]
        started = time.monotonic()
        results: dict[str, Counter] = defaultdict(Counter)
        seconds: dict[str, list[float]] = defaultdict(list)

        def one(name: str) -> None:
            if time.monotonic() - started > deadline_s:
                results[name]["skipped (deadline)"] += 1
                return
            status, took = send(port, kinds[name])
            results[name][status] += 1
            seconds[name].append(took)

        with ThreadPoolExecutor(concurrency) as pool:
            list(pool.map(one, plan))
            # then the worst case for memory: `burst` large images at the same moment, twice
            list(pool.map(one, ["png 4096x4096"] * (2 * (concurrency if burst is None else burst))))
        wall = time.monotonic() - started
        time.sleep(rest_s)
        after = rss_mb(server.pid)
        stop.set()
        sampler.join()
        alive = server.poll() is None
    finally:
        stop.set()
        stop_server(server)
    rows = []
    for name in names:
        got = results.get(name, Counter())
        rows.append({"kind": name, "expect": kinds[name]["expect"], "sent": sum(got.values()),
                     "statuses": {str(k): v for k, v in sorted(got.items(), key=str)},
                     "ok": set(got) <= {kinds[name]["expect"]},
                     "max_s": round(max(seconds.get(name, [0.0])), 2)})
    statuses = Counter()
    for got in results.values():
        statuses.update(got)
    return {"requests": sum(statuses.values()), "concurrency": concurrency, "wall_s": round(wall, 1),
            "statuses": {str(k): v for k, v in sorted(statuses.items(), key=str)},
            "n_5xx": sum(v for k, v in statuses.items() if (_code(k) or 0) >= 500),
            "n_dropped": sum(v for k, v in statuses.items() if _code(k) is None),
            "rss_before_mb": round(before, 1), "rss_peak_mb": round(max(samples, default=before), 1),
            "rss_after_mb": round(after, 1), "server_alive": alive, "kinds": rows, "stall": stall}


def _code(status: int | str) -> int | None:
    """The HTTP status of a result (also of "500 without a message"); None for a dropped connection."""
    if isinstance(status, int):
        return status
    head = status.split(" ", 1)[0]
    return int(head) if head.isdigit() else None


def print_table(result: dict, bound_mb: float) -> None:
    print(f"{'kind':<28}{'expect':>7}{'sent':>6}  {'statuses':<32}{'max s':>7}")
    for r in result["kinds"]:
        statuses = ", ".join(f"{k}: {v}" for k, v in r["statuses"].items())
        print(f"{r['kind']:<28}{r['expect']:>7}{r['sent']:>6}  {statuses:<32}{r['max_s']:>7}"
              f"{'' if r['ok'] else '  <- unexpected'}")
    print(f"\n{result['requests']} requests, {result['concurrency']} at a time, {result['wall_s']} s; statuses "
          f"{result['statuses']}; 5xx: {result['n_5xx']}; dropped connections: {result['n_dropped']}")
    print(f"server RSS: before {result['rss_before_mb']} MB, peak {result['rss_peak_mb']} MB, after "
          f"{result['rss_after_mb']} MB (bound: after <= before + {bound_mb:g} MB)")
    stall = result["stall"]
    slowest = max(r["seconds"] for r in stall["valid"])
    print(f"stalled clients: {stall['stalled']} (body slots: {stall['body_slots']}) got {stall['stalled_statuses']} "
          f"within {stall['stalled_max_s']} s (bound {stall['stalled_bound_s']:g} s); meanwhile "
          f"{len(stall['valid'])} valid requests answered within {slowest} s (bound {stall['answer_s']:g} s)")


def passed(result: dict, bound_mb: float) -> list[str]:
    """What failed (empty when the load test passed)."""
    problems = []
    if result["n_5xx"]:
        problems.append(f"{result['n_5xx']} answers were 5xx")
    if result["n_dropped"]:
        problems.append(f"{result['n_dropped']} requests got no answer")
    problems += [f"{r['kind']}: expected {r['expect']}, got {r['statuses']}" for r in result["kinds"] if not r["ok"]]
    if result["rss_after_mb"] > result["rss_before_mb"] + bound_mb:
        problems.append(f"RSS after the load {result['rss_after_mb']} MB > before {result['rss_before_mb']} MB "
                        f"+ {bound_mb:g} MB")
    if not result["server_alive"]:
        problems.append("the server died")
    stall = result["stall"]
    if not stall["stalled_ok"]:
        problems.append(f"stalled clients: expected a 408 within {stall['stalled_bound_s']:g} s each, got "
                        f"{stall['stalled_statuses']}, the last after {stall['stalled_max_s']} s")
    problems += [f"beside stalled clients, {r['kind']}: {r['status']} after {r['seconds']} s (bound "
                 f"{stall['answer_s']:g} s)" for r in stall["valid"] if not r["ok"]]
    return problems


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run_dir", nargs="?", help="a trained run (default: train a tiny throwaway one)")
    p.add_argument("--requests", type=int, default=300)
    p.add_argument("--concurrency", type=int, default=20)
    p.add_argument("--deadline", type=float, default=600.0, help="stop sending after this many seconds")
    p.add_argument("--big-mb", type=int, default=30, help="size of the chunked upload (MB)")
    p.add_argument("--burst", type=int, help="simultaneous 4096x4096 uploads at the end, twice (default: "
                                              "--concurrency)")
    p.add_argument("--rest", type=float, default=3.0, help="idle seconds before RSS is read")
    p.add_argument("--stalled", type=int, help="uploads that send a few bytes and stall (default: the server's "
                                                "body slots + 4)")
    p.add_argument("--answer-s", type=float, default=5.0,
                   help="beside the stalled clients, every valid request must be answered within this")
    p.add_argument("--rss-bound-mb", type=float, default=150.0,
                   help="RSS after the load may exceed RSS after the warm-up by at most this much")
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="cifarlab-load-") as tmp:
        run_dir = Path(args.run_dir) if args.run_dir else tiny_run(Path(tmp))
        result = load_test(run_dir, args.requests, args.concurrency, args.deadline, args.big_mb, args.rest,
                           args.burst, n_stalled=args.stalled, answer_s=args.answer_s)
    print_table(result, args.rss_bound_mb)
    problems = passed(result, args.rss_bound_mb)
    result["problems"] = problems
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    for problem in problems:
        print(f"FAIL: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

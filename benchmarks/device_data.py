"""Carry the real CIFAR-10 to a lent GPU machine, which cannot reach ../shared (the device tool's notes).

The device tool takes at most 64 MiB per call, and the 60,000 images are 184 MB of pixels. Packed as
lossless WebP mosaics (10,000 images each, about 0.53 of the raw bytes) they fit in two calls of about
50 MB; the first call's part stays on the warm machine for the second.

    python benchmarks/device_data.py pack --data ../shared/data/cifar10 --out .gpu --parts 2   # here
    python benchmarks/device_data.py unpack .gpu/a .gpu/b --to /tmp/cifar10                  # there

`unpack` writes the image-folder tree cifarlab reads (train/<class>/NNNNN.png, test/...), in the same order
as the source, and refuses to write anything unless the decoded pixels' SHA-256 equal the source's.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import string
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

PER_MOSAIC = 10_000
COLUMNS = 100  # images per mosaic row: 3,200 px wide, within WebP's 16,383
META = "meta.json"


def to_mosaic(images: np.ndarray) -> np.ndarray:
    rows = len(images) // COLUMNS
    return images.reshape(rows, COLUMNS, 32, 32, 3).transpose(0, 2, 1, 3, 4).reshape(rows * 32, COLUMNS * 32, 3)


def from_mosaic(mosaic: np.ndarray) -> np.ndarray:
    rows = mosaic.shape[0] // 32
    return mosaic.reshape(rows, 32, COLUMNS, 32, 3).transpose(0, 2, 1, 3, 4).reshape(rows * COLUMNS, 32, 32, 3)


def digest(images: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(images).tobytes()).hexdigest()


def _encode(job: tuple[np.ndarray, str, int]) -> str:
    images, path, effort = job
    mosaic = to_mosaic(images)
    Image.fromarray(mosaic).save(path, format="WEBP", lossless=True, quality=100, method=effort)
    if not (np.asarray(Image.open(path).convert("RGB")) == mosaic).all():
        raise SystemExit(f"error: {path} does not decode to the pixels it was made from")
    return path


def _map(fn, jobs: list, workers: int | None) -> list:
    """fn over jobs, in `workers` processes (None: one per CPU; 1: in this process)."""
    if workers == 1:
        return [fn(job) for job in jobs]
    with ProcessPoolExecutor(workers) as pool:
        return list(pool.map(fn, jobs, chunksize=max(1, len(jobs) // 64)))


def pack(data: str, out: Path, parts: int, workers: int | None = 2, effort: int = 6) -> None:
    """The parts, in out/a, out/b, ...; effort: WebP's method, 0 (fast) to 6 (smallest, 1 minute a mosaic)."""
    from cifarlab.data import load_data

    d = load_data(data, progress=False)
    if len(d.train.images) % COLUMNS or len(d.test.images) % COLUMNS:
        raise SystemExit(f"error: {data}: split sizes must be multiples of {COLUMNS}")
    mosaics = [(f"{name}{i}", split.images[i * PER_MOSAIC:(i + 1) * PER_MOSAIC])
               for name, split in (("train", d.train), ("test", d.test))
               for i in range(-(-len(split.images) // PER_MOSAIC))]
    per_part = -(-len(mosaics) // parts)
    folders = [out / string.ascii_lowercase[k // per_part] for k in range(len(mosaics))]
    for folder in set(folders):
        folder.mkdir(parents=True, exist_ok=True)
    jobs = [(images, str(folder / f"{name}.webp"), effort) for (name, images), folder in zip(mosaics, folders)]
    for path in _map(_encode, jobs, workers):
        print(path, flush=True)
    meta = {"classes": d.classes, "train_labels": d.train.labels.tolist(), "test_labels": d.test.labels.tolist(),
            "sha256_train": digest(d.train.images), "sha256_test": digest(d.test.images), "source": d.source}
    (folders[-1] / META).write_text(json.dumps(meta))


def _write_png(job: tuple[np.ndarray, str]) -> None:
    Image.fromarray(job[0]).save(job[1], format="PNG")


def unpack(parts: list[Path], to: Path, workers: int | None = None) -> None:
    files = {p.name: p for part in parts for p in part.iterdir()}
    if META not in files:
        raise SystemExit(f"error: no {META} in {', '.join(map(str, parts))}")
    meta = json.loads(files[META].read_text())
    split_images = {}
    for split in ("train", "test"):
        mosaics = sorted((n for n in files if n.startswith(split) and n.endswith(".webp")),
                         key=lambda n: int(n[len(split):-5]))
        images = np.concatenate([from_mosaic(np.asarray(Image.open(files[n]).convert("RGB"))) for n in mosaics])
        if digest(images) != meta[f"sha256_{split}"]:
            raise SystemExit(f"error: the {split} images decoded from {', '.join(mosaics)} differ from the source's")
        split_images[split] = images
    jobs = []
    for split, images in split_images.items():
        labels = meta[f"{split}_labels"]
        for i, (image, label) in enumerate(zip(images, labels)):
            folder = to / split / meta["classes"][label]
            folder.mkdir(parents=True, exist_ok=True)
            jobs.append((image, str(folder / f"{i:05d}.png")))
    _map(_write_png, jobs, workers)
    print(f"{to}: {len(split_images['train']):,} train and {len(split_images['test']):,} test images, "
          "pixels identical to the source's")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    a = sub.add_parser("pack", help="write the parts here")
    a.add_argument("--data", required=True)
    a.add_argument("--out", type=Path, default=Path(".gpu"))
    a.add_argument("--parts", type=int, default=2)
    b = sub.add_parser("unpack", help="write the image-folder tree there")
    b.add_argument("parts", type=Path, nargs="+")
    b.add_argument("--to", type=Path, required=True)
    args = p.parse_args()
    if args.command == "pack":
        pack(args.data, args.out, args.parts)
    else:
        unpack(args.parts, args.to)


if __name__ == "__main__":
    sys.exit(main())

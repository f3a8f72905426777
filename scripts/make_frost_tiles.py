"""Rebuild src/cifarlab/analysis/frost/ from the frost pictures of CIFAR-10-C's generator.

    python scripts/make_frost_tiles.py DIR
      DIR holds frost1.png, frost2.png, frost3.png, frost4.jpg, frost5.jpg as released with
      hendrycks/robustness (ImageNet-C/create_c/) and the `imagecorruptions` package (imagecorruptions/frost/).

The reference reads them with OpenCV (colour, the alpha channel dropped) and shrinks them with
`cv2.resize(frost, (0, 0), fx=0.2, fy=0.2)`: bilinear at scale 5 puts every output pixel exactly on source
pixel 5k + 2 (OpenCV's pixel centres: (k + 0.5) * 5 - 0.5), so the reduction is that subsample, no blending.
The output size is round(0.2 * size), as OpenCV computes it. Saved losslessly as PNG.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image

SOURCES = ("frost1.png", "frost2.png", "frost3.png", "frost4.jpg", "frost5.jpg")
OUT = Path(__file__).resolve().parents[1] / "src" / "cifarlab" / "analysis" / "frost"


def reduce_like_opencv(picture: np.ndarray) -> np.ndarray:
    h, w = picture.shape[:2]
    return picture[2::5, 2::5][:round(h * 0.2), :round(w * 0.2)]


def main(folder: str) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(SOURCES, start=1):
        picture = np.asarray(Image.open(Path(folder) / name).convert("RGBA"))[..., :3]
        small = reduce_like_opencv(picture)
        Image.fromarray(np.ascontiguousarray(small)).save(OUT / f"frost{i}.png", optimize=True)
        print(f"{name} {picture.shape[1]}x{picture.shape[0]} -> frost{i}.png {small.shape[1]}x{small.shape[0]}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])

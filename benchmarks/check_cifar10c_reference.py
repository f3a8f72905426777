"""Check cifarlab's corruptions against CIFAR-10-C's own generator, run beside them on real test images.

Needs the reference script (`make_cifar_c.py` from hendrycks/robustness, ImageNet-C/create_c/, with its
frost pictures beside it) and, in a separate environment, what it imports: OpenCV *4.x* (OpenCV 5 changed
`warpAffine` to float coordinates; CIFAR-10-C was made with the fixed-point one), scikit-image, and for
motion blur and snow ImageMagick 6 with its Python binding Wand (`apt-get install imagemagick`; without
them those two are left out and the check says so).

    python -m venv /tmp/ref && /tmp/ref/bin/pip install -e . scikit-image opencv-python-headless==4.10.0.84 Wand
    /tmp/ref/bin/python benchmarks/check_cifar10c_reference.py PATH/TO/create_c --data ../shared/data/cifar10

The reference's np.random calls are answered by the image's own
generator (`corruptions.image_generators`) where cifarlab draws in the reference's order, so those corruptions
must agree bit for bit; for the rest (impulse noise and glass blur: scikit-image's own generator) see
tests/test_corruptions.py. Prints, per corruption and severity, the share of values that agree exactly, the
largest difference and the mean difference (in 8-bit levels).
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
from PIL import Image

# reference function -> the np.random functions it calls, in cifarlab's order of draws
SHARED_DRAWS = {"gaussian_noise": ["normal"], "shot_noise": ["poisson"], "speckle_noise": ["normal"],
                "elastic_transform": ["uniform"], "spatter": ["normal"], "fog": ["uniform"], "frost": ["randint"]}
NEEDS_WAND = {"motion_blur": ["uniform"], "snow": ["normal", "uniform"]}  # ImageMagick's MotionBlurImage
DETERMINISTIC = ["defocus_blur", "zoom_blur", "brightness", "contrast", "saturate", "pixelate", "jpeg_compression",
                 "gaussian_blur"]


def wand_available() -> bool:
    """Whether Wand and the ImageMagick library it binds can be loaded (motion blur and snow need them)."""
    try:
        import wand.api  # noqa: F401 - loading it finds the ImageMagick library, or raises ImportError
    except ImportError:
        return False
    return True


def load_reference(folder: Path, with_wand: bool) -> dict:
    """The distortion functions of make_cifar_c.py with today's numpy and scikit-image spellings
    (`np.frombuffer`, `channel_axis=-1` for `multichannel=True`); without Wand (with_wand=False) its
    ImageMagick calls are stubbed, and motion blur and snow cannot run."""
    source = (folder / "make_cifar_c.py").read_text()
    source = source[:source.index("# /////////////// End Distortions")]
    if not with_wand:
        stub = "__import__('types').SimpleNamespace"
        source = (source.replace("from wand.image import Image as WandImage", "WandImage = object")
                  .replace("from wand.api import library as wandlibrary",
                           f"wandlibrary = {stub}(MagickMotionBlurImage={stub}())")
                  .replace("import wand.color as WandColor", ""))
    source = (source.replace("multichannel=True", "channel_axis=-1").replace("np.float_", "np.float64")
              .replace("np.fromstring(", "np.frombuffer(")
              .replace("from scipy.ndimage.interpolation import", "from scipy.ndimage import"))
    namespace: dict = {}
    exec(compile(source, str(folder / "make_cifar_c.py"), "exec"), namespace)  # noqa: S102 - the user's file
    return namespace


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("reference", type=Path, help="the folder holding make_cifar_c.py and frost1.png ...")
    p.add_argument("--data", help="CIFAR-10 (default: cifarlab's)")
    p.add_argument("--images", type=int, default=300)
    p.add_argument("--only", nargs="+", metavar="NAME", help="check only these corruptions")
    args = p.parse_args()
    from cifarlab.analysis import corruptions as C
    from cifarlab.data import load_data

    with_wand = wand_available()
    shared = {**SHARED_DRAWS, **(NEEDS_WAND if with_wand else {})}
    if not with_wand:
        print(f"Wand or ImageMagick is missing: {', '.join(NEEDS_WAND)} left out", flush=True)
    names = [n for n in [*shared, *DETERMINISTIC] if not args.only or n in args.only]
    reference = load_reference(args.reference, with_wand)
    images = load_data(args.data, progress=False).test.images[:args.images]
    os.chdir(args.reference)  # the reference opens './frost1.png'
    saved = {name: getattr(np.random, name) for name in ("normal", "poisson", "uniform", "randint")}
    worst = 0
    for name in names:
        cells = []
        for severity in C.SEVERITIES:
            ours = C.corrupt(images, name, severity)
            theirs = []
            for i, image in enumerate(images):
                rng = C.image_generators(0, name, severity, [i])[0]
                for fn in shared.get(name, []):
                    setattr(np.random, fn, rng.integers if fn == "randint" else getattr(rng, fn))
                theirs.append(np.uint8(reference[name](Image.fromarray(image), severity)))
                for fn, original in saved.items():
                    setattr(np.random, fn, original)
            diff = np.abs(ours.astype(int) - np.stack(theirs))
            worst = max(worst, int(diff.max()))
            cells.append(f"{(diff == 0).mean():.4f}/{diff.max()}/{diff.mean():.3f}")
        print(f"{name:18s} " + "  ".join(cells), flush=True)
    print("all equal" if worst == 0 else f"largest difference {worst}")
    sys.exit(0 if worst == 0 else 1)


if __name__ == "__main__":
    main()

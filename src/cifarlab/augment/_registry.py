"""The augmentation registry: one factory, `create_augment(spec)`, for every command that trains.

A spec is one policy name or several joined with `+` (`standard+cutout`, `standard+mixup`). Image
policies map a uint8 NCHW batch to a uint8 batch and run inside the DeviceLoader, on the training
device; mixing policies (mixup, cutmix) change the labels too and run in the training loop on the
normalized batch (see `BatchAugment.mix`). This module imports no torch, so `cifarlab --help` can list
the policies without loading it; each policy's module is imported when it is first created.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..errors import CifarlabError
from ..registry import Entry, Registry


@dataclass(frozen=True)
class AugmentEntry:
    """One policy as callers see it (a view of an AUGMENTS entry)."""

    name: str
    target: str | Callable  # "module:attribute" (imported lazily) or the factory itself
    kind: str  # "image": uint8 batch -> uint8 batch; "mix": (x, y) -> (x, y_a, y_b, lam)
    description: str

    def factory(self) -> Callable:
        return Entry(self.name, self.target, package=__package__).load()


# Every policy, "none" first; meta["kind"] is "image" or "mix".
AUGMENTS = Registry("augmentation", flag="--augment", package=__package__,
                    hint="(combine with +, e.g. standard+cutout; 'none' stands alone)")


def _unchanged() -> Callable:
    return lambda x, generator: x


AUGMENTS.register("none", _unchanged, description="no augmentation", kind="image")


def register_augment(name: str, target: str | Callable, kind: str = "image", description: str = "") -> None:
    """Register a policy: `target()` returns a callable `(x_uint8, generator) -> x_uint8` for kind
    "image", or `(x, y, generator) -> (x, y_a, y_b, lam)` for kind "mix"."""
    if kind not in ("image", "mix"):
        raise ValueError(f"kind must be 'image' or 'mix', got {kind!r}")
    if "+" in name:
        raise ValueError(f"augmentation {name!r} is not a valid name (+ joins policies)")
    AUGMENTS.register(name, target, description=description, kind=kind)


register_augment("keras", ".geometric:KerasAffine",
                 description="the Keras notebook's ImageDataGenerator: rotation ±20°, shifts ±10%, horizontal "
                             "flip, edge pixels repeated ('nearest' fill)")
register_augment("standard", ".geometric:PadCropFlip",
                 description="pad 4 (reflect) + random 32×32 crop, horizontal flip")
register_augment("altflip", ".geometric:AlternatingFlip",
                 description="alternating flip (airbench): each image flipped at random in the first epoch, then "
                             "the other way round every next epoch")
register_augment("translate", ".geometric:Translate", description="pad 2 (reflect) + random 32×32 crop, no flip")
register_augment("color", ".color:BrightnessContrast",
                 description="colour jitter (the 2025 speed record's): brightness ±0.14 and contrast ±13% of "
                             "the normalized image, per image")
register_augment("cutout", ".geometric:Cutout", description="one 16×16 square set to the CIFAR-10 mean colour")
register_augment("autoaugment", ".policies:autoaugment", description="torchvision AutoAugment, CIFAR-10 policy")
register_augment("randaugment", ".policies:randaugment", description="torchvision RandAugment (2 ops, magnitude 9)")
register_augment("trivialaugment", ".policies:trivialaugment", description="torchvision TrivialAugmentWide")
register_augment("mixup", ".mix:Mixup", kind="mix", description="mixup, alpha 1 (blends image pairs and labels)")
register_augment("cutmix", ".mix:CutMix", kind="mix",
                 description="CutMix, alpha 1 (pastes a box of another image; labels by area)")


def list_augments() -> list[str]:
    """The policy names, `none` first; combine them with `+`."""
    return AUGMENTS.names()


def describe_augments() -> dict[str, str]:
    return AUGMENTS.describe()


def get_augment_entry(name: str) -> AugmentEntry:
    entry = AUGMENTS.entry(name)
    return AugmentEntry(entry.name, entry.target, entry.meta["kind"], entry.description)


def parse_augment_spec(spec: str) -> list[str]:
    """The policy names of a spec, checked: `"standard+cutout"` -> ["standard", "cutout"]; "none" -> []."""
    if not isinstance(spec, str) or not spec.strip():
        raise CifarlabError(f"--augment needs a policy name, got {spec!r}")
    parts = [p.strip().lower() for p in spec.split("+")]
    names = [p for p in parts if p != "none"]
    unknown = [p for p in names if p not in AUGMENTS]
    if unknown:
        raise CifarlabError(AUGMENTS.unknown_message(unknown[0], context=f" in {spec!r}" if len(parts) > 1 else ""))
    if len(parts) > 1 and len(names) < len(parts):
        raise CifarlabError(f"--augment {spec!r}: 'none' stands alone (drop it, or give only none)")
    if len(set(names)) < len(names):
        raise CifarlabError(f"--augment {spec!r} names a policy twice")
    return names


class BatchAugment:
    """A parsed spec: `aug(x_uint8, generator)` runs the image policies in order (the DeviceLoader's
    hook); `aug.mix(x, y, generator)` runs the mixing policy, if any, on the normalized float batch."""

    def __init__(self, spec: str, transforms: list[Callable], mixers: list[Callable]):
        self.spec, self.transforms, self.mixers = spec, transforms, mixers

    @property
    def uses_index(self) -> bool:
        """Whether a policy needs each image's dataset index and the epoch (alternating flip does)."""
        return any(getattr(t, "uses_index", False) for t in self.transforms)

    def bind(self, num_images: int, seed: int, device) -> None:
        """Tell index-aware policies the dataset they will see (the DeviceLoader calls this once)."""
        for transform in self.transforms:
            if hasattr(transform, "bind"):
                transform.bind(num_images, seed, device)

    def __call__(self, x, generator, index=None, epoch: int = 0):
        for transform in self.transforms:
            if getattr(transform, "uses_index", False):
                x = transform(x, generator, index=index, epoch=epoch)
            else:
                x = transform(x, generator)
        return x

    def mix(self, x, y, generator):
        """(x, y_a, y_b, lam): the loss is lam·CE(y_a) + (1 − lam)·CE(y_b); (x, y, y, 1.0) without mixing.
        With both mixup and cutmix in the spec, each batch uses one of them, chosen at random."""
        if not self.mixers:
            return x, y, y, 1.0
        if len(self.mixers) == 1:
            return self.mixers[0](x, y, generator)
        import torch

        return self.mixers[int(torch.randint(len(self.mixers), (1,), generator=generator))](x, y, generator)

    def __repr__(self) -> str:
        return f"BatchAugment({self.spec!r})"


def create_augment(spec: str = "none") -> BatchAugment:
    """Build the augmentation of a spec, e.g. `create_augment("standard+cutout")`."""
    names = parse_augment_spec(spec)
    entries = [get_augment_entry(n) for n in names]
    return BatchAugment("+".join(names) or "none",
                        [e.factory()() for e in entries if e.kind == "image"],
                        [e.factory()() for e in entries if e.kind == "mix"])

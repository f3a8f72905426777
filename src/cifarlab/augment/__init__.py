"""Batched data augmentation on the training device: one factory, `create_augment(spec)`.

    create_augment("standard+cutout")   # pad-crop-flip, then cutout; the DeviceLoader's augment hook
    create_augment("standard+mixup")    # ... and mixup in the training loop (aug.mix)
    list_augments()                     # none, keras, standard, cutout, autoaugment, ...
"""
from ._registry import (
    AUGMENTS,
    AugmentEntry,
    BatchAugment,
    create_augment,
    describe_augments,
    get_augment_entry,
    list_augments,
    parse_augment_spec,
    register_augment,
)


def augment_preview(*args, **kwargs):
    from .preview import augment_preview as preview

    return preview(*args, **kwargs)


augment_preview.__doc__ = "Write a PNG grid of originals and augmented views; see cifarlab.augment.preview."

__all__ = ["AUGMENTS", "AugmentEntry", "BatchAugment", "augment_preview", "create_augment", "describe_augments",
           "get_augment_entry", "list_augments", "parse_augment_spec", "register_augment"]

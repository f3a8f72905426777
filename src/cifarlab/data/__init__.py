"""CIFAR-10 and image-folder data: loading, caching, splits and the in-memory batch loader."""
from .sources import ENV_VAR, describe_source, load_data, resolve_data_path
from .splits import Splits, default_val_size, make_splits, split_train_val, stratified_subset
from .types import CIFAR10_CLASSES, CIFAR10_MEAN, CIFAR10_STD, CifarData, ImageSet

__all__ = [
    "CIFAR10_CLASSES", "CIFAR10_MEAN", "CIFAR10_STD", "ENV_VAR", "CifarData", "ImageSet", "Splits", "default_val_size",
    "describe_source", "load_data", "make_splits", "resolve_data_path", "split_train_val", "stratified_subset",
]

"""Checks on the real CIFAR-10 image folders (../shared/data/cifar10). Slow: run with `pytest -m slow`."""
from __future__ import annotations

import numpy as np
import pytest

from cifarlab.data import CIFAR10_CLASSES, CIFAR10_MEAN, CIFAR10_STD, load_data, split_train_val

pytestmark = pytest.mark.slow


def test_real_tree_is_complete_and_has_the_known_statistics(real_data):
    data = load_data(real_data)
    assert data.classes == CIFAR10_CLASSES
    assert len(data.train) == 50_000 and len(data.test) == 10_000
    assert np.bincount(data.train.labels).tolist() == [5000] * 10
    pixels = data.train.images.reshape(-1, 3) / 255.0
    np.testing.assert_allclose(pixels.mean(0), CIFAR10_MEAN, atol=1e-6)
    np.testing.assert_allclose(pixels.std(0), CIFAR10_STD, atol=1e-6)


def test_default_validation_split_on_real_data(real_data):
    fit, val = split_train_val(load_data(real_data).train, None, seed=0)
    assert len(val) == 5000 and np.bincount(val.labels).tolist() == [500] * 10
    assert len(fit) == 45_000


def test_baseline_learns_on_real_data(real_data, tmp_path):
    import cifarlab

    r = cifarlab.train(model="baseline", epochs=1, data=str(real_data), train_size=10_000, out=str(tmp_path / "r"),
                       verbose=False)
    assert r.summary["test_accuracy"] > 0.35  # chance is 0.10; ~0.45 expected after one epoch on 10k images

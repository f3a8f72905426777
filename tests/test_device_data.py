"""benchmarks/device_data.py: the real data carried to a GPU machine as lossless WebP mosaics."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cifarlab.data import load_data
from conftest import write_image_tree

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "device_data.py"


@pytest.fixture(scope="module")
def device_data():
    spec = importlib.util.spec_from_file_location("device_data", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def packed(tmp_path, device_data):
    source = write_image_tree(tmp_path / "source", n_train=100, n_test=100)  # 300 + 300: whole mosaic rows
    device_data.pack(str(source), tmp_path / "parts", parts=2, workers=1, effort=0)
    return source, tmp_path / "parts"


def test_unpacked_tree_has_the_sources_pixels_labels_and_order(packed, device_data, tmp_path):
    source, parts = packed
    assert sorted(p.name for p in parts.iterdir()) == ["a", "b"]
    device_data.unpack([parts / "a", parts / "b"], tmp_path / "there", workers=1)
    before, after = load_data(source, use_cache=False), load_data(tmp_path / "there", use_cache=False)
    assert after.classes == before.classes
    for split in ("train", "test"):
        np.testing.assert_array_equal(getattr(after, split).images, getattr(before, split).images)
        np.testing.assert_array_equal(getattr(after, split).labels, getattr(before, split).labels)


def test_a_changed_pixel_is_refused_and_nothing_is_written(packed, device_data, tmp_path, capsys):
    _, parts = packed
    mosaic = next((parts / "a").glob("train*.webp"))
    pixels = np.asarray(Image.open(mosaic).convert("RGB")).copy()
    pixels[0, 0, 0] ^= 1
    Image.fromarray(pixels).save(mosaic, format="WEBP", lossless=True)
    with pytest.raises(SystemExit, match="train images decoded from .* differ from the source's"):
        device_data.unpack([parts / "a", parts / "b"], tmp_path / "there", workers=1)
    assert not (tmp_path / "there").exists()


def test_a_missing_part_is_a_one_line_error(packed, device_data, tmp_path):
    _, parts = packed
    with pytest.raises(SystemExit, match="no meta.json in"):
        device_data.unpack([parts / "a"], tmp_path / "there", workers=1)
    meta = json.loads((parts / "b" / "meta.json").read_text())
    assert len(meta["train_labels"]) == 300 and len(meta["sha256_test"]) == 64

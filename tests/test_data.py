"""Image-folder trees, the decode cache, source resolution, splits and the batch loader."""
from __future__ import annotations

import shutil
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from cifarlab._seeds import derived_generator, derived_seed
from cifarlab.data import cache, load_data, split_train_val, stratified_subset
from cifarlab.data import sources as sources_mod
from cifarlab.data.folder import read_image_folder
from cifarlab.data.loader import DeviceLoader
from cifarlab.errors import DataError, DataWarning
from conftest import CLASSES, synthetic_images, write_image_tree


def copy_tree(tiny_tree, tmp_path):
    return shutil.copytree(tiny_tree, tmp_path / "data")


# --- image-folder trees -------------------------------------------------------------------------

def test_folder_tree_round_trip(tiny_tree):
    data = read_image_folder(tiny_tree, workers=2)
    expected, labels = synthetic_images(20, CLASSES, seed=0)
    assert data.classes == CLASSES
    assert data.train.images.shape == (60, 32, 32, 3) and data.train.images.dtype == np.uint8
    np.testing.assert_array_equal(data.train.images, expected)  # PNG is lossless; order is class, then name
    np.testing.assert_array_equal(data.train.labels, labels)
    assert data.train.files[0] == "train/cat/img_0000.png"
    assert len(data.test) == 18


def test_single_and_multi_process_decoding_agree(tiny_tree):
    one, two = read_image_folder(tiny_tree, workers=1), read_image_folder(tiny_tree, workers=2)
    np.testing.assert_array_equal(one.train.images, two.train.images)


def test_missing_folder(tmp_path):
    with pytest.raises(DataError, match="data path not found: .*nowhere"):
        load_data(tmp_path / "nowhere")


def test_missing_test_split(tiny_tree, tmp_path):
    root = copy_tree(tiny_tree, tmp_path)
    shutil.rmtree(root / "test")
    with pytest.raises(DataError, match=r"missing folder: .*test"):
        load_data(root)


def test_empty_class_folder(tiny_tree, tmp_path):
    root = copy_tree(tiny_tree, tmp_path)
    (root / "train" / "empty").mkdir()
    with pytest.raises(DataError, match=r"class folder has no images: .*train/empty"):
        load_data(root)


def test_classes_must_match_between_splits(tiny_tree, tmp_path):
    root = copy_tree(tiny_tree, tmp_path)
    shutil.rmtree(root / "test" / "frog")
    with pytest.raises(DataError, match=r"different classes \(only in train: \['frog'\]"):
        load_data(root)


def test_corrupt_image_names_the_file(tiny_tree, tmp_path):
    root = copy_tree(tiny_tree, tmp_path)
    (root / "train" / "dog" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    with pytest.raises(DataError, match=r"cannot read .*train/dog/broken.png"):
        load_data(root)
    assert not list((cache.cache_root() / "decoded").glob("*")) if (cache.cache_root() / "decoded").exists() else True


def test_non_image_files_are_skipped_with_a_warning(tiny_tree, tmp_path):
    root = copy_tree(tiny_tree, tmp_path)
    (root / "train" / "cat" / "notes.txt").write_text("hello")
    with pytest.warns(DataWarning, match=r"skipped 1 files that are not images \(first: .*notes.txt\)"):
        data = load_data(root)
    assert len(data.train) == 60


def test_wrong_size_is_resized_with_a_warning(tiny_tree, tmp_path):
    root = copy_tree(tiny_tree, tmp_path)
    Image.new("RGB", (64, 48), (200, 10, 10)).save(root / "train" / "cat" / "big.png")
    with pytest.warns(DataWarning, match=r"resized 1 images to 32x32 \(first: .*big.png\)"):
        data = load_data(root)
    img = data.train.images[data.train.files.index("train/cat/big.png")]
    assert img.shape == (32, 32, 3) and abs(int(img[..., 0].mean()) - 200) <= 2


@pytest.mark.parametrize("mode", ["L", "RGBA", "P"])
def test_grayscale_rgba_and_palette_are_converted(tiny_tree, tmp_path, mode):
    root = copy_tree(tiny_tree, tmp_path)
    Image.new(mode, (32, 32)).save(root / "test" / "dog" / f"odd_{mode}.png")
    with pytest.warns(DataWarning, match=r"converted 1 grayscale/RGBA/palette images to RGB"):
        data = load_data(root)
    assert data.test.images.shape[1:] == (32, 32, 3)


def test_jpeg_is_accepted(tiny_tree, tmp_path):
    root = copy_tree(tiny_tree, tmp_path)
    Image.new("RGB", (32, 32), (0, 128, 255)).save(root / "train" / "frog" / "photo.jpg", quality=95)
    data = load_data(root)
    assert "train/frog/photo.jpg" in data.train.files


# --- the decode cache ---------------------------------------------------------------------------

def test_second_load_reads_the_cache(tiny_tree, monkeypatch):
    first = load_data(tiny_tree)
    monkeypatch.setattr(sources_mod, "read_image_folder", lambda *_: pytest.fail("decoded twice"))
    second = load_data(tiny_tree)
    np.testing.assert_array_equal(first.train.images, second.train.images)
    assert second.train.files == first.train.files and second.classes == first.classes


def test_a_changed_file_invalidates_the_cache(tiny_tree, tmp_path):
    root = copy_tree(tiny_tree, tmp_path)
    load_data(root)
    Image.new("RGB", (32, 32), (1, 2, 3)).save(root / "train" / "cat" / "img_0000.png")
    data = load_data(root)
    np.testing.assert_array_equal(data.train.images[0], np.broadcast_to([1, 2, 3], (32, 32, 3)))
    assert len(list((cache.cache_root() / "decoded").glob("*.npz"))) == 2


def test_a_failed_cache_write_leaves_nothing_behind(tiny_tree, monkeypatch):
    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", boom)
    with pytest.raises(OSError, match="disk full"):
        load_data(tiny_tree)
    assert list((cache.cache_root() / "decoded").iterdir()) == []


def test_an_unreadable_cache_file_is_rebuilt(tiny_tree):
    load_data(tiny_tree)
    (npz,) = (cache.cache_root() / "decoded").glob("*.npz")
    npz.write_bytes(b"garbage")
    assert len(load_data(tiny_tree).train) == 60


# --- source resolution --------------------------------------------------------------------------

def test_data_flag_beats_environment(tiny_tree, tmp_path, monkeypatch):
    other = write_image_tree(tmp_path / "other", n_train=4, n_test=2)
    monkeypatch.setenv("CIFARLAB_DATA", str(other))
    assert len(load_data(tiny_tree).train) == 60
    assert len(load_data().train) == 12


def test_without_data_the_archive_is_fetched(monkeypatch, tmp_path):
    import cifar_archive_helper as helper
    from cifarlab.data import archive

    calls = []

    def fake_ensure(cache_dir, progress=True, **_):
        calls.append(cache_dir)
        path = cache_dir / archive.ARCHIVE_NAME
        if not path.exists():
            helper.make_cifar10_archive(path, n_train_per_batch=4, n_test=6)
            monkeypatch.setattr(archive, "CIFAR10_MD5", archive.md5sum(path))  # it stands in for the official one
        return path

    monkeypatch.setattr(archive, "ensure_archive", fake_ensure)
    data = load_data()
    assert calls == [cache.cache_root()] and len(data.train) == 20 and len(data.test) == 6


def test_neither_tree_nor_archive(tmp_path):
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "a.txt").write_text("x")
    with pytest.raises(DataError, match="neither an image-folder tree"):
        load_data(tmp_path / "junk")


# --- splits -------------------------------------------------------------------------------------

def test_validation_split_is_stratified_seeded_and_disjoint(tiny_tree):
    train = load_data(tiny_tree).train
    fit, val = split_train_val(train, 15, seed=3)
    assert len(val) == 15 and len(fit) == 45
    assert np.bincount(val.labels).tolist() == [5, 5, 5]
    assert not set(fit.files) & set(val.files)
    fit2, val2 = split_train_val(train, 15, seed=3)
    assert val2.files == val.files
    assert split_train_val(train, 15, seed=4)[1].files != val.files


def test_default_validation_is_ten_percent_of_small_sets(tiny_tree):
    _, val = split_train_val(load_data(tiny_tree).train, None, seed=0)
    assert len(val) == 6


def test_no_validation_split(tiny_tree):
    train = load_data(tiny_tree).train
    fit, val = split_train_val(train, 0, seed=0)
    assert val is None and len(fit) == len(train)


@pytest.mark.parametrize("size, message", [(60, "leaves no training images"),
                                           (2, "smaller than the number of classes")])
def test_bad_validation_sizes(tiny_tree, size, message):
    from cifarlab.errors import CifarlabError

    with pytest.raises(CifarlabError, match=message):
        split_train_val(load_data(tiny_tree).train, size, seed=0)


def test_stratified_subset(tiny_tree):
    sub = stratified_subset(load_data(tiny_tree).train, 30, seed=0)
    assert len(sub) == 30 and np.bincount(sub.labels).tolist() == [10, 10, 10]


# --- the batch loader ---------------------------------------------------------------------------

def test_loader_normalizes_and_keeps_channels_last():
    images = np.full((10, 32, 32, 3), 255, np.uint8)
    loader = DeviceLoader(images, np.arange(10), batch_size=4, device=torch.device("cpu"),
                          mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    batches = list(loader)
    assert [len(y) for _, y in batches] == [4, 4, 2]
    x = batches[0][0]
    assert x.shape == (4, 3, 32, 32) and x.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(x, torch.full_like(x, 2.0))


def test_loader_order_depends_only_on_seed_and_epoch():
    images = np.zeros((50, 32, 32, 3), np.uint8)
    labels = np.arange(50)

    def order(seed, epoch):
        loader = DeviceLoader(images, labels, batch_size=8, device=torch.device("cpu"), mean=(0,) * 3,
                              std=(1,) * 3, shuffle=True, drop_last=True, seed=seed)
        loader.set_epoch(epoch)
        return torch.cat([y for _, y in loader]).tolist()

    assert order(0, 1) == order(0, 1)
    assert order(0, 1) != order(0, 2) and order(0, 1) != order(1, 1)
    assert len(order(0, 0)) == 48 and len(set(order(0, 0))) == 48


def test_warnings_do_not_fire_on_clean_data(tiny_tree):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_data(tiny_tree)


def test_derived_seeds_mix_their_parts_and_stay_what_earlier_runs_used():
    # The value runs written before derived_seed existed drew (a resumed run must repeat them).
    assert derived_seed(7, 3, 1) == int(np.random.SeedSequence([7, 3, 1]).generate_state(1)[0])
    assert len({derived_seed(*parts) for parts in [(0, 1, 2), (2, 1, 0), (1, 0, 2), (0, 2, 1)]}) == 4
    first, again = (torch.rand(3, generator=derived_generator(5, 2)) for _ in range(2))
    assert torch.equal(first, again)

"""Where the data comes from: `--data PATH`, else `CIFARLAB_DATA`, else the download cache, else a
download of the official archive. PATH may be an image-folder tree (train/<class>/, test/<class>/),
the official `cifar-10-python.tar.gz`, or its extracted `cifar-10-batches-py` folder."""
from __future__ import annotations

import os
from pathlib import Path

from ..errors import DataError
from . import cache
from .folder import fingerprint_listing, is_image_folder_tree, list_split, read_image_folder
from .types import CifarData

ENV_VAR = "CIFARLAB_DATA"


def resolve_data_path(data: str | Path | None = None) -> Path | None:
    """The local data path to use, or None when the official archive must come from the cache/download."""
    if data is not None and str(data) != "":
        return Path(data).expanduser()
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR]).expanduser()
    return None


def describe_source(data: str | Path | None = None) -> str:
    path = resolve_data_path(data)
    return str(path.resolve()) if path else f"official CIFAR-10 archive (cache {cache.cache_root()})"


def load_data(data: str | Path | None = None, *, use_cache: bool = True, progress: bool = True) -> CifarData:
    """Load train and test splits as uint8 arrays, decoding once and reading the cache afterwards."""
    path = resolve_data_path(data)
    if path is None:
        from .archive import ensure_archive

        path = ensure_archive(cache.cache_root(), progress=progress)
    if not path.exists():
        nowhere = " (a symbolic link that leads nowhere: a loop or a missing target)" if os.path.islink(path) else ""
        raise DataError(f"data path not found: {path}{nowhere}")
    if is_image_folder_tree(path):
        rows = fingerprint_listing([list_split(path, "train"), list_split(path, "test")])
        return _cached(("folder", rows), lambda: read_image_folder(path), use_cache, f"image folders {path}")
    from .archive import is_cifar10_source, read_cifar10

    # A file named like an archive is read as one even when its first members do not parse: the reader
    # then says what is wrong with it (checksum, CRC, truncation) instead of "not a data source".
    if is_cifar10_source(path) or (path.is_file() and path.name.lower().endswith((".tar.gz", ".tgz", ".tar"))):
        st = path.stat()
        rows = [str(path.name), st.st_size, st.st_mtime_ns] if path.is_file() else _dir_rows(path)
        return _cached(("archive", rows), lambda: read_cifar10(path), use_cache, f"CIFAR-10 archive {path}")
    raise DataError(f"{path} is neither an image-folder tree (train/<class>/, test/<class>/) "
                    "nor a CIFAR-10 archive (cifar-10-python.tar.gz or cifar-10-batches-py/)")


def _cached(key_rows, read, use_cache: bool, source: str) -> CifarData:
    if not use_cache:
        return read()
    key = cache.fingerprint(list(key_rows))
    data = cache.load(key)
    if data is None:
        data = read()
        cache.save(key, data)
    data.source = source
    return data


def _dir_rows(path: Path) -> list:
    return sorted((str(p.relative_to(path)), p.stat().st_size, p.stat().st_mtime_ns)
                  for p in path.rglob("*") if p.is_file())

"""A checkpoint's training state without pickle: its tensors go to safetensors, everything else to JSON.

A pickled checkpoint (torch.save) runs whatever code it names when it is loaded, so a run directory from
someone else could take over the machine of whoever resumes it. Here reading a state can only build
tensors, numbers, strings, lists, tuples, dicts and numeric numpy arrays, whatever the files hold.

    tree, tensors = encode(state)     # tree: JSON-able, each tensor replaced by {"$tensor": name}
    state = decode(tree, tensors)     # the same structure back, bit for bit

Besides plain JSON the tree uses four tagged objects: {"$tensor": name}, {"$tuple": [...]} (random.setstate
wants tuples), {"$dict": [[key, value], ...]} (the optimizer's integer keys) and {"$ndarray": [...],
"dtype": "<u4", "shape": [...]} (numpy's RNG state). A dict whose keys start with "$" is stored as "$dict",
so no data is mistaken for a tag. A tensor in channels_last strides says so ("layout"): the optimizer
state of channels_last weights must come back in the same layout for a resume to match to the last bit.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

TENSOR, TUPLE, DICT, NDARRAY = "$tensor", "$tuple", "$dict", "$ndarray"
CHANNELS_LAST = "channels_last"
_NUMERIC_KINDS = "biuf"  # bool, signed and unsigned integers, floats: never numpy's object arrays


class StateFormatError(ValueError):
    """The JSON tree or the tensors do not form a state this module wrote."""


def encode(state: Any) -> tuple[Any, dict[str, torch.Tensor]]:
    """(a JSON-able tree, the tensors it refers to by name, on the CPU and contiguous)."""
    tensors: dict[str, torch.Tensor] = {}

    def walk(obj: Any, path: str) -> Any:
        if isinstance(obj, torch.Tensor):
            name = path if path not in tensors else f"{path}#{len(tensors)}"
            tensors[name] = obj.detach().to("cpu").contiguous().clone()  # safetensors refuses shared storage
            if _is_channels_last(obj):  # safetensors keeps no strides: note the layout, or a resume drifts
                return {TENSOR: name, "layout": CHANNELS_LAST}
            return {TENSOR: name}
        if isinstance(obj, np.ndarray):
            if obj.dtype.kind not in _NUMERIC_KINDS:
                raise TypeError(f"cannot store a numpy array of {obj.dtype} in a checkpoint ({path})")
            return {NDARRAY: obj.ravel().tolist(), "dtype": obj.dtype.str, "shape": list(obj.shape)}
        if isinstance(obj, np.generic):
            return walk(obj.item(), path)
        if obj is None or isinstance(obj, (bool, int, float, str)):
            return obj
        if isinstance(obj, tuple):
            return {TUPLE: [walk(v, f"{path}/{i}") for i, v in enumerate(obj)]}
        if isinstance(obj, list):
            return [walk(v, f"{path}/{i}") for i, v in enumerate(obj)]
        if isinstance(obj, dict):
            if all(isinstance(k, str) and not k.startswith("$") for k in obj):
                return {k: walk(v, f"{path}/{k}") for k, v in obj.items()}
            return {DICT: [[walk(k, f"{path}/key"), walk(v, f"{path}/{k}")] for k, v in obj.items()]}
        raise TypeError(f"cannot store a {type(obj).__name__} in a checkpoint ({path})")

    return walk(state, "state"), tensors


def decode(tree: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """The state `encode` was given; StateFormatError when the tree is not one it wrote."""

    def walk(obj: Any) -> Any:
        if obj is None or isinstance(obj, (bool, int, float, str)):
            return obj
        if isinstance(obj, list):
            return [walk(v) for v in obj]
        if not isinstance(obj, dict):
            raise StateFormatError(f"unexpected {type(obj).__name__} in the state")
        if TENSOR in obj:
            if obj[TENSOR] not in tensors:
                raise StateFormatError(f"tensor {obj[TENSOR]!r} is missing from the state's tensors")
            tensor = tensors[obj[TENSOR]]
            if obj.get("layout") == CHANNELS_LAST and tensor.dim() == 4:
                return torch.empty_like(tensor, memory_format=torch.channels_last).copy_(tensor)
            return tensor
        if TUPLE in obj:
            return tuple(walk(v) for v in _list(obj[TUPLE]))
        if DICT in obj:
            pairs = [_list(p) for p in _list(obj[DICT])]
            if any(len(p) != 2 for p in pairs):
                raise StateFormatError("a $dict entry is not a [key, value] pair")
            return {_hashable(walk(k)): walk(v) for k, v in pairs}
        if NDARRAY in obj:
            return _ndarray(obj)
        return {k: walk(v) for k, v in obj.items()}

    return walk(tree)


def _is_channels_last(t: torch.Tensor) -> bool:
    """A 4-D tensor in channels_last strides (the optimizer state of channels_last weights)."""
    if t.dim() != 4 or not t.is_contiguous(memory_format=torch.channels_last):
        return False
    return t.stride() != torch.empty(t.shape, device="meta").stride()


def _list(value: Any) -> list:
    if not isinstance(value, list):
        raise StateFormatError(f"expected a list in the state, got {type(value).__name__}")
    return value


def _hashable(key: Any) -> Any:
    if isinstance(key, (list, dict, torch.Tensor, np.ndarray)):
        raise StateFormatError(f"a {type(key).__name__} cannot be a dict key")
    return key


def _ndarray(obj: dict) -> np.ndarray:
    try:
        dtype = np.dtype(obj["dtype"])
        if dtype.kind not in _NUMERIC_KINDS:
            raise StateFormatError(f"numpy dtype {dtype} is not allowed in a checkpoint")
        return np.array(_list(obj[NDARRAY]), dtype=dtype).reshape(obj["shape"])
    except (KeyError, TypeError, ValueError) as e:
        if isinstance(e, StateFormatError):
            raise
        raise StateFormatError(f"malformed numpy array in the state ({e})") from None

"""Nested state (dicts, lists, tuples, numbers, strings, tensors, numpy arrays) ↔ one safetensors file.

Why: a run directory is shared between people, and ``pickle``/``torch.load(weights_only=False)`` run
code while they read. A safetensors file holds only named tensors and a string header; the rest of
the structure travels as JSON in that header. Reading one can build tensors, arrays and plain
Python values, nothing else. Checkpoints and coherence judges are both stored this way.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from modkit.errors import ModkitError

STRUCTURE_KEY = "modkit.structure"
KIND_KEY = "modkit.kind"
FORMAT_KEY = "modkit.format"
_ARRAY_KINDS = "biuf"  # numpy dtypes an array may have in a state file
_PLAIN = (bool, int, float, str)


def pack(value: Any, tensors: dict[str, torch.Tensor], path: str = "") -> Any:
    """``value`` as JSON, each tensor or array moved into ``tensors`` under a name derived from where it sat."""
    if isinstance(value, torch.Tensor):
        return {"$tensor": _put(tensors, path, value.detach().to("cpu", copy=True).contiguous())}
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in _ARRAY_KINDS:
            raise TypeError(f"{path}: arrays of dtype {value.dtype} cannot be stored")
        return {"$array": _put(tensors, path, torch.from_numpy(np.ascontiguousarray(value).copy())), "dtype": value.dtype.str}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        if all(isinstance(k, str) and not k.startswith("$") for k in value):
            return {k: pack(v, tensors, f"{path}/{k}" if path else k) for k, v in value.items()}
        return {"$items": [[pack(k, tensors, path), pack(v, tensors, f"{path}/{k}")] for k, v in value.items()]}
    if isinstance(value, (tuple, list)):
        plain = all(v is None or type(v) in _PLAIN for v in value)  # a Python RNG state: 625 ints, no recursion
        items = list(value) if plain else [pack(v, tensors, f"{path}/{i}") for i, v in enumerate(value)]
        return {"$tuple": items} if isinstance(value, tuple) else items
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"{path or 'state'}: a {type(value).__name__} cannot be stored in a state file")


def _put(tensors: dict[str, torch.Tensor], path: str, tensor: torch.Tensor) -> str:
    name, i = path or "tensor", 1
    while name in tensors:
        i += 1
        name = f"{path}#{i}"
    tensors[name] = tensor
    return name


def unpack(value: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """The inverse of :func:`pack`."""
    if isinstance(value, list):
        return [unpack(v, tensors) for v in value]
    if not isinstance(value, dict):
        return value
    if "$tensor" in value:
        return tensors[value["$tensor"]]
    if "$array" in value:
        dtype = np.dtype(str(value["dtype"]))
        if dtype.kind not in _ARRAY_KINDS:
            raise ValueError(f"array dtype {dtype} is not allowed")
        return tensors[value["$array"]].numpy().astype(dtype, copy=False)
    if "$tuple" in value:
        return tuple(unpack(v, tensors) for v in value["$tuple"])
    if "$items" in value:
        return {_hashable(unpack(k, tensors)): unpack(v, tensors) for k, v in value["$items"]}
    return {k: unpack(v, tensors) for k, v in value.items()}


def _hashable(key: Any) -> Any:
    return tuple(_hashable(k) for k in key) if isinstance(key, (list, tuple)) else key


def to_bytes(state: Any, kind: str, format_version: int) -> bytes:
    """The safetensors bytes of ``state``; ``kind`` and ``format_version`` are checked on reading."""
    from safetensors.torch import save

    tensors: dict[str, torch.Tensor] = {}
    structure = pack(state, tensors)
    metadata = {STRUCTURE_KEY: json.dumps(structure), KIND_KEY: kind, FORMAT_KEY: str(format_version)}
    return save(tensors, metadata=metadata)


def header(path: Path) -> dict[str, str]:
    """The file's string header (cheap: no tensor is read); a ModkitError if it is not a safetensors file."""
    from safetensors import safe_open

    from modkit.storage.files import check_regular

    check_regular(path)  # a FIFO under this name would block the read forever
    try:
        with safe_open(str(path), framework="pt") as handle:
            return dict(handle.metadata() or {})
    except Exception as exc:  # noqa: BLE001 - safetensors raises its own error types for every malformed file
        raise ModkitError(f"{path} is not a readable safetensors file ({first_line(exc)})") from None


def shapes(path: Path, entry: str | None = None) -> dict[str, tuple[int, ...]]:
    """The shapes of the tensors in ``path`` (under the nested ``entry``, e.g. ``"model"``, by their names there)
    from the header alone: nothing is allocated, so a model can be checked against its weights before it is built."""
    from safetensors import safe_open

    from modkit.storage.files import check_regular

    check_regular(path)
    try:
        with safe_open(str(path), framework="pt") as handle:
            stored = {k: tuple(handle.get_slice(k).get_shape()) for k in handle.keys()}
            meta = handle.metadata() or {}
        if entry is None:
            return stored
        tree = json.loads(meta[STRUCTURE_KEY])[entry]
        return {k: stored[v["$tensor"]] for k, v in tree.items() if isinstance(v, dict) and "$tensor" in v}
    except Exception as exc:  # noqa: BLE001 - a damaged header or structure
        raise ModkitError(f"{path} is damaged ({first_line(exc)})") from None


def read(path: Path, kind: str, format_version: int, prefix: str | None = None) -> Any:
    """The state in ``path``; given a ``prefix``, only that top-level entry and the plain top-level values.

    Refuses, with a ModkitError naming the file, anything that is not a safetensors file of this
    ``kind`` and ``format_version``.
    """
    from safetensors import safe_open

    meta = header(path)
    if meta.get(KIND_KEY) != kind:
        raise ModkitError(f"{path} is not a modkit {kind} file")
    if meta.get(FORMAT_KEY) != str(format_version):
        raise ModkitError(f"{path} is a {kind} in format {meta.get(FORMAT_KEY)!r}; this modkit reads format {format_version}")
    try:
        structure = json.loads(meta[STRUCTURE_KEY])
        with safe_open(str(path), framework="pt") as handle:
            names = [k for k in handle.keys() if prefix is None or k.startswith(prefix)]
            tensors = {k: handle.get_tensor(k) for k in names}
        if prefix is not None:
            keep = prefix.rstrip("/")  # that entry, and the plain top-level values (counters), without the other tensors
            structure = {k: v for k, v in structure.items() if k == keep or not isinstance(v, (dict, list))}
        return unpack(structure, tensors)
    except Exception as exc:  # noqa: BLE001 - a damaged header or a missing tensor
        raise ModkitError(f"{path} is damaged ({first_line(exc)})") from None


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:300]

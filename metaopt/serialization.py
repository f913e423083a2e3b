"""The one place that knows file formats for arrays users download or resume from.

safetensors: a header of names, dtypes and shapes plus raw bytes. Loading it runs no code
(unlike pickle), and string metadata travels with the tensors (method, network size,
format version). Nested dicts are stored under "/"-joined key paths; any pytree (agents,
optimizer and evosax states, typed PRNG keys) under its leaf key paths (`state_to_arrays`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.numpy import load, save, save_file

SEP = "/"


def flatten_tree(tree: dict, prefix: str = "") -> dict[str, np.ndarray]:
    """A nested dict -> {"/"-joined key path: C-contiguous array}, keys in sorted order.

    Args:
      tree: nested dicts of arrays; keys may not contain "/".
      prefix: the key path above `tree` ("" at the top).

    Returns:
      The flat dict.
    """
    out: dict[str, np.ndarray] = {}
    for key in sorted(tree):
        if SEP in str(key):
            raise ValueError(f"key {key!r} contains {SEP!r}; rename it")
        name = f"{prefix}{SEP}{key}" if prefix else str(key)
        value = tree[key]
        if isinstance(value, dict):
            out.update(flatten_tree(value, name))
        else:
            out[name] = np.asarray(value, order="C")
    return out


def unflatten_tree(flat: dict[str, Any]) -> dict:
    """The inverse of `flatten_tree`: "/"-joined key paths back into nested dicts.

    Args:
      flat: key path -> value.

    Returns:
      The nested dict.
    """
    tree: dict = {}
    for name, value in flat.items():
        node = tree
        *parents, leaf = name.split(SEP)
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return tree


def save_flat(path: str | Path, flat: dict[str, np.ndarray], metadata: dict[str, str]) -> Path:
    """Write atomically (temp file + rename): a crash never leaves a half-written file.

    Args:
      path: the file to write (its folder is created).
      flat: name -> array.
      metadata: string metadata (values made strings).

    Returns:
      `path` as a Path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    flat = {k: np.asarray(v, order="C") for k, v in flat.items()}
    save_file(flat, str(tmp), metadata={k: str(v) for k, v in metadata.items()})
    tmp.replace(path)
    return path


def load_flat(path: str | Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """A safetensors file's arrays and metadata (FileNotFoundError if missing, ValueError if
    unreadable).

    Args:
      path: the file.

    Returns:
      (name -> numpy array, metadata).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    try:
        with safe_open(str(path), framework="numpy") as f:
            flat = {k: f.get_tensor(k) for k in f.keys()}
            metadata = dict(f.metadata() or {})
    except (SafetensorError, OSError, ValueError) as exc:
        raise ValueError(f"{path}: not a readable safetensors file ({exc})") from None
    return flat, metadata


def save_tree(path: str | Path, tree: dict, metadata: dict[str, str]) -> Path:
    """`save_flat` of a nested dict of arrays (see `flatten_tree`).

    Args:
      path: the file to write.
      tree: nested dicts of arrays.
      metadata: string metadata.

    Returns:
      `path` as a Path.
    """
    return save_flat(path, flatten_tree(tree), metadata)


def load_tree(path: str | Path) -> tuple[dict, dict[str, str]]:
    """`load_flat`, the arrays nested again by their key paths.

    Args:
      path: the file.

    Returns:
      (nested dict of numpy arrays, metadata).
    """
    flat, metadata = load_flat(path)
    return unflatten_tree(flat), metadata


def flat_to_bytes(flat: dict[str, np.ndarray], metadata: dict[str, str]) -> bytes:
    """`save_flat`'s format as bytes, for files that travel between processes before they land.

    Args:
      flat: name -> array.
      metadata: string metadata (values made strings).

    Returns:
      The safetensors bytes.
    """
    flat = {k: np.asarray(v, order="C") for k, v in flat.items()}
    return save(flat, metadata={k: str(v) for k, v in metadata.items()})


def flat_from_bytes(data: bytes, source: str = "data") -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """The inverse of `flat_to_bytes` (ValueError if the bytes are not safetensors).

    Args:
      data: safetensors bytes.
      source: where they came from, for the error message.

    Returns:
      (name -> numpy array, metadata).
    """
    try:
        return load(data), metadata_from_bytes(data, source)
    except (SafetensorError, ValueError) as exc:
        raise ValueError(f"{source}: not readable safetensors ({exc})") from None


def metadata_from_bytes(data: bytes, source: str = "data") -> dict[str, str]:
    """The string metadata of safetensors bytes, read from the header alone.

    Args:
      data: safetensors bytes (or at least their header).
      source: where they came from, for the error message.

    Returns:
      The metadata; ValueError if the header is not safetensors'.
    """
    if len(data) < 8:
        raise ValueError(f"{source}: too short for safetensors")
    size = int.from_bytes(data[:8], "little")
    try:
        header = json.loads(data[8:8 + size])
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{source}: not a safetensors header ({exc})") from None
    if not isinstance(header, dict):
        raise ValueError(f"{source}: not a safetensors header")
    return dict(header.get("__metadata__") or {})


def save_bytes(path: str | Path, data: bytes) -> Path:
    """Write bytes atomically (temp file + rename).

    Args:
      path: the file to write (its folder is created).
      data: the contents.

    Returns:
      `path` as a Path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
    return path


def read_metadata(path: str | Path) -> dict[str, str]:
    """A safetensors file's string metadata, reading its header alone.

    Args:
      path: the file.

    Returns:
      The metadata; ValueError if the file is not safetensors.
    """
    with Path(path).open("rb") as f:
        head = f.read(8)
        size = int.from_bytes(head, "little") if len(head) == 8 else 0
        return metadata_from_bytes(head + f.read(min(size, 100_000_000)), str(path))


class CheckpointMismatch(ValueError):
    """A checkpoint that is not of this run (another config, method or state layout): the user's
    --out holds another run's checkpoints."""


def _is_key(x) -> bool:
    return hasattr(x, "dtype") and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def _leaf_name(path) -> str:
    return jax.tree_util.keystr(path, simple=True, separator=".") or "root"


def state_to_arrays(state: Any) -> dict[str, np.ndarray]:
    """A state pytree -> {leaf key path: numpy array}; typed PRNG keys become their key data.

    Args:
      state: any pytree.

    Returns:
      The flat dict.
    """
    leaves = jax.tree_util.tree_flatten_with_path(state)[0]
    out = {}
    for path, leaf in leaves:
        arr = jax.random.key_data(leaf) if _is_key(leaf) else leaf
        out[_leaf_name(path)] = np.asarray(arr)
    if len(out) != len(leaves):
        raise ValueError("state has leaves whose key paths collide; give them distinct names")
    return out


def arrays_to_state(arrays: dict[str, np.ndarray], template: Any, source: str = "checkpoint") -> Any:
    """The inverse of `state_to_arrays`, checked against a template (ValueError on any mismatch).

    Args:
      arrays: leaf key path -> array.
      template: a state of the same structure, shapes and dtypes (PRNG keys re-wrapped with its key
        implementations).
      source: the file's name, for error messages.

    Returns:
      The state, leaves as JAX arrays.
    """
    leaves, treedef = jax.tree_util.tree_flatten_with_path(template)
    names = [_leaf_name(p) for p, _ in leaves]
    missing, extra = sorted(set(names) - set(arrays)), sorted(set(arrays) - set(names))
    if missing or extra:
        raise CheckpointMismatch(f"{source} does not match this run's state (missing {missing[:3]}, unexpected {extra[:3]}); "
                         "was it written by another config or version?")
    out = []
    for name, (_, like) in zip(names, leaves):
        arr = arrays[name]
        want = jax.random.key_data(like) if _is_key(like) else like
        want_shape, want_dtype = np.shape(want), np.asarray(want).dtype
        if arr.shape != want_shape or arr.dtype != want_dtype:
            raise CheckpointMismatch(f"{source}: {name} is {arr.dtype}{list(arr.shape)}, expected {want_dtype}{list(want_shape)}")
        value = jnp.asarray(arr)
        out.append(jax.random.wrap_key_data(value, impl=jax.random.key_impl(like)) if _is_key(like) else value)
    return jax.tree_util.tree_unflatten(treedef, out)

"""The one place that knows file formats for arrays users download or resume from.

safetensors: a header of names, dtypes and shapes plus raw bytes. Loading it runs no code
(unlike pickle), and string metadata travels with the tensors (method, network size,
format version). Nested dicts are stored under "/"-joined key paths.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save_file

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

"""Saving and loading learned-optimizer meta-parameters, for OPEN and Optim4RL alike.

Ours: safetensors with metadata (method, size, format). OPEN also reads the published
flat `.npy` files. Every load checks the tree against the method's expected shapes, so a
wrong or corrupt file fails here with a clear message, not inside a compiled run.
"""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np

from metaopt import serialization
from metaopt.config import LEARNED_OPTIMIZERS
from metaopt.optimizers import cells, optim4rl
from metaopt.optimizers import open as open_opt

FORMAT = "metaopt-meta-params/1"
METHODS = LEARNED_OPTIMIZERS


def size_of(method: str, meta_params: dict) -> str:
    """The size tag saved with meta-parameters: "small" or "larger" for OPEN, the hidden size for
    Optim4RL (with "-log" for its log inputs).

    Args:
      method: "open" or "optim4rl".
      meta_params: that method's meta-parameters.

    Returns:
      The size tag.
    """
    if method == "open":
        return "larger" if open_opt.is_larger(meta_params) else "small"
    hidden = str(meta_params["rnn_m"]["gru"]["hn"]["bias"].shape[-1])
    return hidden if optim4rl.inputs_of(meta_params) == "raw" else f"{hidden}-log"


def expected_shapes(method: str, size: str) -> dict:
    """The shape tree a method and size tag must have.

    Args:
      method: "open" or "optim4rl".
      size: a tag from `size_of`.

    Returns:
      A tree leaf -> shape.
    """
    if method == "open":
        if size not in ("small", "larger"):
            raise ValueError(f"OPEN size {size!r}; expected small or larger")
        return open_opt.param_shapes(size == "larger")
    hidden, _, inputs = size.partition("-")
    if not hidden.isdigit() or int(hidden) <= 0 or inputs not in ("", "log"):
        raise ValueError(f"Optim4RL size {size!r}; expected a positive hidden size, with -log for log inputs")
    return optim4rl.param_shapes(int(hidden), inputs or "raw")


def save_meta_params(path: str | Path, method: str, meta_params: dict, **metadata: str) -> Path:
    """Write meta-parameters as safetensors with their method and size in the metadata.

    Args:
      path: the file to write (atomically).
      method: "open" or "optim4rl".
      meta_params: the tree (float32 on disk).
      metadata: more string metadata (envs, iterations, config hash, ...).

    Returns:
      The path written.
    """
    if method not in METHODS:
        raise ValueError(f"method {method!r}; choose one of {', '.join(METHODS)}")
    tree = jax.tree.map(lambda x: np.asarray(x, np.float32), meta_params)
    meta = {"format": FORMAT, "method": method, "size": size_of(method, tree), **metadata}
    return serialization.save_tree(path, tree, meta)


def _check_shapes(path, tree: dict, shapes: dict) -> None:
    want = serialization.flatten_tree(jax.tree.map(np.zeros, shapes, is_leaf=cells.is_shape))
    got = serialization.flatten_tree(tree)
    if set(got) != set(want):
        missing, extra = sorted(set(want) - set(got)), sorted(set(got) - set(want))
        raise ValueError(f"{path}: tensors do not match the network (missing {missing[:3]}, unexpected {extra[:3]})")
    for name, arr in got.items():
        if arr.shape != want[name].shape or arr.dtype != np.float32:
            raise ValueError(f"{path}: {name} is {arr.dtype}{list(arr.shape)}, expected float32{list(want[name].shape)}")
        if not np.isfinite(arr).all():
            raise ValueError(f"{path}: {name} holds NaN or inf values")


def load_meta_params(path: str | Path, method: str | None = None) -> tuple[str, dict]:
    """Read meta-parameters, checking their shapes against the method and size they declare.

    Args:
      path: a `.safetensors` written by `save_meta_params`, or a published OPEN `.npy`.
      method: if given, a file of another method is refused.

    Returns:
      (method, meta_params as numpy arrays).

    Raises:
      ValueError: not metaopt meta-parameters, wrong shapes, or another method's.
    """
    path = Path(path)
    if path.suffix == ".npy":
        found, tree = "open", open_opt.load_published(path)
    else:
        tree, meta = serialization.load_tree(path)
        if meta.get("format") != FORMAT or meta.get("method") not in METHODS:
            raise ValueError(f"{path}: not metaopt meta-parameters (metadata {meta}); save with save_meta_params")
        found = meta["method"]
        _check_shapes(path, tree, expected_shapes(found, meta.get("size", "")))
    if method is not None and method != found:
        raise ValueError(f"{path} holds {found} meta-parameters, not {method}")
    return found, jax.tree.map(np.asarray, tree)

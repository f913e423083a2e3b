"""Whole meta-training states on disk: safetensors (no pickle), restored bit for bit.

A state is any pytree (evosax and optax states, agents, PRNG keys). It is stored leaf by
leaf under its key path; loading needs a template of the same structure (the engine's
fresh state), checks every name, shape and dtype against it, and rebuilds the tree.
Typed PRNG keys travel as their raw key data.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from metaopt import serialization
from metaopt.serialization import CheckpointMismatch, arrays_to_state, state_to_arrays

FORMAT = "metaopt-checkpoint/1"
CHECKPOINT_NAME = re.compile(r"ckpt_(\d+)\.safetensors$")  # group 1: the iteration


def checkpoint_path(folder: str | Path, iteration: int) -> Path:
    """FOLDER/ckpt_NNNNNN.safetensors for an iteration.

    Args:
      folder: the checkpoints folder.
      iteration: finished iterations.

    Returns:
      The path.
    """
    return Path(folder) / f"ckpt_{iteration:06d}.safetensors"


def save_checkpoint(folder: str | Path, iteration: int, state: Any, metadata: dict[str, str]) -> Path:
    """Atomic write; the iteration number is the count of finished iterations.

    Args:
      folder: the checkpoints folder (created if missing).
      iteration: finished iterations.
      state: the state pytree.
      metadata: string metadata (e.g. the config hash).

    Returns:
      The file written.
    """
    flat = state_to_arrays(state)
    meta = {"format": FORMAT, "iteration": str(iteration), **metadata}
    return serialization.save_flat(checkpoint_path(folder, iteration), flat, meta)


def checkpoints(folder: str | Path) -> dict[int, Path]:
    """Iteration -> checkpoint file, for the checkpoints in `folder`.

    Args:
      folder: the checkpoints folder (may be missing).

    Returns:
      The dict; empty when there is none.
    """
    return {int(m.group(1)): p for p in Path(folder).glob("ckpt_*.safetensors") if (m := CHECKPOINT_NAME.search(p.name))}


def latest_checkpoint(folder: str | Path) -> Path | None:
    """The checkpoint of the highest iteration in `folder`.

    Args:
      folder: the checkpoints folder.

    Returns:
      Its path; None when there is none.
    """
    found = checkpoints(folder)
    return found[max(found)] if found else None


def to_keep(iterations: list[int], keep_last: int, scores: dict[int, float]) -> set[int]:
    """The checkpoints to keep: the newest `keep_last` and the one with the highest score
    (iterations without a score never count as best).

    Args:
      iterations: the checkpoints' iterations.
      keep_last: how many of the newest to keep.
      scores: iteration -> score, higher is better.

    Returns:
      The iterations to keep; None for `keep_last` keeps all.
    """
    newest = sorted(iterations)[-keep_last:]
    scored = [i for i in iterations if i in scores and scores[i] == scores[i]]  # NaN never best
    return set(newest) | ({max(scored, key=lambda i: scores[i])} if scored else set())


def load_checkpoint(path: str | Path, template: Any, expect: dict[str, str] | None = None) -> tuple[Any, int]:
    """(state, iteration). `expect`: metadata that must match (e.g. the config hash).

    Args:
      path: the checkpoint file.
      template: a state of the same structure (the engine's fresh state).
      expect: metadata that must match; None: no check.

    Returns:
      (the restored state, its iteration); ValueError if the file or its metadata do not fit.
    """
    flat, meta = serialization.load_flat(path)
    if meta.get("format") != FORMAT:
        raise CheckpointMismatch(f"{path}: not a metaopt checkpoint (metadata {meta})")
    for key, value in (expect or {}).items():
        if meta.get(key) != value:
            raise CheckpointMismatch(f"{path}: {key} is {meta.get(key)!r}, this run has {value!r}; "
                             "resume with the same config or use a new --out")
    return arrays_to_state(flat, template, str(path)), int(meta["iteration"])

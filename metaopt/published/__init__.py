"""The published OPEN weights (Goldie et al., NeurIPS 2024; Apache-2.0, see NOTICE.md here),
shipped with the package and named `published:ENV`, e.g. `published:breakout`."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

PREFIX = "published:"
FILES = {
    "breakout": "breakout_OPEN.npy",
    "asterix": "asterix_OPEN.npy",
    "space_invaders": "spaceinvaders_OPEN.npy",
    "freeway": "freeway_OPEN.npy",
    "ant": "ant_OPEN.npy",
    "gridworld": "gridworld_OPEN.npy",
    "multitask": "multi_OPEN.npy",  # the larger network, meta-trained on 4 MinAtar games + ant
}
NAMES = tuple(PREFIX + name for name in FILES)


def published_path(name: str) -> Path:
    """The shipped file of a published OPEN optimizer.

    Args:
      name: a key of FILES, with or without the `published:` prefix.

    Returns:
      The path of its `.npy` inside the installed package.

    Raises:
      ValueError: an unknown name (the message lists the known ones).
    """
    key = name.removeprefix(PREFIX)
    if key not in FILES:
        raise ValueError(f"no published OPEN optimizer {name!r}; choose one of {', '.join(NAMES)}")
    return Path(str(resources.files(__name__) / FILES[key]))


def resolve(source: str) -> str:
    """`published:ENV` -> the shipped file's path; any other source unchanged.

    Args:
      source: a meta-parameter source (published:ENV, a path, models:/...).

    Returns:
      The path of the shipped file for published:ENV, else `source` itself.
    """
    return str(published_path(source)) if source.startswith(PREFIX) else source

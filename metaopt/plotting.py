"""The one place that sets up matplotlib: files only (the Agg backend), never a window."""

from __future__ import annotations

import zlib


def pyplot():
    """matplotlib.pyplot on the Agg backend (figures are written to files, also on headless nodes).

    Returns:
      The matplotlib.pyplot module.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


# One colour per optimizer label in every figure (the study's labels fixed, others by a stable hash).
LABEL_COLOURS = {"adam": "tab:blue", "rmsprop": "tab:orange", "open-published": "tab:green",
                 "open-multitask": "tab:red", "open-cpu-recipe": "tab:purple", "optim4rl": "tab:brown"}
_PALETTE = ("tab:pink", "tab:olive", "tab:cyan", "tab:gray", "gold", "navy", "teal", "maroon")


def label_colour(label: str) -> str:
    """The colour of an optimizer label, the same in every figure and every run of the report.

    Args:
      label: the optimizer's label in a plan (e.g. adam, open-published).

    Returns:
      A matplotlib colour.
    """
    if label in LABEL_COLOURS:
        return LABEL_COLOURS[label]
    return _PALETTE[zlib.crc32(label.encode()) % len(_PALETTE)]

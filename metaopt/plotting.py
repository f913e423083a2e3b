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


def label_colours(labels: list[str]) -> dict[str, str]:
    """Colours for the labels of one figure: `label_colour` of each, except that a label whose
    hashed colour another label of the figure already has takes the next free one (labels in
    sorted order, so the same set of labels always gets the same colours).

    Args:
      labels: the figure's optimizer labels.

    Returns:
      Label -> a matplotlib colour, distinct within the figure while the palette lasts.
    """
    colours = {label: LABEL_COLOURS[label] for label in labels if label in LABEL_COLOURS}
    for label in sorted(set(labels) - set(colours)):
        start = _PALETTE.index(label_colour(label))
        free = [_PALETTE[(start + k) % len(_PALETTE)] for k in range(len(_PALETTE))
                if _PALETTE[(start + k) % len(_PALETTE)] not in colours.values()]
        colours[label] = free[0] if free else label_colour(label)
    return colours

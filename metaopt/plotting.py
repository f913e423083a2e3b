"""The one place that sets up matplotlib: files only (the Agg backend), never a window."""

from __future__ import annotations


def pyplot():
    """matplotlib.pyplot on the Agg backend (figures are written to files, also on headless nodes).

    Returns:
      The matplotlib.pyplot module.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt

"""An evaluation plan's folder: the names of its files, known here once (metaopt evaluate writes
them, plan_stats and the report read them)."""

from __future__ import annotations

CELLS_DIR = "cells"
CELL_FILE = "cell.json"  # written last: its presence (with the same config hash) marks a finished cell
PARTIAL_FILE = "partial.safetensors"  # an unfinished cell's latest chunk (runs.PartialRun), removed when it finishes
PLAN_FILE = "plan.yaml"
SUMMARY_FILE = "summary.json"
DEVICE_FILE = "device.json"  # where and when a cell ran: platform, device kind, node, seconds, start and end
PROVENANCE_FILE = "provenance.json"  # every invocation: date, commit, command
CLAIMS_DIR = ".running"  # a claim file per cell a `metaopt evaluate` is running (metaopt.distributed.claims)


def folder_name(label: str) -> str:
    """A label as a folder name: `models:/open@champion` -> `models_open_champion`.

    Args:
      label: an optimizer label.

    Returns:
      Letters, digits and -_. kept, everything else "_"; "optimizer" if nothing is left.
    """
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in label).strip("_") or "optimizer"

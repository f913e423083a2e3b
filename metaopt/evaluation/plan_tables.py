"""An evaluation plan's summary as Markdown: the main table (IQM [CI] and n per cell, the
normalised aggregate and P(better)), every seed's return, the generalisation matrix."""

from __future__ import annotations

from typing import Any

import numpy as np


def fmt(entry: dict[str, Any] | None, digits: int = 2) -> str:
    """`value [low, high]`, or an em dash for a missing entry.

    Args:
      entry: {"value": v, "ci": [low, high]}, or None.
      digits: decimals shown, more (up to 4) where an interval of nonzero width would print its
        two ends alike ("-0.00 [-0.00, -0.00]" becomes "-0.003 [-0.004, -0.002]").

    Returns:
      The text; just the value when the CI is missing.
    """
    if not entry or entry.get("value") is None or not np.isfinite(entry["value"]):
        return "—"
    if entry.get("note"):
        return f"{entry['value']:.{digits}f} ({entry['note']})"
    lo, hi = entry["ci"]
    if lo is None or not np.isfinite(lo):
        return f"{entry['value']:.{digits}f}"
    while digits < 4 and lo != hi and f"{lo:.{digits}f}" == f"{hi:.{digits}f}":
        digits += 1
    return f"{entry['value']:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def markdown_table(summary: dict[str, Any]) -> str:
    """Raw IQM [CI] per env, the normalised aggregate and P(improvement) per optimizer.

    Args:
      summary: from `summarise`.

    Returns:
      The table as Markdown, newline-terminated.
    """
    envs, ref = summary["envs"], summary["normalise_by"]
    head = ["optimizer", *[f"{env} IQM [95% CI]" for env in envs]]
    if ref:
        head += [f"normalised IQM (/{ref})", f"P(better than {ref})"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label in summary["labels"]:
        row = [label]
        for env in envs:
            cell = summary["cells"].get(label, {}).get(env)
            if cell is None:
                row.append("not run")
                continue
            raw = cell["raw"]
            n = sum(v is not None for v in cell["final_returns"])
            text = fmt({"value": raw["iqm"], "ci": raw["iqm_ci"]}) + f" n={n}"
            row.append(text + (" (held out)" if cell.get("held_out") else ""))
        if ref:
            agg = summary["aggregate"].get(label, {})
            # An aggregate over fewer envs than the others is not comparable with theirs: say so.
            part = f" ({len(agg['envs'])} of {len(envs)} envs)" if agg and len(agg["envs"]) < len(envs) else ""
            row += [fmt(agg.get("normalised_iqm")) + part, fmt(agg.get("probability_of_improvement")) + part]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def per_seed_table(summary: dict[str, Any]) -> str:
    """Every run's final return, a row per optimizer and env, sorted (a reader sees the spread
    behind each IQM and its CI).

    Args:
      summary: from `summarise`.

    Returns:
      The table as Markdown, newline-terminated.
    """
    lines = ["| env | optimizer | n | final return of each seed (sorted) |", "|---|---|---|---|"]
    for env in summary["envs"]:
        for label in summary["labels"]:
            cell = summary["cells"].get(label, {}).get(env)
            if cell is None:
                continue
            values = sorted(v for v in cell["final_returns"] if v is not None)
            missing = len(cell["final_returns"]) - len(values)
            lines.append(f"| {env} | {label} | {len(values)} | {', '.join(f'{v:.3g}' for v in values)}"
                         f"{f' (+{missing} without a finished episode)' if missing else ''} |")
    return "\n".join(lines) + "\n"


def trained_on_text(cells_by_env: dict[str, dict[str, Any]]) -> str | None:
    """The envs an optimizer was meta-trained on, from its cells in a summary.

    Args:
      cells_by_env: env -> the summary's cell of one optimizer.

    Returns:
      The envs, comma-separated; "the env it is evaluated on" when each env's cell names a
      different one (a plan's "{env}" entries); "none of these envs" for an empty list (every
      env held out); None when no cell names any.
    """
    named = {tuple(sorted(c["trained_on"])) for c in cells_by_env.values() if c.get("trained_on") is not None}
    if not named:
        return None
    if len(named) > 1:
        return "the env it is evaluated on"
    return ", ".join(named.pop()) or "none of these envs"


def generalisation_table(summary: dict[str, Any]) -> str:
    """The generalisation matrix as Markdown: a row per optimizer with the envs it was
    meta-trained on, a column per evaluation env, each cell the normalised IQM [95% CI] with
    held-out cells in bold.

    The last two columns aggregate a row's cells over the envs it was meta-trained on and over
    the held-out ones (normalised IQM, stratified bootstrap CI, the number of envs).

    Args:
      summary: from `summarise`; rows only for optimizers with `trained_on`.

    Returns:
      The table, newline-terminated (a sentence instead when no optimizer has `trained_on`).
    """
    envs, ref = summary["envs"], summary["normalise_by"] or "the reference"
    rows = [(label, by_env, trained_on_text(by_env)) for label, by_env in summary["cells"].items()]
    rows = [row for row in rows if row[2] is not None]
    if not rows:
        return "No optimizer of this plan names the envs it was meta-trained on (`trained_on`).\n"
    head = ["optimizer (meta-trained on)", *[f"{env} (/{ref})" for env in envs], "envs it was meta-trained on",
            "held-out envs"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, by_env, trained in rows:
        row = [f"{label} ({trained})"]
        for env in envs:
            cell = by_env.get(env)
            if cell is None:
                row.append("not run")
                continue
            text = fmt(cell.get("normalised"))
            row.append(f"**{text}** (held out)" if cell.get("held_out") else text)
        split = summary["aggregate"].get(label, {}).get("by_training", {})
        for part in ("trained_on", "held_out"):
            entry = split.get(part)
            row.append("—" if entry is None else
                       f"{fmt(entry['normalised_iqm'])} ({len(entry['envs'])} env{'s' * (len(entry['envs']) > 1)})")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"

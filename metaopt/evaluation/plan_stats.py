"""Statistics and figures of an evaluation plan's folder: per cell the raw final returns
(IQM, mean, 95% bootstrap CIs); per env the scores normalised by the reference optimizer's
IQM (tuned Adam = 1.0); per optimizer the aggregate over envs with stratified bootstrap CIs
and the probability of improvement over the reference; the generalisation matrix.

Writes summary.json, table.md, aggregate.png, profile.png, generalisation.png and curves.png
beside the plan's cells. Reads only files, so it runs anywhere the folder is.
"""

from __future__ import annotations

import csv
import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from metaopt.evaluation import stats
from metaopt.evaluation.plan_files import (
    CELL_FILE,
    CELLS_DIR,
    DEVICE_FILE,
    PARTIAL_FILE,
    PLAN_FILE,
    PROVENANCE_FILE,
    SUMMARY_FILE,
    folder_name,
)
from metaopt.plotting import label_colour, pyplot
from metaopt.serialization import read_metadata


def _finite(values) -> np.ndarray:
    return np.asarray([np.nan if v is None else v for v in values], np.float64)


def _cells_in(out: Path) -> dict[str, dict[str, dict[str, Any]]]:
    """The finished cells of one results folder (see `load_cells`)."""
    cells: dict[str, dict[str, dict[str, Any]]] = {}
    for marker in sorted(Path(out).glob(f"{CELLS_DIR}/*/*/{CELL_FILE}")):
        meta = json.loads(marker.read_text())
        result = json.loads((marker.parent / "results.json").read_text())
        device = marker.parent / DEVICE_FILE
        cells.setdefault(meta["label"], {})[meta["env"]] = {
            "final_returns": _finite(result["final_return"]), "trained_on": meta.get("trained_on"),
            "config": result.get("config", {}), "folder": marker.parent, "source": meta.get("source"),
            "device": json.loads(device.read_text()) if device.is_file() else {},
            "largest_drop": largest_drops(marker.parent / "curves.csv"), "reused_from": meta.get("reused_from"),
            "code_version": meta.get("code_version"), "blocks": [],
        }
    return cells


def _seeds(config: dict[str, Any]) -> range:
    return range(config.get("seed", 0), config.get("seed", 0) + config.get("num_seeds", 1))


def _merge_block(cell: dict[str, Any], block: dict[str, Any], where: str) -> None:
    """A finished cell of the same config on other seeds joins `cell`: its runs, drops, compute."""
    def fixed(config: dict[str, Any]) -> dict[str, Any]:  # an unset section (a2c: null) is no difference
        return {k: v for k, v in config.items() if k not in ("seed", "num_seeds") and v is not None}

    if fixed(block["config"]) != fixed(cell["config"]):
        raise ValueError(f"more_seeds: {where} ran another config than this plan's cell; "
                         "run it with the same plan, changing only seed and seeds")
    taken = [_seeds(cell["config"]), *(_seeds(b["config"]) for b in cell["blocks"])]
    new = _seeds(block["config"])
    if any(set(new) & set(r) for r in taken):
        raise ValueError(f"more_seeds: {where} has seeds {new.start}..{new.stop - 1}, which this cell already has; "
                         "run the extra seeds from the first one the plan lacks")
    cell["final_returns"] = np.concatenate([cell["final_returns"], block["final_returns"]])
    cell["largest_drop"] = np.concatenate([cell["largest_drop"], block["largest_drop"]])
    cell["blocks"].append({"folder": block["folder"], "config": block["config"], "device": block["device"],
                           "code_version": block.get("code_version")})


def load_cells(out: Path) -> dict[str, dict[str, dict[str, Any]]]:
    """label -> env -> {final_returns, trained_on, config, folder} for every finished cell, with
    the runs of the plan's `more_seeds` folders merged into the cells of the same config.

    Args:
      out: the plan's folder.

    Returns:
      The finished cells by label and env; each also carries its source, device record, per-seed
      largest drops, its seed blocks from `more_seeds` (`blocks`) and, for a cell copied from another
      plan's results, where it came from.

    Raises:
      ValueError: a `more_seeds` cell ran another config, or seeds the cell already has.
    """
    cells = _cells_in(out)
    plan = yaml.safe_load((Path(out) / PLAN_FILE).read_text()) if (Path(out) / PLAN_FILE).is_file() else {}
    for extra in plan.get("more_seeds") or []:
        if Path(extra).resolve() == Path(out).resolve():
            continue  # the plan run on other seeds names its own folder
        for label, by_env in _cells_in(Path(extra)).items():
            for env, block in by_env.items():
                if env in cells.get(label, {}):
                    _merge_block(cells[label][env], block, f"{extra} ({label} / {env})")
    return cells


def partial_runs(out: Path, labels: list[str], envs: list[str]) -> dict[str, str]:
    """The unfinished cells that saved a partial run, and how far they got.

    Args:
      out: the plan's folder.
      labels: the plan's optimizer labels.
      envs: the plan's envs.

    Returns:
      "LABEL / ENV" -> "update N of M", in plan order.
    """
    found = {}
    for label in labels:
        for env in envs:
            path = Path(out) / CELLS_DIR / folder_name(label) / env / PARTIAL_FILE
            if path.is_file() and not (path.parent / CELL_FILE).is_file():
                meta = read_metadata(path)
                found[f"{label} / {env}"] = f"update {meta.get('updates_done')} of {meta.get('num_updates')}"
    return found


def largest_drops(curves: Path) -> np.ndarray:
    """Per seed, the largest fall of the return below its running peak over training (a
    policy-collapse measure): max over updates t of (max_{s<=t} R_s - R_t), on the per-update
    mean return of finished episodes (updates with none carry the last value).

    Args:
      curves: a cell's curves.csv (return_seedK columns).

    Returns:
      One value per seed (NaN for a seed without a finished episode); empty when the file is missing.
    """
    if not curves.is_file():
        return np.array([])
    with curves.open() as f:
        rows = list(csv.DictReader(f))
    seeds = sorted((k for k in rows[0] if k.startswith("return_seed")), key=lambda k: int(k.removeprefix("return_seed")))
    drops = []
    for key in seeds:
        r = np.array([float(row[key]) if row[key] not in ("", "nan") else np.nan for row in rows])
        valid = np.isfinite(r)
        if not valid.any():
            drops.append(np.nan)
            continue
        r = r[np.argmax(valid):]
        for i in range(1, r.size):  # carry forward over updates without a finished episode
            if not np.isfinite(r[i]):
                r[i] = r[i - 1]
        drops.append(float(np.max(np.maximum.accumulate(r) - r)))
    return np.asarray(drops)


def _interval(value: float, ci: tuple[float, float]) -> dict[str, Any]:
    return {"value": value, "ci": [ci[0], ci[1]]}


def summarise(out: str | Path, seed: int = 0) -> dict[str, Any]:
    """Compute a plan's statistics from its folder and write summary.json, table.md and the
    figures beside its cells (what `metaopt evaluate` does at its end).

    Args:
      out: the plan's folder (plan.yaml and cells/).
      seed: the bootstrap's seed.

    Returns:
      The summary, as `compute_summary`.
    """
    out = Path(out)
    summary, cells, normalised = _statistics(out, seed)
    (out / SUMMARY_FILE).write_text(json.dumps(summary, indent=2, default=_json_default))
    (out / "table.md").write_text(markdown_table(summary))
    plot_aggregate(out / "aggregate.png", summary)
    plot_profiles(out / "profile.png", summary, normalised)
    plot_generalisation(out / "generalisation.png", summary)
    plot_curves(out / "curves.png", summary, cells)
    return summary


def compute_summary(out: str | Path, seed: int = 0) -> dict[str, Any]:
    """A plan's statistics from its folder, computed in memory: nothing is written (what
    `metaopt report` reads plans with).

    Args:
      out: the plan's folder (plan.yaml and cells/).
      seed: the bootstrap's seed.

    Returns:
      The summary: per cell the raw and normalised statistics, per optimizer the aggregates
      over envs, the missing cells, hardware and provenance.
    """
    return _statistics(Path(out), seed)[0]


def _statistics(out: Path, seed: int) -> tuple[dict[str, Any], dict, dict[str, dict[str, np.ndarray]]]:
    """(`compute_summary`'s summary, the loaded cells, the normalised scores) of a plan folder; reads only."""
    plan = yaml.safe_load((out / PLAN_FILE).read_text())
    sources = _sources(plan)
    labels = list(sources)
    envs, reference = plan["envs"], plan.get("normalise_by")
    cells = load_cells(out)
    ref_iqm: dict[str, float] = {}
    ref_runs: dict[str, np.ndarray] = {}  # the reference's raw runs per env, resampled in every bootstrap
    raw_scores: dict[str, dict[str, np.ndarray]] = {label: {} for label in labels}  # envs with a normaliser
    normalised: dict[str, dict[str, np.ndarray]] = {label: {} for label in labels}
    table: dict[str, dict[str, Any]] = {label: {} for label in labels}
    for env in envs:
        ref = cells.get(reference, {}).get(env) if reference else None
        for label in labels:
            cell = cells.get(label, {}).get(env)
            if cell is None:
                continue
            raw = cell["final_returns"]
            entry: dict[str, Any] = {"final_returns": [None if not np.isfinite(v) else float(v) for v in raw],
                                     "raw": stats.summarize(raw, seed=seed), "trained_on": cell["trained_on"],
                                     "held_out": None if cell["trained_on"] is None else env not in cell["trained_on"],
                                     "source": cell["source"],
                                     "largest_drop": stats.summarize(cell["largest_drop"], seed=seed)
                                     if cell["largest_drop"].size else None}
            if ref is not None:
                scores, ref_iqm[env] = stats.normalise(raw, ref["final_returns"])
                if np.isfinite(scores).any():
                    normalised[label][env] = scores
                    raw_scores[label][env], ref_runs[env] = np.asarray(raw), np.asarray(ref["final_returns"])
                    entry["normalised"] = _interval(*_split(stats.stratified_bootstrap_ci(
                        {env: raw}, stats.iqm, seed=seed, normalisers={env: ref_runs[env]})))
            table[label][env] = entry
    aggregate: dict[str, dict[str, Any]] = {}
    for label in labels:
        scores = normalised[label]
        if not scores:
            continue
        raw = raw_scores[label]
        agg: dict[str, Any] = {"envs": sorted(scores)}
        agg["normalised_iqm"] = _interval(*_split(stats.stratified_bootstrap_ci(raw, stats.iqm, seed=seed,
                                                                                normalisers=ref_runs)))
        agg["normalised_mean"] = _interval(*_split(stats.stratified_bootstrap_ci(raw, _mean, seed=seed,
                                                                                 normalisers=ref_runs)))
        # A learned optimizer's score apart on the envs it was meta-trained on and the held-out ones.
        parts = {part: {env: raw[env] for env in raw if table[label][env]["held_out"] is held}
                 for part, held in (("trained_on", False), ("held_out", True))}
        if any(table[label][env]["held_out"] is not None for env in raw):
            agg["by_training"] = {part: {"envs": sorted(subset),
                                         "normalised_iqm": _interval(*_split(stats.stratified_bootstrap_ci(
                                             subset, stats.iqm, seed=seed, normalisers=ref_runs))),
                                         **(_versus(subset, ref_runs, seed) if label != reference else {})}
                                  for part, subset in parts.items() if subset}
        if label != reference:
            agg.update(_versus(raw, ref_runs, seed))
        aggregate[label] = agg
    # An A2C run's record carries the default PPO section beside its `a2c` one: the agent is A2C's.
    budgets = {env: (cells[label][env]["config"].get("a2c") or cells[label][env]["config"].get("ppo") or {}).get(
                   "total_timesteps") for label in cells for env in cells[label]}
    summary = {
        "plan": plan["name"], "section": plan.get("section", "main"), "envs": envs, "labels": labels,
        "normalise_by": reference, "seeds": plan["seeds"], "seed": plan.get("seed", 0), "budget": budgets,
        "reference_iqm": ref_iqm, "cells": table, "aggregate": aggregate,
        "missing": [f"{label} / {env}" for label in labels for env in envs if env not in table[label]],
        "in_progress": partial_runs(out, labels, envs),
        "reused": {f"{label} / {env}": cells[label][env]["reused_from"] for label in labels for env in envs
                   if cells.get(label, {}).get(env, {}).get("reused_from")},
        "hardware": _hardware(cells),
        "compute": _compute(cells),
        "more_seeds": {f"{label} / {env}": [f"{_seeds(b['config']).start}..{_seeds(b['config']).stop - 1} in "
                                             f"{b['folder'].parent.parent.parent}" for b in c["blocks"]]
                       for label, by_env in cells.items() for env, c in by_env.items() if c.get("blocks")},
        "learning_rates": baseline_learning_rates(cells, sources, plan.get("tuned_file")),
        "provenance": json.loads((out / PROVENANCE_FILE).read_text()) if (out / PROVENANCE_FILE).is_file() else [],
        "statistics": "IQM = 25% trimmed mean over seeds; 95% percentile bootstrap CIs (per cell: over seeds; "
                      "aggregates: stratified over envs, as rliable); normalised = return / reference IQM on the env, "
                      "the reference's runs resampled in the same bootstrap (its noise is in every normalised CI)",
    }
    return summary, cells, normalised


BASELINES = ("adam", "rmsprop")


def probability_entry(runs: dict[str, np.ndarray] | np.ndarray, reference: dict[str, np.ndarray] | np.ndarray,
                      seed: int = 0) -> dict[str, Any]:
    """P(a run beats a reference run) [stratified bootstrap CI] as a `fmt` entry; a CI of zero width
    (the runs do not overlap, so no resample can move it) is replaced by a note saying so.

    Args:
      runs: env -> runs (or one env's runs).
      reference: env -> the reference's runs (or one env's).
      seed: the bootstrap's seed.

    Returns:
      {"value", "ci"} and, where the CI cannot be estimated, "note".
    """
    if not isinstance(runs, dict):
        runs, reference = {"env": runs}, {"env": reference}
    prob = _interval(*_split(stats.aggregate_probability_of_improvement(runs, reference, seed=seed)))
    lo, hi = prob["ci"]
    if np.isfinite(lo) and lo == hi:
        n = min(min(np.isfinite(np.asarray(v, np.float64)).sum() for v in d.values()) for d in (runs, reference))
        prob["note"] = f"CI not estimable at n = {n}: the runs do not overlap"
    return prob


def _versus(scores: dict[str, np.ndarray], reference: dict[str, np.ndarray], seed: int,
            normalisers: dict[str, np.ndarray] | None = None) -> dict[str, Any]:
    """An optimizer's raw runs against another's on the envs both ran: P(better) and the difference
    of their aggregate normalised IQMs, each with its stratified bootstrap CI. The normaliser is
    the plan's reference (`normalisers`; None: `reference` itself is the plan's reference), whose
    runs are resampled in the same bootstrap. A P(better) interval of zero width (the runs do not
    overlap, so no resample can move it) is marked not estimable at this number of runs."""
    shared = {env: scores[env] for env in scores if env in reference}
    norm = reference if normalisers is None else normalisers
    shared = {env: v for env, v in shared.items() if env in norm}
    prob = probability_entry(shared, {env: reference[env] for env in shared}, seed=seed)
    diff = stats.stratified_difference_ci(shared, {env: reference[env] for env in shared}, seed=seed,
                                          normalisers={env: norm[env] for env in shared},
                                          y_is_reference=normalisers is None)
    return {"probability_of_improvement": prob, "iqm_difference": _interval(*_split(diff))}


def versus(summary: dict[str, Any], label: str, other: str, seed: int = 0) -> dict[str, Any]:
    """Two optimizers of a plan against each other on the envs both ran (normalised by the
    plan's reference when it has one, its runs resampled in the bootstrap): P(`label` better than
    `other`) and the difference of their aggregate IQMs, with stratified bootstrap CIs, in the
    form `verdict` reads.

    Args:
      summary: from `summarise`.
      label: the optimizer compared.
      other: the one it is compared with.
      seed: the bootstrap's seed.

    Returns:
      {"envs", "probability_of_improvement", "iqm_difference"}; envs empty when they share none.
    """
    def runs(name: str) -> dict[str, np.ndarray]:
        return {env: np.array([np.nan if v is None else v for v in cell["final_returns"]], np.float64)
                for env, cell in summary["cells"].get(name, {}).items()}

    mine, theirs = runs(label), runs(other)
    ref = summary.get("normalise_by")
    if ref:
        normalisers = {env: v for env, v in runs(ref).items() if env in summary["reference_iqm"]
                       and summary["reference_iqm"][env] > 0}
    else:
        normalisers = {env: np.ones(2) for env in mine}  # no reference: raw returns
    shared = {env: mine[env] for env in mine if env in theirs and env in normalisers}
    return {"envs": sorted(shared), **_versus(shared, theirs, seed, normalisers=normalisers)}


def verdict(entry: dict[str, Any], reference: str) -> str:
    """How an aggregate compares with the reference's, in words. Two measures must agree:
    the CI of the difference of normalised IQMs (excludes 0 or not) and the CI of P(better
    than the reference) (excludes 0.5 or not).

    Args:
      entry: an aggregate of `summarise` (or one of its `by_training` parts) with
        `iqm_difference` and `probability_of_improvement`.
      reference: the reference's label.

    Returns:
      "better than REF", "worse than REF", "within noise of REF", or which measure is decisive
      and which is not; "not comparable with REF" without intervals.
    """
    diff, prob = entry.get("iqm_difference") or {}, entry.get("probability_of_improvement") or {}
    intervals = [d.get("ci") for d in (diff, prob)]
    if any(ci is None or not np.all(np.isfinite(ci)) for ci in intervals):
        return f"not comparable with {reference}"
    sides = [_side(ci, centre) for ci, centre in zip(intervals, (0.0, 0.5), strict=True)]
    if sides[0] == sides[1]:
        return {1: f"better than {reference}", -1: f"worse than {reference}", 0: f"within noise of {reference}"}[sides[0]]
    words = [("IQM", {1: "higher", -1: "lower", 0: "within noise"}),
             ("P(better)", {1: "above 0.5", -1: "below 0.5", 0: "within noise of 0.5"})]
    parts = [f"{name} {text[side]}" for (name, text), side in zip(words, sides, strict=True)]
    kind = "mixed" if sides[0] * sides[1] < 0 else "unclear"
    return f"{kind} against {reference}: {parts[0]}, {parts[1]}"


def _side(ci, centre: float) -> int:
    """+1 when the interval lies wholly above `centre`, -1 wholly below, 0 when it holds it."""
    return 1 if ci[0] > centre else -1 if ci[1] < centre else 0


def _sources(plan: dict[str, Any]) -> dict[str, str]:
    """label -> the plan's optimizer for it ("adam", "adam:tuned", "open", ...), in plan order."""
    return {o if isinstance(o, str) else (o.get("label") or o["optimizer"]): o if isinstance(o, str) else o["optimizer"]
            for o in plan["optimizers"]}


def baseline_learning_rates(cells: dict[str, dict[str, dict[str, Any]]], sources: dict[str, str],
                            tuned_file: str | None) -> dict[str, str]:
    """For each hand-designed optimizer of the plan, the learning rate its cells ran with and
    where that rate came from: a sweep's tuned-baselines file (with the sweep's budget and
    seeds, when the file is readable here) or the PPO config as given.

    Args:
      cells: from `load_cells`.
      sources: label -> the plan's optimizer for it ("adam", "adam:tuned", ...); a finished cell
        counts as the plan's current entry (its config matches it).
      tuned_file: the plan's tuned_file (None: configs/tuned/baselines.yaml).

    Returns:
      label -> one line, e.g. "0.005 on every env run: the PPO config's rate (configs/ppo/ENV.yaml), not tuned here".
    """
    from metaopt.config import TUNED_BASELINES_FILE, load_train_config, read_yaml

    path = Path(tuned_file) if tuned_file else TUNED_BASELINES_FILE
    tuned = read_yaml(path) if path.is_file() else {}
    lines = {}
    for label, by_env in cells.items():
        first = next(iter(by_env.values()))
        name = first["config"].get("optimizer", {}).get("name")
        if name not in BASELINES:
            continue
        rates = {env: c["config"]["optimizer"]["learning_rate"] for env, c in by_env.items()}
        if str(sources.get(label, first["source"])).endswith(":tuned"):
            parts = []
            for env, lr in rates.items():
                entry = (tuned.get(env) or {}).get(name) or {}
                how = (f"swept at {entry['total_timesteps']:,} steps over {len(entry.get('grid', []))} rates with "
                       f"{entry.get('seeds')} seeds{', at the grid edge' if entry.get('at_grid_edge') else ''}"
                       if entry.get("learning_rate") == lr and "total_timesteps" in entry else "sweep record not found")
                parts.append(f"{lr:.3g} on {env} ({how})")
            lines[label] = f"{'; '.join(parts)}: tuned, from {path}"
        else:
            given = all(lr == load_train_config(env=env, optimizer=name).optimizer.learning_rate
                        for env, lr in rates.items())
            where = "the PPO config's rate (configs/ppo/ENV.yaml)" if given else "set in the plan"
            values = (f"{next(iter(rates.values())):.3g} on every env run" if len(set(rates.values())) == 1
                      else "; ".join(f"{lr:.3g} on {env}" for env, lr in rates.items()))
            lines[label] = f"{values}: {where}, not tuned here"
    return lines


def _mean(x, axis=-1):
    return np.mean(x, axis=axis)


def _split(t: tuple[float, float, float]) -> tuple[float, tuple[float, float]]:
    return t[0], (t[1], t[2])


def _json_default(v):
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, Path):
        return str(v)
    raise TypeError(type(v))


def _compute(cells) -> dict[str, Any]:
    """Seconds each cell took (compile + run, from its device record; a copied cell counts once, in
    the plan that trained it), their total in hours, and the code versions the cells record."""
    def spent(device: dict[str, Any]) -> float:
        return float(device.get("compile_seconds", 0.0) + device.get("run_seconds", 0.0))

    seconds = {f"{label} / {env}": spent(c["device"]) + sum(spent(b["device"]) for b in c.get("blocks", []))
               for label, by_env in cells.items() for env, c in by_env.items()
               if c["device"] and not c.get("reused_from")}
    versions = sorted({c["code_version"] for by_env in cells.values() for c in by_env.values() if c.get("code_version")})
    return {"cell_seconds": seconds, "total_hours": sum(seconds.values()) / 3600,
            "cells_without_commit": sum(not c.get("code_version") for by_env in cells.values() for c in by_env.values()),
            "code_versions": versions}


def _hardware(cells) -> str:
    """Where the cells ran, e.g. `cpu (2 CPUs) on 1 node` or `gpu NVIDIA H200 on 2 nodes`."""
    devices = [c["device"] for by_env in cells.values() for c in by_env.values() if c["device"]]
    if not devices:
        return "unknown"
    kinds = sorted({f"CPU ({d['cpus']} cores)" if d["platform"] == "cpu" else f"{d['platform'].upper()} {d['device_kind']}"
                    for d in devices})
    nodes = len({d["node"] for d in devices})
    return f"{', '.join(kinds)} on {nodes} node{'s' if nodes > 1 else ''}"


def fmt(entry: dict[str, Any] | None, digits: int = 2) -> str:
    """`value [low, high]`, or an em dash for a missing entry.

    Args:
      entry: {"value": v, "ci": [low, high]}, or None.
      digits: decimals shown.

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


def plot_aggregate(path: Path, summary: dict[str, Any]) -> None:
    """Normalised IQM and mean with 95% CIs per optimizer (rliable's aggregate plot).

    Args:
      path: the PNG to write (nothing is written without aggregates).
      summary: from `summarise`.
    """
    labels = [label for label in summary["labels"] if label in summary["aggregate"]]
    if not labels:
        return
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(9, 0.5 * len(labels) + 1.6), dpi=120, sharey=True)
    for ax, name, title in zip(axes, ("normalised_iqm", "normalised_mean"), ("IQM", "mean")):
        for i, label in enumerate(labels):
            entry = summary["aggregate"][label][name]
            lo, hi = entry["ci"]
            ax.plot([lo, hi], [i, i], lw=6, alpha=0.5, color=label_colour(label), solid_capstyle="butt")
            ax.plot(entry["value"], i, "|", color="k", ms=14)
        ax.axvline(1.0, color="grey", ls="--", lw=1)
        ax.set_title(f"{title} of returns / {summary['normalise_by']} IQM")
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(range(len(labels)), labels)
    axes[0].invert_yaxis()  # the plan's first optimizer on top
    fig.suptitle(f"{summary['plan']}: {', '.join(summary['envs'])}, {summary['seeds']} seeds, 95% stratified bootstrap CIs",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_profiles(path: Path, summary: dict[str, Any], normalised: dict[str, dict[str, np.ndarray]]) -> None:
    """Performance profiles: the fraction of runs above each normalised score.

    Args:
      path: the PNG to write (nothing is written without normalised scores).
      summary: from `summarise`.
      normalised: label -> env -> normalised scores per seed.
    """
    present = {label: scores for label, scores in normalised.items() if scores}
    if not present:
        return
    top = max(np.nanmax(np.concatenate(list(s.values()))) for s in present.values())
    taus = np.linspace(0.0, max(1.5, float(top)) * 1.05, 200)
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4), dpi=120)
    for label, scores in present.items():
        ax.plot(taus, stats.performance_profile(scores, taus), label=label, lw=1.6, color=label_colour(label))
    ax.axvline(1.0, color="grey", ls="--", lw=1)
    ax.set_xlabel(f"normalised score τ (return / {summary['normalise_by']} IQM on the env)")
    ax.set_ylabel("fraction of runs with score > τ")
    ax.set_title(f"{summary['plan']}: performance profiles", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def trained_on_text(cells_by_env: dict[str, dict[str, Any]]) -> str | None:
    """The envs an optimizer was meta-trained on, from its cells in a summary.

    Args:
      cells_by_env: env -> the summary's cell of one optimizer.

    Returns:
      The envs, comma-separated; "the env it is evaluated on" when each env's cell names a
      different one (a plan's "{env}" entries); None when no cell names any.
    """
    named = {tuple(sorted(c["trained_on"])) for c in cells_by_env.values() if c.get("trained_on") is not None}
    if not named:
        return None
    if len(named) > 1:
        return "the env it is evaluated on"
    return ", ".join(named.pop())


def plot_generalisation(path: Path, summary: dict[str, Any]) -> None:
    """Rows: optimizers (with the envs they were meta-trained on); columns: envs; cells:
    normalised IQM with its CI, coloured red below the reference (1.0) and blue above it;
    held-out cells hatched, cells not run grey.

    Args:
      path: the PNG to write (nothing is written without a normalised cell).
      summary: from `summarise`.
    """
    labels, envs = summary["labels"], summary["envs"]
    values = np.full((len(labels), len(envs)), np.nan)
    for i, label in enumerate(labels):
        for j, env in enumerate(envs):
            entry = summary["cells"].get(label, {}).get(env, {}).get("normalised")
            if entry:
                values[i, j] = entry["value"]
    if not np.isfinite(values).any():
        return
    plt = pyplot()
    import matplotlib
    from matplotlib.colors import TwoSlopeNorm

    fig, ax = plt.subplots(figsize=(1.8 * len(envs) + 3.5, 0.6 * len(labels) + 1.8), dpi=120)
    # Diverging around the reference (1.0): red below it, blue above it.
    norm = TwoSlopeNorm(vcenter=1.0, vmin=min(float(np.nanmin(values)), 0.99), vmax=max(float(np.nanmax(values)), 1.01))
    cmap = matplotlib.colormaps["RdBu"].with_extremes(bad="0.85")  # cells not run: grey, not the reference's white
    im = ax.imshow(values, cmap=cmap, norm=norm, aspect="auto")
    label_box = {"boxstyle": "round,pad=0.25", "facecolor": "black", "alpha": 0.6, "linewidth": 0}
    for i, label in enumerate(labels):
        for j, env in enumerate(envs):
            cell = summary["cells"].get(label, {}).get(env)
            if not cell or "normalised" not in cell:
                ax.text(j, i, "not run", ha="center", va="center", fontsize=7, color="0.3")
                continue
            lo, hi = cell["normalised"]["ci"]
            text = f"{cell['normalised']['value']:.2f}\n[{lo:.2f}, {hi:.2f}]"
            if cell.get("held_out"):
                ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, hatch="//", edgecolor="0.3", lw=0))
                text += "\nheld out"
            ax.text(j, i, text, ha="center", va="center", fontsize=7, color="w", bbox=label_box)
    rows = []
    for label in labels:
        trained = trained_on_text(summary["cells"].get(label, {}))
        rows.append(label if trained is None else f"{label}\n(trained: {trained})")
    ax.set_xticks(range(len(envs)), envs)
    ax.set_yticks(range(len(labels)), rows, fontsize=8)
    fig.colorbar(im, ax=ax, label=f"return / {summary['normalise_by']} IQM (1 = {summary['normalise_by']})")
    ax.set_title(f"{summary['plan']}: generalisation (IQM over {summary['seeds']} seeds, 95% CI)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def carried_forward(values: np.ndarray) -> np.ndarray:
    """Each column's latest finite value carried forward along the rows (NaN before its first):
    a seed's return of its latest finished episode at every update, also where episodes outlast
    an update (Freeway).

    Args:
      values: updates x seeds, NaN where no episode finished in that update.

    Returns:
      The same shape, gaps filled from above.
    """
    out = np.array(values, np.float64)
    for row in range(1, out.shape[0]):
        gap = ~np.isfinite(out[row])
        out[row, gap] = out[row - 1, gap]
    return out


def _seed_curves(folders: list[Path]) -> tuple[np.ndarray, np.ndarray]:
    """Env steps and every seed's latest-episode return (carried forward) from the curves.csv of a
    cell's seed blocks, side by side (over the updates all blocks have)."""
    xs, blocks = [], []
    for folder in folders:
        if not (folder / "curves.csv").is_file():
            continue
        with (folder / "curves.csv").open() as f:
            rows = list(csv.DictReader(f))
        keys = sorted((k for k in rows[0] if k.startswith("return_seed")), key=lambda k: int(k[len("return_seed"):]))
        xs.append(np.array([float(r["env_steps"]) for r in rows]))
        blocks.append(carried_forward(np.array([[float(r[k]) for k in keys] for r in rows])))
    n = min(len(x) for x in xs)
    return xs[0][:n], np.concatenate([b[:n] for b in blocks], axis=1)


def plot_curves(path: Path, summary: dict[str, Any], cells) -> None:
    """Return against env steps per env, one line per optimizer: the mean over seeds of each seed's
    latest finished episode's return, with a band of ± 1 standard error over seeds.

    Args:
      path: the PNG to write (nothing is written when no env has a cell).
      summary: from `summarise`.
      cells: from `load_cells`.
    """
    envs = [env for env in summary["envs"] if any(env in by_env for by_env in cells.values())]
    if not envs:
        return
    plt = pyplot()
    fig, axes = plt.subplots(1, len(envs), figsize=(4.2 * len(envs), 3.6), dpi=120, squeeze=False)
    for ax, env in zip(axes[0], envs):
        for label in summary["labels"]:
            cell = cells.get(label, {}).get(env)
            if cell is None or not (cell["folder"] / "curves.csv").is_file():
                continue
            x, per_seed = _seed_curves([cell["folder"], *(b["folder"] for b in cell.get("blocks", []))])
            seeds = range(per_seed.shape[1])
            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # updates before any seed's first episode
                n = np.isfinite(per_seed).sum(axis=1)
                mean = np.nanmean(per_seed, axis=1)
                se = np.nanstd(per_seed, axis=1, ddof=1) / np.sqrt(n)
            colour = label_colour(label)
            ax.plot(x, mean, lw=1.4, color=colour, label=f"{label} (n={len(seeds)})")
            ax.fill_between(x, mean - se, mean + se, color=colour, alpha=0.2)
        ax.set_title(env)
        ax.set_xlabel("env steps")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("return of the latest finished episode")
    axes[0][-1].legend(fontsize=7)
    fig.suptitle(f"{summary['plan']}: line = mean over seeds of each seed's latest finished episode; "
                 "band = ± 1 standard error over seeds (not the tables' IQM CI)", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)

"""Statistics of an evaluation plan's folder: per cell the raw final returns
(IQM, mean, 95% bootstrap CIs); per env the scores normalised by the reference optimizer's
IQM (tuned Adam = 1.0); per optimizer the aggregate over envs with stratified bootstrap CIs
and the probability of improvement over the reference; the generalisation matrix.

`summarise` writes summary.json, table.md and the figures (plan_tables, plan_figures) beside the
plan's cells, as `metaopt evaluate` does at its end; `compute_summary` only reads (the report).
The cells come from plan_cells.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from metaopt.config import TUNED_BASELINES_FILE, load_train_config, read_yaml
from metaopt.evaluation import stats
from metaopt.evaluation.plan_cells import (
    COLLAPSE_MEASURES,
    carried_forward,
    collapse_measures,
    load_cells,
    partial_runs,
    seed_range,
)
from metaopt.evaluation.plan_figures import plot_aggregate, plot_curves, plot_generalisation, plot_profiles
from metaopt.evaluation.plan_files import PLAN_FILE, PROVENANCE_FILE, SUMMARY_FILE
from metaopt.evaluation.plan_tables import fmt, generalisation_table, markdown_table, per_seed_table, trained_on_text

# Re-exported: what callers used to import from here.
__all__ = ["summarise", "compute_summary", "versus", "verdict", "probability_entry", "baseline_learning_rates", "fmt",
           "markdown_table", "per_seed_table", "generalisation_table", "trained_on_text", "carried_forward",
           "load_cells", "partial_runs", "collapse_measures", "plot_curves"]



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
                                     **{measure: stats.summarize(cell[measure], seed=seed) if cell[measure].size else None
                                        for measure in COLLAPSE_MEASURES}}
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
        "normalise_by": reference, "head_to_head": [list(pair) for pair in plan.get("head_to_head") or []],
        "note": plan.get("note"),
        "seeds": plan["seeds"], "seed": plan.get("seed", 0), "budget": budgets,
        "planned_timesteps": plan.get("total_timesteps"),
        "reference_iqm": ref_iqm, "cells": table, "aggregate": aggregate,
        "missing": [f"{label} / {env}" for label in labels for env in envs if env not in table[label]],
        "in_progress": partial_runs(out, labels, envs),
        "reused": {f"{label} / {env}": cells[label][env]["reused_from"] for label in labels for env in envs
                   if cells.get(label, {}).get(env, {}).get("reused_from")},
        "hardware": _hardware(cells),
        "compute": _compute(cells),
        "more_seeds": {f"{label} / {env}": [f"{seed_range(b['config']).start}..{seed_range(b['config']).stop - 1} in "
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
      label -> one line, e.g. "0.005 on every env run: the PPO config's rate (configs/ppo/ENV.yaml), not tuned here"
      (the A2C config's, configs/a2c/ENV.yaml, for Catch and the gridworlds).
    """
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
            kinds = {"a2c" if c["config"].get("a2c") else "ppo" for c in by_env.values()}
            config = " or ".join(f"configs/{k}/ENV.yaml" for k in sorted(kinds))
            agent = "/".join(k.upper() for k in sorted(kinds))
            where = f"the {agent} config's rate ({config})" if given else "set in the plan"
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
        return "none recorded yet (no finished cell)"
    kinds = sorted({f"CPU ({d['cpus']} cores)" if d["platform"] == "cpu" else f"{d['platform'].upper()} {d['device_kind']}"
                    for d in devices})
    nodes = len({d["node"] for d in devices})
    return f"{', '.join(kinds)} on {nodes} node{'s' if nodes > 1 else ''}"

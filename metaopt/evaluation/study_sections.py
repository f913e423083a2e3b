"""The study report's parts beside the plans: the CPU recipes at their own budgets, the
sensitivity sweeps, the baselines' learning-rate sweeps and the published anchors; and the
figures a part copies next to the report. Reads its inputs only."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from metaopt.evaluation import stats
from metaopt.evaluation.plan_cells import COLLAPSE_WINDOW
from metaopt.evaluation.plan_stats import fmt, probability_entry
from metaopt.plotting import pyplot
from metaopt.tuning.sensitivity_report import SUMMARY_FILE as SENSITIVITY_SUMMARY
from metaopt.tuning.trials import COMPLETED, best_per_group, read_trials

# Published anchors: (env, optimizer, budget in env steps, value, source).
_OPEN_CODE, _STUDY_PLOT = "Adam in OPEN's code", "the earlier study's plot (read off, approximate)"
ANCHORS = tuple((env, opt, int(steps), value, source) for source, rows in (
    (_OPEN_CODE, [("asterix", "adam", 1e7, 15.04), ("freeway", "adam", 1e7, 61.84), ("breakout", "adam", 1e7, 50.08),
                  ("space_invaders", "adam", 1e7, 167.09), ("ant", "adam", 5e7, 6517.31)]),
    (_STUDY_PLOT, [("asterix", "open", 1e7, 25.5), ("asterix", "adam", 1e7, 14.0), ("asterix", "rmsprop", 1e7, 14.5),
                   ("ant", "adam", 5e7, 6400.0), ("ant", "open", 5e7, 6300.0), ("ant", "rmsprop", 5e7, 6200.0),
                   ("ant", "optim4rl", 5e7, 5200.0)]),
) for env, opt, steps, value in rows)


def copy_figures(folder: Path, plan: str, out: Path, names: tuple[str, ...]) -> list[str]:
    """Copy a part's figures that exist to OUT/figures/PLAN/; their Markdown image links."""
    copied = []
    for name in names:
        if (folder / name).is_file():
            target = out / "figures" / plan / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(folder / name, target)
            copied.append(f"![{plan} {name.removesuffix('.png')}](figures/{plan}/{name})")
    return copied


RECIPE_COMMAND = "benchmarks/meta_training.py and benchmarks/optim4rl_small_tasks.py (benchmarks/README.md)"


def _recipe_reference(results: dict[str, Any]) -> str | None:
    """The baseline a recipe is compared with: tuned Adam where it ran, else Adam."""
    return next((name for name in ("adam:tuned", "adam") if name in results), None)


def recipes_section(recipes: list[Path], summaries: list[dict[str, Any]], out: Path | None = None) -> list[str]:
    """Each CPU recipe's optimizer at its own budget against the baselines on its fresh seeds, from
    the recipe's per-seed final returns, beside how it fares at 1e7 steps in the plans."""
    lines = ["## 6. Meta-training at CPU scale: the recipes at their own budgets", ""]
    if not recipes:
        return [*lines, f"Not given. Add `--recipes benchmarks/recipes/NAME.json ...` (made by {RECIPE_COMMAND}).", ""]
    lines += ["Each optimizer a CPU recipe meta-trained here, evaluated at the budget it was meta-trained for on "
              "fresh seeds no choice was made on, against the baselines on the same seeds: IQM [95% CI], the "
              "difference of IQMs from the reference (Adam, tuned where the recipe tuned it) with its bootstrap CI, "
              "and P(better than the reference) [95% CI].", ""]
    for path in recipes:
        record = json.loads(path.read_text())
        results, ref = record["results"], _recipe_reference(record["results"])
        lines += [f"### `{path.stem}`: {record.get('env', '?')}, {record.get('budget_env_steps', 0):,} env steps, "
                  f"seeds {record['eval_seed']}..{record['eval_seed'] + record['seeds'] - 1}", "",
                  f"| optimizer | n | IQM [95% CI] | IQM - {ref} [95% CI] | P(better than {ref}) [95% CI] |",
                  "|---|---|---|---|---|"]
        reference = np.asarray(results[ref]["final_returns"], np.float64) if ref else None
        for label, r in results.items():
            runs = np.asarray(r["final_returns"], np.float64)
            iqm = _iqm_entry(runs)
            if reference is None or label == ref:
                lines.append(f"| {label} | {np.isfinite(runs).sum()} | {fmt(iqm, 3)} | | |")
                continue
            prob = probability_entry(runs, reference)
            lines.append(f"| {label} | {np.isfinite(runs).sum()} | {fmt(iqm, 3)} | "
                         f"{fmt(_difference(results, label, ref), 3)} | {fmt(prob)} |")
        # The plans' cells that ran this recipe's optimizer (their source is its meta-parameter file).
        at_scale = [f"{label} {fmt(entry['normalised'])} of {s['normalise_by']} on {env}"
                    for s in summaries for label, by_env in s["cells"].items()
                    for env, entry in by_env.items()
                    if entry.get("normalised") and str(entry.get("source") or "").endswith(f"{path.stem}.safetensors")]
        if at_scale:
            lines += ["", "At 1e7 steps, 50x beyond its meta-training budget (normalised IQM [95% CI]): "
                      + "; ".join(at_scale) + "."]
        lines.append("")
    return lines + meta_seeds_part(recipes, out)


ESCAPE_FACTOR = 2.0  # a meta-training "escapes" at the first iteration whose curve is twice its first-10 mean


def escape_iteration(values: list[float], k: int = 10, factor: float = ESCAPE_FACTOR) -> int | None:
    """The first iteration (counted from 1) whose value reaches `factor` x the mean of the first
    `k`: where a run leaves its starting level (OPEN's ES: the random-policy fitness of a no-op
    optimizer). None: never, or a start at or below zero."""
    start = float(np.mean(values[:k]))
    if start <= 0:
        return None
    return next((i for i, v in enumerate(values, 1) if v >= factor * start), None)


def _meta_seed_groups(recipes: list[Path]) -> dict[str, list[dict[str, Any]]]:
    """Records of one recipe meta-trained from at least 2 meta-seeds, by recipe, each group in
    meta-seed order."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for path in recipes:
        record = json.loads(path.read_text())
        if record.get("curve") and record.get("meta_training_seed") is not None:
            groups.setdefault(record["recipe"], []).append(record)
    return {recipe: sorted(records, key=lambda r: r["meta_training_seed"]) for recipe, records in sorted(groups.items())
            if len({r["meta_training_seed"] for r in records}) >= 2}


def _meta_seed_row(record: dict[str, Any]) -> dict[str, Any]:
    """One meta-seed's trained optimizer: its IQM, its difference from its initialisation (it
    learns when that CI is above 0) and from the record's reference, with that reference's label."""
    results = record["results"]
    trained, init = _learned_labels(results)
    versus_init = _difference(results, trained, init)
    ref = _recipe_reference(results)
    return {"iqm": _iqm_entry(np.asarray(results[trained]["final_returns"], np.float64)), "versus_init": versus_init,
            "learns": versus_init is not None and versus_init["ci"][0] > 0, "reference": ref,
            "versus_ref": _difference(results, trained, ref) if ref else None}


def meta_seeds_answers(recipes: list[Path]) -> list[str]:
    """A line per recipe meta-trained from several meta-seeds, for the answers at a glance: how
    often it learns, and how often it is better or worse than its reference (the difference's CI)."""
    lines = []
    for recipe, records in _meta_seed_groups(recipes).items():
        rows = [_meta_seed_row(r) for r in records]
        compared = [row for row in rows if row["versus_ref"]]
        better = sum(row["versus_ref"]["ci"][0] > 0 for row in compared)
        worse = sum(row["versus_ref"]["ci"][1] < 0 for row in compared)
        refs = sorted({row["reference"] for row in compared})
        versus = (f"; against {', '.join(refs)} at its own budget: better on {better}, worse on {worse}, within noise "
                  f"on {len(compared) - better - worse}") if compared else ""
        lines.append(f"   - `{recipe}` (section 6) over {len(rows)} meta-seeds: learns on "
                     f"{sum(row['learns'] for row in rows)} of {len(rows)}{versus}.")
    return lines


def meta_seeds_part(recipes: list[Path], out: Path | None) -> list[str]:
    """One recipe meta-trained from several meta-seeds (records of the same `recipe` with different
    `meta_training_seed`): how often it learns, a row per meta-seed, and their curves in one figure
    (written under OUT/figures/recipes/ when `out` is given)."""
    lines = []
    for recipe, records in _meta_seed_groups(recipes).items():
        lines += [f"### `{recipe}` over {len(records)} meta-seeds: how often it learns", "",
                  f"Each meta-seed's own meta-training and its trained optimizer on the same fresh seeds. Escape: the "
                  f"first iteration whose {records[0]['curve']['metric']} reaches {ESCAPE_FACTOR:g}x its first-10 mean. "
                  "Learns: the trained optimizer's IQM above its initialisation's, the difference's 95% CI above 0.", "",
                  "| meta-seed | iterations | escape | first 10 -> last 10 (mean) | trained IQM [95% CI] | "
                  "trained - initialisation [95% CI] | learns | trained - reference [95% CI] |",
                  "|---|---|---|---|---|---|---|---|"]
        learned = 0
        for r in records:
            curve, row = r["curve"], _meta_seed_row(r)
            learned += row["learns"]
            versus_ref = f"{fmt(row['versus_ref'], 3)} ({row['reference']})" if row["versus_ref"] else f"({row['reference']})"
            lines.append(f"| {r['meta_training_seed']} | {curve['iterations']} | "
                         f"{escape_iteration(curve['values']) or 'never'} | {curve['first_k_mean']:.2f} -> "
                         f"{curve['last_k_mean']:.2f} | {fmt(row['iqm'], 3)} | {fmt(row['versus_init'], 3)} | "
                         f"{'yes' if row['learns'] else 'no'} | {versus_ref} |")
        lines += ["", f"Learns on {learned} of {len(records)} meta-seeds."]
        if out is not None:
            lines += ["", _plot_meta_seeds(recipe, records, out)]
        lines.append("")
    return lines


def _learned_labels(results: dict[str, Any]) -> tuple[str, str | None]:
    """(the trained optimizer's label, its initialisation's label) in a recipe record."""
    trained = next(k for k in results if k.endswith("(meta-trained)"))
    init = next((k for k in results if k.endswith("(its initialisation)")), None)
    return trained, init


def _iqm_entry(runs: np.ndarray) -> dict[str, Any]:
    """IQM of the finite runs with its bootstrap CI, as a `fmt` entry."""
    return {"value": float(stats.iqm(runs[np.isfinite(runs)])), "ci": list(stats.bootstrap_ci(runs))}


def _difference(results: dict[str, Any], label: str, other: str | None) -> dict[str, Any] | None:
    """IQM(label) - IQM(other) with its bootstrap CI, as a `fmt` entry; None without `other`."""
    if other is None:
        return None
    diff = stats.difference_ci(np.asarray(results[other]["final_returns"], np.float64),
                               np.asarray(results[label]["final_returns"], np.float64), statistic=stats.iqm)
    return {"value": diff[0], "ci": list(diff[1:])}


def _plot_meta_seeds(recipe: str, records: list[dict[str, Any]], out: Path) -> str:
    """Each meta-seed's curve in one figure; its Markdown image link."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    for r in records:
        ax.plot(range(1, len(r["curve"]["values"]) + 1), r["curve"]["values"], label=f"meta-seed {r['meta_training_seed']}")
    ax.set_xlabel("meta-iteration")
    ax.set_ylabel(records[0]["curve"]["metric"])
    ax.set_title(f"{recipe}: one curve per meta-seed")
    ax.legend()
    name = Path(recipe).stem + "_meta_seeds.png"
    target = out / "figures" / "recipes" / name
    target.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(target, dpi=100)
    plt.close(fig)
    return f"![{Path(recipe).stem} meta-seeds](figures/recipes/{name})"


def _count_range(counts: list[int]) -> str:
    return str(counts[0]) if min(counts) == max(counts) else f"{min(counts)}-{max(counts)}"


def _study_section(folder: Path, out: Path) -> list[str]:
    """A sensitivity study's folder (summary.json from metaopt.tuning.sensitivity_report): the grid's
    normalised returns with CIs, the spreads and the tuning shift."""
    s = json.loads((folder / SENSITIVITY_SUMMARY).read_text())
    keys = list(s["grid"])
    short = [k.split(".")[-1].replace("_", " ") for k in keys]
    grid_size = int(np.prod([len(v) for v in s["grid"].values()]))
    found = len(s["configurations"])
    extent = f"All {found} configurations of the grid" if found == grid_size else \
        f"{found} of the grid's {grid_size} configurations so far"
    lines = [f"### {folder.name}: {s['env']}, {s['trials']} meta-training runs", "",
             f"{extent}, each meta-trained with "
             f"{_count_range([len(c['meta_seeds']) for c in s['configurations']])} meta-seed(s); each "
             f"trained optimizer scored by {len(s['eval_seeds'])} fresh agents (seeds {s['eval_seeds'][0]}-"
             f"{s['eval_seeds'][-1]}); final return divided by {s['reference']}'s on the same seeds "
             f"({s['reference_final_return']:.3f}); 95% CI from a bootstrap over meta-seeds and seeds, the seeds "
             "paired with the reference's (its noise included).", "",
             "| " + " | ".join(short) + " | normalised [95% CI] | per meta-seed | meta-seeds |",
             "|" + "---|" * (len(keys) + 3)]
    for c in sorted(s["configurations"], key=lambda c: -c["normalised"]):
        lines.append("| " + " | ".join(str(c["point"][k]) for k in keys) +
                     f" | {c['normalised']:.3f} [{c['ci'][0]:.3f}, {c['ci'][1]:.3f}] | "
                     f"{', '.join(f'{v:.3f}' for v in c['per_meta_seed'])} | {len(c['meta_seeds'])} |")
    seed_sd = (f"of one configuration's meta-seeds, on average, {s['meta_seed_sd_mean']:.4f} (where it exceeds the "
               "first, meta-seeds alone explain the configurations' differences)" if np.isfinite(s["meta_seed_sd_mean"])
               else "the meta-seeds' own spread is not measured yet (one meta-seed per configuration)")
    widest = max(s["configurations"], key=lambda c: np.ptp(c["per_meta_seed"]))
    where = ", ".join(f"{name} {widest['point'][k]}" for name, k in zip(short, keys))
    values = ", ".join(f"{v:.3f}" for v in widest["per_meta_seed"])
    disagree = f" The meta-seeds disagree most at {where}: {values}." if len(widest["per_meta_seed"]) > 1 else ""
    lines += ["", f"Best - worst configuration: {s['spread']:.3f} (normalised return). Standard deviation of the "
              f"configurations' normalised returns {s['configuration_sd']:.4f}; {seed_sd}.{disagree}", "",
              "Tuning shift: what each search spans and what it cost (trial-hours: the sum of its trials' wall time on "
              "the machine that ran them, trials sharing its cores):", "",
              "| search | points | best - worst | best | worst | trial-hours |", "|---|---|---|---|---|---|"]
    for search in s["searches"]:
        lines.append(f"| {search['name']} | {search['points']} | {search['spread']:.3f} | {max(search['values']):.3f} | "
                     f"{min(search['values']):.3f} | {search['compute_h']:.2f} |")
    lines += ["", " ".join(copy_figures(folder, folder.name, out, ("heatmap.png", "tuning_shift.png"))), ""]
    return lines


def sweep_answers(sweeps: list[Path]) -> list[str]:
    """A line per sensitivity study (its summary.json): how far its configurations spread, against
    the meta-seeds' own spread and the baselines' spread over their learning-rate grids."""
    lines = []
    for sweep in sweeps:
        if not (sweep / SENSITIVITY_SUMMARY).is_file():
            continue
        s = json.loads((sweep / SENSITIVITY_SUMMARY).read_text())
        seeds = (f"configurations' sd {s['configuration_sd']:.4f} against one configuration's meta-seeds' "
                 f"{s['meta_seed_sd_mean']:.4f} on average" if np.isfinite(s["meta_seed_sd_mean"])
                 else "the meta-seeds' own spread not measured yet")
        baselines = "; ".join(f"{b['name']} spans {b['spread']:.2f} over {b['points']} points"
                              for b in s["searches"] if not b["learned"])
        lines.append(f"   - `{sweep.name}` ({s['env']}, {len(s['configurations'])} configurations, {s['trials']} "
                     f"meta-trainings): best - worst {s['spread']:.3f} of {s['reference']}'s return, {seeds}"
                     + (f"; {baselines}" if baselines else "") + ".")
    return lines


def sweep_section(sweeps: list[Path], out: Path, command: str) -> list[str]:
    found = [s for s in sweeps if (s / "trials.csv").is_file() or (s / SENSITIVITY_SUMMARY).is_file()]
    if not found:
        return [f"Not run. Command: `{command}`, then `metaopt report ... --sweep runs/tune/sensitivity/NAME`.", ""]
    lines = []
    for sweep in found:
        if (sweep / SENSITIVITY_SUMMARY).is_file():
            lines += _study_section(sweep, out)
            continue
        with (sweep / "trials.csv").open() as f:
            rows = [r for r in csv.DictReader(f) if r.get("final_return") not in (None, "")]
        lines += [f"### Sweep `{sweep.name}`", ""]
        if rows:
            best = max(rows, key=lambda r: float(r["final_return"]))
            worst = min(rows, key=lambda r: float(r["final_return"]))
            keys = [k for k in rows[0] if k not in ("trial_id", "status", "final_return", "final_return_se", "seconds")]
            show = lambda r: ", ".join(f"{k}={r[k]}" for k in keys)  # noqa: E731
            lines += [f"{len(rows)} grid points. Best {float(best['final_return']):.4g} at {show(best)}; "
                      f"worst {float(worst['final_return']):.4g} at {show(worst)}.", ""]
        lines += [" ".join(copy_figures(sweep, sweep.name, out, ("heatmap.png", "tuning_shift.png"))), ""]
    return lines


def baseline_sweeps(folders: list[Path], out: Path) -> list[str]:
    """Each learning-rate sweep's trials: rate, final return (mean ± s.e. over the tuning
    seeds), status; the chosen rate in bold."""
    found = [f for f in folders if (f / "trials.csv").is_file()]
    if not found:
        return []
    lines = ["### Learning-rate sweeps of the baselines", "",
             "Final return: mean ± s.e. over the sweep's tuning seeds (not the seeds reported above); in bold the",
             "rate chosen (the best completed trial), which `adam:tuned` / `rmsprop:tuned` read from the tuned file.", "",
             "| sweep | env | optimizer | learning rate | final return | env steps | status |",
             "|---|---|---|---|---|---|---|"]
    figures = []
    for folder in found:
        rows = read_trials(folder / "trials.csv")
        best = best_per_group(rows)
        for r in rows:
            chosen = best.get(r["env"], {}).get(r["optimizer"], {}).get("trial_id") == r["trial_id"]
            rate = f"**{r['learning_rate']:.3g}**" if chosen else f"{r['learning_rate']:.3g}"
            value = f"{r['final_return']:.2f} ± {r['final_return_se']:.2f}" if r["status"] == COMPLETED else "—"
            lines.append(f"| {folder.name} | {r['env']} | {r['optimizer']} | {rate} | {value} | {r['env_steps']:,} | "
                         f"{r['status']} |")
        figures += copy_figures(folder, f"baselines-{folder.name}", out, ("lr_sweep.png",))
    return [*lines, "", " ".join(figures), ""]


def anchors(summaries: list[dict[str, Any]]) -> list[str]:
    """Published figures beside this project's cells of the same env, optimizer and budget."""
    lines = ["## Published anchors", "",
             "Our IQM [95% CI] from any plan above with the same env, optimizer family and budget.", "",
             "| env | optimizer | budget | published | source | ours |", "|---|---|---|---|---|---|"]
    for env, opt, budget, value, source in ANCHORS:
        ours = []
        for s in summaries:
            for label, by_env in s["cells"].items():
                cell = by_env.get(env)
                if cell is None or s["budget"].get(env) != budget or not _same_family(label, opt):
                    continue
                ours.append(f"{fmt({'value': cell['raw']['iqm'], 'ci': cell['raw']['iqm_ci']})} ({label}, {s['plan']})")
        lines.append(f"| {env} | {opt} | {budget:,} | {value:g} | {source} | {'; '.join(ours) or '—'} |")
    lines += ["", "The earlier study's Breakout plot used a 5e5-step budget (a leftover in the reference code), so it",
              "is not comparable with 1e7-step results and is left out.", ""]
    return lines


def _same_family(label: str, optimizer: str) -> bool:
    name = label.lower()
    return name == optimizer or name.startswith(f"{optimizer}:") or name.startswith(f"{optimizer}-")


COLLAPSED_SHARE = 0.5  # a cell whose runs end, by IQM, below half their peak return is called collapsed


def _share(summary: dict[str, Any], label: str, env: str) -> dict[str, Any] | None:
    """The cell's end_share summary, unless it is missing or taken from another plan (shown there)."""
    if f"{label} / {env}" in (summary.get("reused") or {}):
        return None
    found = (summary["cells"].get(label, {}).get(env) or {}).get("end_share")
    return found if found and found["n"] else None


def collapsed_cells(summaries: list[dict[str, Any]]) -> str | None:
    """One sentence: the cells of these plans whose runs lost, by IQM, more than `COLLAPSED_SHARE`
    of their peak return by the end, or that none did; None when no cell has the measure."""
    shares = [(summary["plan"], label, env, share) for summary in summaries for label in summary["labels"]
              for env in summary["envs"] if (share := _share(summary, label, env))]
    if not shares:
        return None
    found = [f"{label} on {env} ({plan}: {share['iqm']:.2f})" for plan, label, env, share in shares
             if share["iqm"] > COLLAPSED_SHARE]
    return (f"Collapsed: {'; '.join(found)}." if found
            else f"No cell lost more than {COLLAPSED_SHARE} of its peak return by the end.")


def collapse_section(summaries: list[dict[str, Any]]) -> list[str]:
    """Policy collapse across the given plans' runs (the whole training of every cell, learned
    optimizers and Adam side by side): per plan a table of the share of its peak return each cell
    had lost by the end, and the cells that lost more than `COLLAPSED_SHARE` of it."""
    tables = []
    for summary in summaries:
        rows = []
        for label in summary["labels"]:
            shares = [_share(summary, label, env) for env in summary["envs"]]
            if any(shares):
                rows.append(f"| {label} | " + " | ".join(
                    f"{fmt({'value': f['iqm'], 'ci': f['iqm_ci']})} n={f['n']}" if f else "—" for f in shares) + " |")
        if rows:
            tables += [f"Plan `{summary['plan']}`:", "", "| optimizer | " + " | ".join(summary["envs"]) + " |",
                       "|---|" + "---|" * len(summary["envs"]), *rows, ""]
    if not tables:
        return []
    return ["### Policy collapse in the other plans' runs", "",
            "What of its peak return each cell's runs had lost by the end of training: (peak - final) / peak of "
            f"the return smoothed by a trailing mean over {COLLAPSE_WINDOW} updates, per seed; IQM over seeds with "
            "its 95% CI and n (seeds whose peak is above 0). 0: the run ends at its peak; 1: it lost all of it. "
            f"A cell is called collapsed when its IQM is above {COLLAPSED_SHARE}. Cells a plan takes from another "
            "plan are shown under that plan.", "", collapsed_cells(summaries), "", *tables]


# The study's own setting of each question (GPU scale) and the command that runs it on a cluster,
# printed at the head of its section beside whatever scale the plans below ran at.
STUDY_SETTINGS = {
    "main": ("the four MinAtar games at 1e7 env steps and Brax Ant at 5e7, 16 seeds per cell",
             "metaopt evaluate --plan configs/eval/minatar_1e7.yaml --set seeds=16 --out runs/eval/minatar_1e7_gpu"),
    "ant": ("Brax Ant at 5e7 env steps, 16 seeds per cell",
            "metaopt evaluate --plan configs/eval/ant_reproduction.yaml --out runs/eval/ant_reproduction"),
    "generalisation": ("each game's OPEN on all four MinAtar games at 1e7 env steps, 16 seeds per cell",
                       "metaopt evaluate --plan configs/eval/generalisation_minatar.yaml --out runs/eval/generalisation_minatar"),
    "sensitivity": ("Optim4RL meta-trained on Brax Ant over meta learning rate 1e-5..1e-3 x reset interval 32..512 "
                    "x L2 off/on, one GPU per trial",
                    "metaopt tune-sensitivity --config configs/tune/sensitivity_optim4rl_ant.yaml "
                    "--set resources.gpus_per_trial=1 --out runs/tune/sensitivity_ant"),
    "l2": ("Optim4RL meta-trained on Brax Ant without and with L2, against Adam, 16 seeds at 5e7 env steps",
           "metaopt evaluate --plan configs/eval/l2_ablation_ant.yaml --out runs/eval/l2_ablation_ant"),
}


def study_setting(key: str) -> list[str]:
    """The line that puts a section's question in the study's own setting, with its command."""
    setting, command = STUDY_SETTINGS[key]
    return [f"The study's setting: {setting} (GPU scale; `{command}`). What ran here is stated by each plan or "
            "sweep below (hardware, tasks, budgets, seeds).", ""]

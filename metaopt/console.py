"""Terminal presentation only (the CLI runs things and hands results here): progress while
training or meta-training, tables at the end, doctor lines.

On a terminal, a rich progress bar; in logs and pipes (ray jobs, CI), one plain line per
chunk, since a bar that only renders at exit shows nothing for a long job.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from metaopt.config import TrainConfig
from metaopt.evaluation.plan_stats import fmt
from metaopt.evaluation.report import TABLE_HEADER, latest_return, table_rows
from metaopt.training.runs import ProgressFn, RunResult
from metaopt.tuning.sweep import COMPLETED, spread

# Logs and pipes get one unwrapped line per update, whatever width rich would guess.
console = Console(stderr=True, width=None if sys.stderr.isatty() else 160)


def _latest_return(metrics: dict[str, np.ndarray]) -> str:
    ret = latest_return(metrics["episode_return"])
    return "-" if np.isnan(ret) else f"{ret:.2f}"


@contextmanager
def training_progress(cfg: TrainConfig, label: str) -> Iterator[ProgressFn]:
    """A progress callback for `run_training`: a bar on a terminal, a line per chunk in logs.

    Args:
      cfg: the run (its env and number of updates).
      label: the optimizer's label shown.

    Yields:
      A `ProgressFn` (updates done, total, metrics so far) for `run_training(progress=...)`.
    """
    name = f"{label} {cfg.env.name}"
    if not console.is_terminal:
        first: dict[str, tuple[float, int]] = {}

        def log_line(done: int, total: int, metrics: dict[str, np.ndarray]) -> None:
            now = time.perf_counter()
            t_first, d_first = first.setdefault("chunk", (now, done))  # rate known from chunk 2
            eta = f", eta {(total - done) * (now - t_first) / (done - d_first):.0f}s" if done > d_first else ""
            console.print(f"{name}: update {done}/{total}, return {_latest_return(metrics)}{eta}", highlight=False)

        console.print(f"{name}: compiling", highlight=False)
        yield log_line
        return
    columns = (
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("return {task.fields[ret]}"), TimeElapsedColumn(), TimeRemainingColumn(),
    )
    with Progress(*columns, console=console) as bar:
        task = bar.add_task(f"{name} · compiling", total=cfg.agent.num_updates, ret="-")

        def on_chunk(done: int, total: int, metrics: dict[str, np.ndarray]) -> None:
            bar.update(task, completed=done, ret=_latest_return(metrics), description=name)

        yield on_chunk


def run_label(cfg: TrainConfig) -> str:
    """The optimizer's name, plus the meta-parameter file's stem for learned ones.

    Args:
      cfg: the run.

    Returns:
      The label.
    """
    path = getattr(cfg.optimizer, "meta_params", None)
    if not path:
        return cfg.optimizer.name
    stem = Path(path).stem
    return stem if stem.startswith(cfg.optimizer.name) else f"{cfg.optimizer.name}-{stem}"


def show_runs(results: Sequence[RunResult], out: Path) -> None:
    """The table of a train or compare command, and where its files are.

    Args:
      results: the finished runs.
      out: the folder their files were written to.
    """
    table = Table(title=f"training results ({out})")
    for h in TABLE_HEADER:
        table.add_column(h, justify="left" if h in ("optimizer", "env") else "right")
    for row in table_rows(results):
        table.add_row(*row)
    _print_table(table)
    console.print(f"wrote {out}/results.json, curves.csv, returns.png", highlight=False)


def _meta_fields(row: dict[str, float]) -> dict[str, str]:
    def fmt(key: str) -> str:
        v = row.get(key, float("nan"))
        return "-" if np.isnan(v) else f"{v:.3f}"

    if "fitness_best" in row:
        return {"a": f"best {fmt('fitness_best')}", "b": f"mean {fmt('fitness_mean')}"}
    return {"a": f"meta-loss {fmt('meta_loss')}", "b": f"|grad| {fmt('meta_grad_norm')}"}


@contextmanager
def meta_progress(cfg) -> Iterator[Callable[[int, int, dict[str, float]], None]]:
    """A progress callback for meta-training: a bar (generation, best/mean fitness or
    meta-loss, env steps/s, ETA) on a terminal, a line per iteration in logs.

    Args:
      cfg: the MetaTrainConfig (method, envs, iterations).

    Yields:
      A callback (iterations done, total, that iteration's metrics row with seconds and
      env_steps_per_second).
    """
    name = f"{cfg.method} {'+'.join(cfg.env_names)}"
    unit = "generation" if cfg.method == "open" else "meta-iteration"
    if console.is_terminal:
        columns = (
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[a]} · {task.fields[b]} · {task.fields[rate]} steps/s"),
            TimeElapsedColumn(), TimeRemainingColumn(),
        )
        with Progress(*columns, console=console) as bar:
            task = bar.add_task(f"{name} · compiling", total=cfg.iterations, a="", b="", rate="-")

            def on_step(done: int, total: int, row: dict[str, float]) -> None:
                bar.update(task, completed=done, description=name, rate=f"{row['env_steps_per_second']:,.0f}",
                           **_meta_fields(row))

            yield on_step
        return
    console.print(f"{name}: compiling", highlight=False)

    def log_line(done: int, total: int, row: dict[str, float]) -> None:
        f = _meta_fields(row)
        eta = (total - done) * row["seconds"]
        console.print(f"{name}: {unit} {done}/{total}, {f['a']}, {f['b']}, "
                      f"{row['env_steps_per_second']:,.0f} env steps/s, eta {eta:.0f}s", highlight=False)

    yield log_line


def show_meta_result(cfg, out: Path, result) -> None:
    """After meta-training: where it resumed from, the last iteration's metrics, the files.

    Args:
      cfg: the MetaTrainConfig.
      out: the run's output folder.
      result: the MetaRunResult of `meta_train`.
    """
    unit = "generation" if cfg.method == "open" else "meta-iteration"
    if result.resumed_from:
        console.print(f"resumed from the checkpoint at {unit} {result.resumed_from}", highlight=False)
    table = Table(title=f"{cfg.method} meta-training on {', '.join(cfg.env_names)} ({out})")
    table.add_column("after the last iteration")
    table.add_column("value", justify="right")
    last = result.history[-1] if result.history else {}
    table.add_row(unit + "s", f"{int(last.get('iteration', result.resumed_from))}/{cfg.iterations}")
    for key, v in last.items():
        if key not in ("iteration", "seconds"):
            table.add_row(key, f"{v:,.4g}")
    table.add_row("wall seconds (all iterations)", f"{sum(h['seconds'] for h in result.history):,.1f}")
    _print_table(table)
    console.print(f"wrote {result.meta_params_path} (use: metaopt train --optimizer {cfg.method} "
                  f"--meta-params {result.meta_params_path}), metrics.csv, meta_training.png, checkpoints/", highlight=False)


def show_meta_job(job, evaluate: bool) -> None:
    """Where a Ray job's MLflow run and registered model are, and the champion verdict.

    Args:
      job: the JobResult of `run_meta_job`.
      evaluate: whether the job evaluated the result against the champion (prints the verdict).
    """
    console.print(f"MLflow run {job.run_id}; registered models:/{job.model_name}/{job.version} "
                  f"(models:/{job.model_name}@latest)", highlight=False)
    if evaluate:
        old = "none" if job.champion_score is None else f"{job.champion_score:.3f}"
        verdict = "is now @champion" if job.promoted else "stays behind @champion"
        console.print(f"evaluation score {job.score:.3f} vs champion {old}: version {job.version} {verdict}", highlight=False)


def _print_table(table: Table) -> None:
    out_console = Console()
    if not out_console.is_terminal:
        out_console.width = 120  # logs and pipes: keep the table on one line per row
    out_console.print(table)


def _fmt(v: float, digits: int = 3) -> str:
    return "-" if v is None or np.isnan(v) else ("inf" if np.isinf(v) else f"{v:.{digits}g}")


def show_baseline_sweep(sweep, result) -> None:
    """A table of the best learning rate per env and optimizer, and where the files are.

    Args:
      sweep: the BaselineSweepConfig.
      result: its BaselineSweepResult.
    """
    table = Table(title=f"Tuned baselines ({result.out})")
    for h in ("env", "optimizer", "best lr", "final return", "± s.e.", "best/worst", "completed", "stopped early"):
        table.add_column(h, justify="left" if h in ("env", "optimizer") else "right")
    for env in sweep.envs:
        for opt in sweep.optimizers:
            group = [r for r in result.rows if r["env"] == env and r["optimizer"] == opt]
            best = result.best.get(env, {}).get(opt)
            edge = " (grid edge)" if best and best["at_grid_edge"] else ""
            table.add_row(env, opt, _fmt(best["learning_rate"]) + edge if best else "-",
                          _fmt(best["final_return"], 4) if best else "-", _fmt(best["final_return_se"]) if best else "-",
                          _fmt(spread([r["final_return"] for r in group])),
                          str(sum(r["status"] == COMPLETED for r in group)), str(sum(r["status"] != COMPLETED for r in group)))
    _print_table(table)
    console.print(f"wrote {sweep.tuned_path} (use adam:tuned / rmsprop:tuned), {result.out}/trials.csv, "
                  f"lr_sweep.png; MLflow run {result.parent_run_id}", highlight=False)


def show_sensitivity_sweep(sweep, result) -> None:
    """A table of the final return per grid point, and where the files are.

    Args:
      sweep: the SensitivitySweepConfig.
      result: its SensitivitySweepResult.
    """
    table = Table(title=f"Sensitivity of {sweep.name} (final return of fresh agents; {result.out})")
    for key in sweep.grid:
        table.add_column(key, justify="right")
    table.add_column("final return", justify="right")
    table.add_column("runs", justify="right")
    for cell in result.cells:
        table.add_row(*(str(cell[k]) for k in sweep.grid), _fmt(cell["final_return"], 4), str(cell["runs"]))
    _print_table(table)
    console.print(f"spread (best/worst over the grid): {_fmt(result.spread)}; wrote {result.out}/heatmap.png, "
                  f"tuning_shift.png, trials.csv; MLflow run {result.parent_run_id}", highlight=False)


def log_line(text: str) -> None:
    """A progress line on stderr (plans, long jobs).

    Args:
      text: the line, printed as is (no highlighting).
    """
    console.print(text, highlight=False)


def show_plan_summary(summary: dict, out: Path) -> None:
    """An evaluation plan's table: raw IQM [95% CI] per env, normalised aggregate, P(improvement).

    Args:
      summary: from `metaopt.evaluation.plan_stats.summarise`.
      out: the plan's folder.
    """
    envs, ref = summary["envs"], summary["normalise_by"]
    table = Table(title=f"{summary['plan']}: final return IQM [95% CI] over {summary['seeds']} seeds ({out})")
    table.add_column("optimizer")
    for env in envs:
        table.add_column(env, justify="right")
    if ref:
        table.add_column(f"normalised IQM (/{ref})", justify="right")
        table.add_column(f"P(> {ref})", justify="right")
    for label in summary["labels"]:
        row = [label]
        for env in envs:
            cell = summary["cells"].get(label, {}).get(env)
            row.append("not run" if cell is None else fmt({"value": cell["raw"]["iqm"], "ci": cell["raw"]["iqm_ci"]})
                       + (" (held out)" if cell.get("held_out") else ""))
        if ref:
            agg = summary["aggregate"].get(label, {})
            row += [fmt(agg.get("normalised_iqm")), fmt(agg.get("probability_of_improvement"))]
        table.add_row(*row)
    _print_table(table)
    console.print(f"wrote {out}/summary.json, table.md, aggregate.png, profile.png, generalisation.png, curves.png, "
                  f"cells/; `metaopt report {out} --out DIR` (or evaluate's --report DIR) makes the report", highlight=False)


def show_check(check) -> None:
    """One `metaopt doctor` line: ok, FAIL (needed) or -- (optional), the check, its detail.

    Args:
      check: a `metaopt.doctor.Check`.
    """
    mark = "[green]ok  [/]" if check.ok else ("[red]FAIL[/]" if check.needed else "[yellow]--  [/]")
    Console().print(f"{mark} {check.name:<12} {check.detail}", highlight=False, soft_wrap=True)


def show_doctor_verdict(failed: Sequence[str]) -> None:
    """The doctor's last line: the needed checks that failed, or that everything needed is usable.

    Args:
      failed: names of the needed checks that failed.
    """
    Console().print(f"needed and unusable: {', '.join(failed)}" if failed else "everything needed is usable",
                    highlight=False, soft_wrap=True)

"""Terminal presentation of runs: progress while training, a table at the end.

On a terminal, a rich progress bar; in logs and pipes (ray jobs, CI), one plain line per
chunk, since a bar that only renders at exit shows nothing for a long job.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Sequence

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from metaopt.config import TrainConfig
from metaopt.evaluation.report import TABLE_HEADER, mean_stderr, table_rows, write_run
from metaopt.evaluation.runs import RunResult, run_training

console = Console(stderr=True)


def _latest_return(metrics: dict[str, np.ndarray]) -> str:
    mean, _ = mean_stderr(metrics["episode_return"][:, -1])
    return "-" if np.isnan(mean) else f"{float(mean):.2f}"


def train_with_progress(cfg: TrainConfig, label: str) -> RunResult:
    name = f"{label} {cfg.env.name}"
    if not console.is_terminal:
        first: dict[str, tuple[float, int]] = {}

        def log_line(done: int, total: int, metrics: dict[str, np.ndarray]) -> None:
            now = time.perf_counter()
            t_first, d_first = first.setdefault("chunk", (now, done))  # rate known from chunk 2
            eta = f", eta {(total - done) * (now - t_first) / (done - d_first):.0f}s" if done > d_first else ""
            console.print(f"{name}: update {done}/{total}, return {_latest_return(metrics)}{eta}", highlight=False)

        console.print(f"{name}: compiling", highlight=False)
        return run_training(cfg, label=label, progress=log_line)

    columns = (
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("return {task.fields[ret]}"), TimeElapsedColumn(), TimeRemainingColumn(),
    )
    with Progress(*columns, console=console) as bar:
        task = bar.add_task(f"{name} · compiling", total=cfg.ppo.num_updates, ret="-")

        def on_chunk(done: int, total: int, metrics: dict[str, np.ndarray]) -> None:
            bar.update(task, completed=done, ret=_latest_return(metrics), description=name)

        return run_training(cfg, label=label, progress=on_chunk)


def run_label(cfg: TrainConfig) -> str:
    """The optimizer's name, plus the meta-parameter file's stem for learned ones."""
    path = getattr(cfg.optimizer, "meta_params", None)
    return f"{cfg.optimizer.name}-{Path(path).stem}" if path else cfg.optimizer.name


def run_and_report(configs: Sequence[TrainConfig], out: Path) -> list[RunResult]:
    results = [train_with_progress(cfg, run_label(cfg)) for cfg in configs]
    write_run(out, results)
    table = Table(title=f"PPO results ({out})")
    for h in TABLE_HEADER:
        table.add_column(h, justify="left" if h in ("optimizer", "env") else "right")
    for row in table_rows(results):
        table.add_row(*row)
    out_console = Console()
    if not out_console.is_terminal:
        out_console.width = 120  # logs and pipes: keep the table on one line per row
    out_console.print(table)
    console.print(f"wrote {out}/results.json, curves.csv, returns.png", highlight=False)
    return results

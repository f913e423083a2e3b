"""Terminal presentation of runs: a progress bar while training, a table at the end."""

from __future__ import annotations

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


def train_with_progress(cfg: TrainConfig, label: str) -> RunResult:
    columns = (
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("return {task.fields[ret]}"), TimeElapsedColumn(), TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task(f"{label} · compiling", total=cfg.ppo.num_updates, ret="-")

        def on_chunk(done: int, total: int, metrics: dict[str, np.ndarray]) -> None:
            mean, _ = mean_stderr(metrics["episode_return"][:, -1:].ravel()[:, None].T, axis=1)
            ret = "-" if np.isnan(mean[0]) else f"{mean[0]:.2f}"
            bar.update(task, completed=done, ret=ret, description=f"{label} {cfg.env.name}")

        return run_training(cfg, label=label, progress=on_chunk)


def run_and_report(configs: Sequence[TrainConfig], out: Path) -> list[RunResult]:
    results = [train_with_progress(cfg, cfg.optimizer.name) for cfg in configs]
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
    console.print(f"wrote {out}/results.json, curves.csv, returns.png")
    return results

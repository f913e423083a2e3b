"""Running a plan's cells on Ray: each unfinished cell is one Ray task on any node, with a GPU
where the cluster has them. The driver writes each finished cell to its folder and records it as
an MLflow child run of the plan's run; a running cell hands its partial run to a progress actor
after each compiled chunk, and the driver saves it every `progress_every_s`, so a stopped plan
resumes its unfinished cells from there, and a cell whose worker or node died runs again from
it (`distributed.retry`)."""

from __future__ import annotations

import json
import os
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from metaopt.config import LEARNED_OPTIMIZERS, EvalPlanConfig
from metaopt.distributed.claims import try_claim
from metaopt.distributed.cores import cores_to_claim
from metaopt.distributed.job import connect_ray, terminate_as_interrupt
from metaopt.distributed.resources import ray_options
from metaopt.distributed.retry import LOST_WORK, RetryBudget
from metaopt.evaluation.cell_task import train_cell
from metaopt.evaluation.plan import (
    Cell,
    LogFn,
    copy_cell,
    is_finished,
    read_partial,
    reusable_cells,
    save_partial,
    select_cells,
    write_cell,
)
from metaopt.evaluation.plan_files import CLAIMS_DIR, PLAN_FILE, PROVENANCE_FILE, SUMMARY_FILE, folder_name
from metaopt.evaluation.plan_stats import summarise
from metaopt.optimizers.learned import load_meta_params
from metaopt.tracking.mlflow_run import code_version
from metaopt.tracking.plans import PlanTracker


def _gpus_per_cell(plan: EvalPlanConfig) -> float:
    import ray

    if plan.resources.gpus_per_cell is not None:
        return plan.resources.gpus_per_cell
    return 1.0 if ray.cluster_resources().get("GPU", 0) > 0 else 0.0


def run_plan(plan: EvalPlanConfig, cells: list[Cell], out: str | Path, *, log: LogFn = print,
             address: str | None = None, stop_after: int | None = None,
             only: list[str] | None = None) -> dict[str, Any]:
    """Run the plan's unfinished cells as Ray tasks, record every cell in MLflow, write the
    summary (summary.json, table, figures) and return it.

    Args:
      plan: the validated plan.
      cells: from `resolve_cells(plan)`.
      out: the plan's folder (a user's path or shared storage; never the job's working folder).
      log: where progress lines go.
      address: a Ray cluster to join; None: $RAY_ADDRESS or an embedded local Ray.
      stop_after: finish after this many newly run cells (tests: an interrupted plan).
      only: run only the unfinished cells matching these "LABEL/ENV" patterns (`select_cells`);
        the summary still covers every finished cell of the plan.

    Returns:
      The summary from `plan_stats.summarise(out)`.
    """
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    (out / PLAN_FILE).write_text(yaml.safe_dump(plan.model_dump(mode="json"), sort_keys=False))
    history = json.loads((out / PROVENANCE_FILE).read_text()) if (out / PROVENANCE_FILE).is_file() else []
    history.append({"date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "code_version": code_version(),
                    "command": _command_line(sys.argv)})
    (out / PROVENANCE_FILE).write_text(json.dumps(history, indent=2))
    tracker = PlanTracker(plan, out)
    reused = reusable_cells(cells, out, plan.reuse_from)
    for cell in cells:
        if cell.key in reused:
            copy_cell(cell, out, reused[cell.key])
    if reused:
        log(f"plan {plan.name}: {len(reused)} cells taken from other plans' results (the same runs): "
            + ", ".join(f"{key} from {folder}" for key, folder in reused.items()))
    todo = [c for c in select_cells(cells, only or []) if not is_finished(c, out)]
    if stop_after is not None:
        todo = todo[:stop_after]
    with ExitStack() as claims:  # held until the cells ran (or the plan stopped)
        todo, elsewhere = _claim_cells(todo, out, claims)
        done = [c for c in cells if is_finished(c, out)]
        selected = f" (--only: {len(todo)} of {len(cells) - len(done)} unfinished)" if only else ""
        log(f"plan {plan.name}: {len(cells)} cells, {len(done)} already finished, {len(todo)} to run{selected}")
        if elsewhere:
            log(f"plan {plan.name}: left to the other `metaopt evaluate` running them in {out}: "
                + ", ".join(c.key for c in elsewhere))
        for cell in done:
            tracker.record_cell(cell, cell.folder(out))
        try:
            if todo:
                _run_cells(plan, todo, out, tracker, log, address)
            summary = summarise(out)
        except BaseException:
            tracker.finish(failed=True)
            raise
    tracker.finish(summary=summary, artifacts=[out / SUMMARY_FILE, *sorted(out.glob("*.png")), out / "table.md"])
    return summary


def _claim_cells(todo: list[Cell], out: Path, claims: ExitStack) -> tuple[list[Cell], list[Cell]]:
    """Claim each cell for this process (a file per cell in OUT/.running), so that two
    `metaopt evaluate` on one folder (two terminals, two machines' parts of a plan) never run
    the same cell: each runs the cells the other does not hold.

    Args:
      todo: the unfinished cells to run.
      out: the plan's folder.
      claims: holds the claims; closing it releases them.

    Returns:
      (the cells this process holds and that are still unfinished, the cells another process holds).
    """
    mine, elsewhere = [], []
    for cell in todo:
        fd = try_claim(out / CLAIMS_DIR / folder_name(cell.label) / f"{cell.env}.lock")
        if fd is None:
            elsewhere.append(cell)
            continue
        claims.callback(os.close, fd)
        mine.append(cell)
    return [c for c in mine if not is_finished(c, out)], elsewhere  # one may have finished meanwhile


class CellProgress:
    """A Ray actor the running cells report to: per cell its first and latest report, so the
    driver can print progress lines with an ETA, and its latest partial run, which the driver
    saves and a retried cell resumes from."""

    def __init__(self):
        self.first: dict[str, tuple[float, int]] = {}
        self.last: dict[str, tuple[float, int, int, float]] = {}
        self.partials: dict[str, bytes] = {}
        self.unsaved: set[str] = set()
        self.notes: list[str] = []

    def note(self, line: str) -> None:
        """A line for the driver's log from a cell (Ray may not forward the workers' output).

        Args:
          line: the text.
        """
        self.notes.append(line)

    def take_notes(self) -> list[str]:
        """The lines noted since the last call.

        Returns:
          The lines, oldest first.
        """
        out, self.notes = self.notes, []
        return out

    def keep_partial(self, key: str, data: bytes, on_disk: bool = False) -> None:
        """Hold a cell's latest partial run (from the cell, or from the driver's file).

        Args:
          key: the cell's name.
          data: `PartialRun.to_bytes()`.
          on_disk: the driver read it from its file: nothing to save again.
        """
        self.partials[key] = data
        if not on_disk:
            self.unsaved.add(key)

    def partial(self, key: str) -> bytes | None:
        """The latest partial run of a cell.

        Args:
          key: the cell's name.

        Returns:
          Its bytes; None when the cell has none.
        """
        return self.partials.get(key)

    def take_unsaved(self) -> dict[str, bytes]:
        """The partial runs that arrived since the last call, for the driver to save.

        Returns:
          Cell name -> bytes.
        """
        out = {key: self.partials[key] for key in sorted(self.unsaved)}
        self.unsaved.clear()
        return out

    def report(self, key: str, done: int, total: int, ret: float) -> None:
        """Record a cell's progress (called by the cells, as a Ray actor method).

        Args:
          key: the cell's name.
          done: updates done.
          total: updates in all.
          ret: the latest mean episode return.
        """
        now = time.time()
        self.first.setdefault(key, (now, done))
        self.last[key] = (now, done, total, ret)

    def lines(self) -> list[str]:
        """One line per unfinished cell that has reported: updates done, return, ETA.

        Returns:
          The lines.
        """
        out = []
        for key, (now, done, total, ret) in self.last.items():
            if done >= total:
                continue
            t0, d0 = self.first[key]
            eta = f", eta {(now - t0) / (done - d0) * (total - done) / 60:.0f} min" if done > d0 else ""
            out.append(f"  {key}: update {done}/{total}, return {ret:.2f}{eta}")
        return out


def _command_line(argv: list[str]) -> str:
    """How this process was started, as a user would type it."""
    if not argv:
        return ""
    if argv[0].endswith(("metaopt/cli.py", "metaopt/__main__.py")):
        program = "metaopt"  # python -m metaopt.cli: the same command
    else:
        program = f"python {argv[0]}" if argv[0].endswith(".py") else Path(argv[0]).name
    return " ".join([program, *argv[1:]])


CELL_RETRIES = 2  # a cell whose worker or node dies runs again this many times, from its latest partial run


def _run_cells(plan: EvalPlanConfig, todo: list[Cell], out: Path, tracker, log: LogFn, address: str | None) -> None:
    import ray

    connect_ray(address)
    budget = RetryBudget(CELL_RETRIES)
    # Ray's own retries would rerun a task with its first arguments, so the driver resubmits a
    # cell whose worker or node died itself, from the newest partial run the cell handed over.
    gpus = _gpus_per_cell(plan)
    task = ray.remote(train_cell).options(**ray_options(plan.resources.cpus_per_cell, gpus), max_retries=0)
    pinned = cores_to_claim(plan.resources.cpus_per_cell, gpus, plan.resources.pin_cpus)
    progress = ray.remote(CellProgress).options(num_cpus=0).remote()
    metas: dict[str, dict | None] = {}
    pending: dict = {}  # ref -> (cell, submitted at)

    def submit(cell: Cell, resume: bytes | None) -> None:
        ref = task.remote(pinned, cell.config.model_dump(mode="json"), cell.label, metas[cell.key], cell.key, progress,
                          cell.config_hash, plan.progress_every_s, resume)
        pending[ref] = (cell, time.perf_counter())

    for cell in todo:
        metas[cell.key] = None
        if cell.config.optimizer.name in LEARNED_OPTIMIZERS:
            metas[cell.key] = load_meta_params(cell.config.optimizer.meta_params, cell.config.optimizer.name)[1]
        partial, note = read_partial(cell, out)
        if note:
            log(note)
        if partial is not None:
            ray.get(progress.keep_partial.remote(cell.key, partial, True))
        submit(cell, partial)
    running = {cell.key: cell for cell, _ in pending.values()}

    def save_partials() -> None:  # only of cells still running: a finished cell's folder is final
        for key, data in ray.get(progress.take_unsaved.remote()).items():
            if key in running:
                save_partial(running[key], out, data)
        for line in ray.get(progress.take_notes.remote()):
            log(line)

    # Ray's driver aborts on SIGTERM (`kill`, `ray job stop`); it stops the plan as Ctrl-C does instead, so
    # the partial runs below are saved.
    with terminate_as_interrupt():
        finished = 0
        try:
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=plan.progress_every_s)
                if not ready:  # a line for each running cell and their partial runs saved, every progress_every_s
                    save_partials()
                    for line in ray.get(progress.lines.remote()):
                        log(line)
                    continue
                ref = ready[0]
                cell, started = pending.pop(ref)
                try:
                    files = ray.get(ref)
                except LOST_WORK as exc:
                    retry = budget.spend(cell.key, exc)
                    save_partials()
                    newest = ray.get(progress.partial.remote(cell.key))
                    log(f"{cell.key}: {type(exc).__name__}; running it again (retry {retry} of {CELL_RETRIES}) "
                        + ("from its latest partial run" if newest is not None else "from the start"))
                    submit(cell, newest)
                    continue
                del running[cell.key]
                save_partials()  # and the cell's notes
                write_cell(cell, out, files)
                tracker.record_cell(cell, cell.folder(out))
                finished += 1
                finals = json.loads(files["results.json"])["final_return"]
                log(f"cell {finished}/{len(todo)} {cell.key}: final return {np.nanmean(finals):.2f} "
                    f"over {len(finals)} seeds ({time.perf_counter() - started:.0f} s since submitted)")
        finally:  # stopped or failed: keep the newest partial runs the cells handed over
            try:
                save_partials()
            except Exception:  # noqa: BLE001 - Ray already gone: the files of the last minute stand
                pass

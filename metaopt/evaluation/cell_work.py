"""The work of one evaluation cell, as a Ray task runs it: train the cell's agents and return
its files. Imported by the task (`metaopt.evaluation.cell_task`) only once the task holds its
cores: importing this starts JAX's CPU backend, which sizes XLA's thread pool to them."""

from __future__ import annotations

import json
import os
import platform
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jax

from metaopt.config import TrainConfig
from metaopt.distributed.cores import CAN_PIN
from metaopt.evaluation.plan_files import DEVICE_FILE
from metaopt.evaluation.report import latest_return, write_run
from metaopt.optimizers import build_optimizer
from metaopt.training.runs import PartialRunMismatch, run_training


def run_cell(config: dict[str, Any], label: str, meta_params: dict | None, key: str = "",
             progress=None, config_hash: str = "", partial_every_s: float = 0.0,
             resume: bytes | None = None) -> dict[str, bytes]:
    """The work of one cell, on whichever node Ray picks: train the agents, return the files
    (results.json, curves.csv, returns.png) as bytes; it writes nothing where it runs.

    Args:
      config: a TrainConfig as plain data.
      label: the optimizer's label.
      meta_params: the learned optimizer's meta-parameters (None for Adam and RMSProp); sent
        with the task, so no node needs the driver's files.
      key: the cell's name in progress reports.
      progress: a `CellProgress` actor to report each compiled chunk to and to hand the cell's
        partial runs to (None: silent).
      config_hash: the cell's `Cell.config_hash`, stored with its partial runs.
      partial_every_s: hand over a partial run at most this often (the driver saves them at
        this period anyway; serialising the state costs a device-to-host copy).
      resume: a partial run of this cell to go on from (`PartialRun.to_bytes()`; None: from the
        start). An argument, not fetched here: a task blocked in `ray.get` gives its CPUs back to
        Ray, which then starts another cell beside it on the same cores.

    Returns:
      File name -> contents: results.json, curves.csv, returns.png and device.json (where it ran:
      platform, node, the cores it kept to, compile and run seconds).
    """
    if meta_params is not None:  # the driver's file path means nothing on another node
        config = {**config, "optimizer": {**config["optimizer"], "meta_params": None}}
    cfg = TrainConfig.model_validate(config)
    optimizer = None if meta_params is None else build_optimizer(cfg.optimizer, cfg.agent, meta_params)

    def report(done: int, total: int, metrics: dict) -> None:
        progress.report.remote(key, done, total, latest_return(metrics["episode_return"]))

    handed = [time.perf_counter()]

    def keep(partial) -> None:
        if time.perf_counter() - handed[0] >= partial_every_s:
            progress.keep_partial.remote(key, partial.to_bytes({"config_hash": config_hash}))
            handed[0] = time.perf_counter()

    def train(resume: bytes | None):
        return run_training(cfg, optimizer=optimizer, label=label, progress=None if progress is None else report,
                            resume=resume, checkpoint=None if progress is None else keep)

    started = _now()
    try:
        result = train(resume)
    except PartialRunMismatch as exc:  # same config, other state layout (another code version)
        progress.note.remote(f"{key}: the saved partial run does not fit this code ({exc}); starting the cell over")
        result = train(None)
    device = jax.devices()[0]
    where = {"platform": device.platform, "device_kind": device.device_kind, "node": platform.node(),
             "cpus": os.cpu_count(), "cores": sorted(os.sched_getaffinity(0)) if CAN_PIN else None,
             "compile_seconds": result.compile_seconds, "run_seconds": result.run_seconds,
             "resumed_at_update": result.resumed_at, "started": started, "finished": _now()}
    with tempfile.TemporaryDirectory() as tmp:
        write_run(Path(tmp), [result], comparison=False)
        files = {p.name: p.read_bytes() for p in Path(tmp).iterdir() if p.is_file()}
    files[DEVICE_FILE] = json.dumps(where, indent=2).encode()
    return files


def _now() -> str:
    """The time now, UTC, ISO 8601 to the millisecond."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")

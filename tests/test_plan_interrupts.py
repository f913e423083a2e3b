"""Evaluation plans interrupted as users interrupt them: stopped (Ctrl-C), terminated (SIGTERM),
a worker killed, cells that need every CPU; each waits on an event the plan emits (its first saved
partial run), never on the clock. Apart from tests/test_plan.py so that the parallel suite runs the
two files on different workers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

from metaopt.distributed.claims import try_claim
from tests.helpers import PROJECT
from tests.test_plan import TINY_PLAN, _evaluate


@pytest.mark.slow
@pytest.mark.ray
def test_stopped_plan_resumes_its_running_cell_from_the_partial_run(tmp_path):
    """The driver saves a running cell's partial run; stopped (Ctrl-C) and started again, the
    plan goes on from that update, and the cell's returns are those of an uninterrupted run.

    Synchronised on the driver's own event, not the clock: the interrupt is raised by the
    driver's log call right after it saved the cell's first partial run, while the cell is
    still running in its view (every chunk hands one over: progress_every_s is tiny)."""
    import ray

    from metaopt.evaluation.plan import load_plan, resolve_cells
    from metaopt.evaluation.plan_run import run_plan
    from metaopt.evaluation.plan_stats import partial_runs
    from metaopt.serialization import flat_from_bytes, flat_to_bytes, metadata_from_bytes, save_bytes
    from metaopt.training.runs import run_training

    longer = {"total_timesteps": 128 * 600, "progress_every_s": 0.01}  # 600 tiny updates, 25 chunks
    sets = [f"{k}={v}" for k, v in longer.items()]
    out, uri = tmp_path / "out", f"sqlite:///{tmp_path}/mlruns.db"
    folder, only = out / "cells" / "adam" / "breakout", ["adam/breakout"]
    plan = load_plan(TINY_PLAN, {**longer, "tracking": {"uri": uri}})

    claim = out / ".running" / "adam" / "breakout.lock"
    held_while_running = []

    def log(line: str) -> None:  # Ctrl-C, delivered at the driver's first line after a saved partial run
        if (folder / "partial.safetensors").exists():
            fd = try_claim(claim)  # another descriptor: refused while the driver holds the cell
            held_while_running.append(fd is None)
            if fd is not None:
                os.close(fd)
            raise KeyboardInterrupt

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        with pytest.raises(KeyboardInterrupt):
            run_plan(plan, resolve_cells(plan), out, log=log, only=only)
    finally:
        ray.shutdown()
    assert not (folder / "cell.json").exists()
    assert held_while_running == [True]
    fd = try_claim(claim)  # released once the plan stopped
    assert fd is not None
    os.close(fd)
    stopped_at = int(metadata_from_bytes((folder / "partial.safetensors").read_bytes())["updates_done"])
    assert 0 < stopped_at < 600
    assert partial_runs(out, ["adam", "rmsprop"], ["breakout"]) == {"adam / breakout": f"update {stopped_at} of 600"}

    # Beside it, a partial run with the right config hash but another run's state (as after a
    # code change of the state's layout): that cell starts over instead of failing.
    cells = {c.key: c for c in resolve_cells(load_plan(TINY_PLAN, longer))}
    flat, meta = flat_from_bytes((folder / "partial.safetensors").read_bytes())
    misfit = out / "cells" / "adam" / "asterix" / "partial.safetensors"
    save_bytes(misfit, flat_to_bytes(flat, {**meta, "config_hash": cells["adam / asterix"].config_hash}))

    second = _evaluate(out, uri, *sets, only=[*only, "adam/asterix"])
    assert f"adam / breakout: resuming at update {stopped_at} (partial.safetensors)" in second
    assert "adam / asterix: the saved partial run does not fit this code" in second
    assert (folder / "cell.json").is_file() and not (folder / "partial.safetensors").exists()
    assert json.loads((folder / "device.json").read_text())["resumed_at_update"] == stopped_at
    assert json.loads((misfit.parent / "device.json").read_text())["resumed_at_update"] == 0 and not misfit.exists()
    uninterrupted = run_training(cells["adam / breakout"].config).final_returns()
    np.testing.assert_array_equal(json.loads((folder / "results.json").read_text())["final_return"], uninterrupted)


def test_a_cell_another_evaluate_is_running_is_left_to_it(tmp_path):
    """Two `metaopt evaluate` on one folder: a cell the other one holds (its claim in
    OUT/.running) is neither run nor touched here; the claim ends with its holder."""
    out, uri = tmp_path / "out", f"sqlite:///{tmp_path}/mlruns.db"
    claim = out / ".running" / "adam" / "breakout.lock"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import pathlib, sys\nfrom metaopt.distributed.claims import try_claim\n"
         f"fd = try_claim(pathlib.Path({str(claim)!r}))\nprint('held' if fd is not None else 'refused', flush=True)\n"
         "sys.stdin.read()"], cwd=PROJECT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"  # the event: the other process holds the cell
        log = _evaluate(out, uri, only=["adam/breakout"])
    finally:
        holder.communicate(input="", timeout=60)
    assert "0 to run" in log and f"left to the other `metaopt evaluate` running them in {out}: adam / breakout" in log
    assert not (out / "cells" / "adam" / "breakout").exists()
    fd = try_claim(claim)  # its holder ended: free
    assert fd is not None
    os.close(fd)


@pytest.mark.slow
@pytest.mark.ray
def test_terminated_plan_saves_its_running_cell_like_ctrl_c(tmp_path):
    """`kill` (SIGTERM, as `ray job stop` sends) stops a plan as Ctrl-C does, also one started in
    the background by a script, where SIGINT is ignored: the partial run is kept, exit 130."""
    # 2400 tiny updates in chunks of 96, a partial run handed over after each: the first partial run
    # appears with 24 chunks still to go, and the test never lets the cell finish.
    sets = ["total_timesteps=307200", "progress_every_s=0.01"]
    out, folder = tmp_path / "out", tmp_path / "out" / "cells" / "adam" / "breakout"
    cmd = [str(Path(sys.executable).parent / "metaopt"), "evaluate", "--plan", TINY_PLAN, "--out", str(out),
           "--set", f"tracking.uri=sqlite:///{tmp_path}/mlruns.db", *[a for s in sets for a in ("--set", s)],
           "--only", "adam/breakout"]
    proc = subprocess.Popen(cmd, cwd=PROJECT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))  # as `cmd &` in a script
    deadline = time.time() + 600
    while not (folder / "partial.safetensors").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)  # ignored
    time.sleep(1)
    assert proc.poll() is None
    proc.terminate()
    log = proc.communicate(timeout=300)[0]
    assert proc.returncode == 130, log[-3000:]
    assert "interrupted: finished cells and the running cells' partial runs are in" in log
    assert (folder / "partial.safetensors").is_file() and not (folder / "cell.json").exists()


@pytest.mark.slow
@pytest.mark.ray
def test_cells_that_ask_for_every_cpu_run_one_at_a_time(tmp_path, monkeypatch):
    """A cell holds its CPUs for its whole run: it never blocks in `ray.get`, during which Ray
    would lend them to the next cell and two cells would share the cores. Each keeps to the two
    cores it claimed (its own claims folder: other tests' cells hold the suite's)."""
    import ray

    from metaopt.distributed.cores import CAN_PIN, LOCK_DIR_VARIABLE, NODE_CORES
    from metaopt.evaluation.plan import load_plan, resolve_cells
    from metaopt.evaluation.plan_run import run_plan

    plan = load_plan(TINY_PLAN, {"optimizers": ["adam", "rmsprop"], "envs": ["breakout"],
                                 "resources": {"cpus_per_cell": 2}, "tracking": {"uri": f"sqlite:///{tmp_path}/mlruns.db"}})
    monkeypatch.setenv(LOCK_DIR_VARIABLE, str(tmp_path / "claims"))  # before Ray starts: its workers inherit it
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        run_plan(plan, resolve_cells(plan), tmp_path / "out", log=lambda line: None)
    finally:
        ray.shutdown()
    devices = [json.loads(f.read_text()) for f in (tmp_path / "out" / "cells").glob("*/*/device.json")]
    if CAN_PIN and len(NODE_CORES) >= 2:
        assert [d["cores"] for d in devices] == [list(NODE_CORES[:2])] * 2
    spans = sorted((datetime.fromisoformat(d["started"]), datetime.fromisoformat(d["finished"])) for d in devices)
    assert len(spans) == 2 and spans[0][0] < spans[0][1]
    assert spans[0][1] <= spans[1][0], f"the cells ran at the same time: {spans}"


@pytest.mark.slow
@pytest.mark.ray
def test_a_cell_whose_worker_dies_runs_again_from_its_latest_partial_run(tmp_path):
    """The driver runs a cell again when its Ray worker is killed, from the partial run the cell
    handed over last, and gets the returns of an uninterrupted run. The worker is killed by the
    driver's first log line after a saved partial run (an event, not a race with the clock)."""
    import psutil
    import ray

    from metaopt.evaluation.plan import load_plan, resolve_cells
    from metaopt.evaluation.plan_run import run_plan
    from metaopt.training.runs import run_training

    longer = {"total_timesteps": 128 * 600, "progress_every_s": 0.01}  # 600 tiny updates, 25 chunks
    out, uri = tmp_path / "out", f"sqlite:///{tmp_path}/mlruns.db"
    folder = out / "cells" / "adam" / "breakout"
    plan = load_plan(TINY_PLAN, {**longer, "tracking": {"uri": uri}})
    lines, killed = [], []

    def log(line: str) -> None:
        lines.append(line)
        if not killed and (folder / "partial.safetensors").exists():
            workers = [p for p in psutil.Process().children(recursive=True)
                       if "ray::train_cell" in " ".join(p.cmdline())]
            assert len(workers) == 1, "no running cell to kill"
            workers[0].kill()
            killed.append(workers[0].pid)

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        run_plan(plan, resolve_cells(plan), out, log=log, only=["adam/breakout"])
    finally:
        ray.shutdown()
    log_text = "\n".join(lines)
    assert killed, log_text
    assert "adam / breakout: WorkerCrashedError; running it again (retry 1 of 2) from its latest partial run" in log_text
    resumed_at = json.loads((folder / "device.json").read_text())["resumed_at_update"]
    assert 0 < resumed_at < 600 and not (folder / "partial.safetensors").exists()
    cell = {c.key: c for c in resolve_cells(load_plan(TINY_PLAN, longer))}["adam / breakout"]
    np.testing.assert_array_equal(json.loads((folder / "results.json").read_text())["final_return"],
                                  run_training(cell.config).final_returns())

"""Cores for training processes: claims that exclude each other and end with their holder, and
worker modules that import without starting JAX (so a worker pins itself before XLA sizes its
thread pool)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from metaopt.distributed.cores import CAN_PIN, LOCK_DIR_VARIABLE, NODE_CORES, claimed_cores
from tests.helpers import PROJECT

needs_pinning = pytest.mark.skipif(not CAN_PIN, reason="no sched_setaffinity on this platform")


@needs_pinning
def test_claims_exclude_each_other_and_end_with_their_block(tmp_path):
    first = NODE_CORES[0]
    with claimed_cores(1, tmp_path) as held:
        assert held == [first]
        with claimed_cores(1, tmp_path) as other:  # another descriptor: excluded like another process
            assert other == ([NODE_CORES[1]] if len(NODE_CORES) > 1 else None)
        with claimed_cores(len(NODE_CORES), tmp_path) as everything:
            assert everything is None  # one is held: too few free, so none is taken
    with claimed_cores(len(NODE_CORES), tmp_path) as everything:
        assert everything == list(NODE_CORES)  # every claim above ended with its block
    with claimed_cores(0, tmp_path) as nothing, claimed_cores(len(NODE_CORES) + 1, tmp_path) as too_many:
        assert nothing is None and too_many is None


@needs_pinning
def test_a_claim_ends_with_the_process_that_held_it(tmp_path):
    """A worker killed mid-cell never leaves its core claimed: the kernel drops its lock."""
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, pathlib\nfrom metaopt.distributed.cores import claimed_cores\n"
         f"with claimed_cores(1, pathlib.Path({str(tmp_path)!r})) as held:\n"
         "    print(held, flush=True)\n    sys.stdin.read()"],
        cwd=PROJECT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == f"[{NODE_CORES[0]}]"  # it holds the first core now
    with claimed_cores(1, tmp_path) as held:
        assert held != [NODE_CORES[0]]
    holder.kill()
    holder.wait()
    with claimed_cores(1, tmp_path) as held:
        assert held == [NODE_CORES[0]]


def test_worker_modules_import_without_starting_jax():
    """Ray imports a task's or actor's module before it runs; if that import started JAX's CPU
    backend, XLA's thread pool would be sized to every core before the worker could pin itself."""
    code = ("import metaopt.evaluation.cell_task, metaopt.distributed.meta_worker, metaopt.tuning.trial_tasks\n"
            "from jax._src import xla_bridge\n"
            "assert not xla_bridge.backends_are_initialized()\n"
            "import metaopt.meta.run\n"  # the check can fail: the engines' import does start it
            "assert xla_bridge.backends_are_initialized()\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=PROJECT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "JAX_PLATFORMS": "cpu"})
    assert done.returncode == 0, done.stderr[-2000:]


@needs_pinning
def test_a_process_keeps_to_its_claim_and_an_unpinned_task_after_it_gets_every_core(tmp_path):
    """A Ray worker runs one task after another: a pinned cell, then one that is not pinned (or
    finds no free core), which must not stay on the first one's core. In a child process: pinning
    is process-wide."""
    code = ("import os, threading\n"
            "from metaopt.distributed.cores import NODE_CORES, kept_to_own_cores\n"
            "threading.Thread(target=threading.Event().wait, daemon=True).start()  # a thread from before\n"
            "def kept(): return {frozenset(os.sched_getaffinity(int(t))) for t in os.listdir('/proc/self/task')}\n"
            "with kept_to_own_cores(1) as held:\n"
            "    assert held == [NODE_CORES[0]], held\n"
            "    assert kept() == {frozenset(held)}\n"
            "with kept_to_own_cores(0) as held:\n"
            "    assert held is None\n"
            "    assert kept() == {frozenset(NODE_CORES)}\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=PROJECT, capture_output=True, text=True, timeout=120,
                          env={**os.environ, LOCK_DIR_VARIABLE: str(tmp_path)})
    assert done.returncode == 0, done.stderr[-2000:]


def test_each_test_process_claims_cores_in_a_folder_of_its_own():
    """pytest-xdist's workers inherit the controller's environment: a folder set only by default
    would be the controller's, shared by every worker, and one worker's cells would hold the
    cores another worker's pinning test asks for (tests/conftest.py)."""
    assert f"metaopt-cores-of-{os.getpid()}-" in os.environ[LOCK_DIR_VARIABLE]

"""CPU cores for the processes that train: each worker on a node keeps to cores of its own.

XLA sizes its CPU thread pool to the cores a process may run on when JAX's CPU backend
starts (on the first array, which importing evosax already makes). Two workers on a node of
2 cores, each free to use both, run 4 busy threads on 2 cores that preempt each other
(benchmarks/README.md, "Each worker on its own cores": the ES ran about 20% faster once each
worker kept to its core). So a worker pins itself before it imports the code that starts JAX:
its pool then has a thread per core it holds.

Linux only (`os.sched_setaffinity`); elsewhere nothing is pinned and everything still runs.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from metaopt.distributed.claims import try_claim

CAN_PIN = hasattr(os, "sched_setaffinity")
# The cores this process could use when it first imported this module, before any pinning:
# a worker process that runs one cell after another claims among these each time.
NODE_CORES: tuple[int, ...] = tuple(sorted(os.sched_getaffinity(0))) if CAN_PIN else ()
# Where a node's processes record their claims: one folder for every metaopt process of a
# user on a node, so two plans (or a plan and a test) on one machine never pin cells to the
# same core. Per user: another user's claim files are not ours to open.
LOCK_DIR_VARIABLE = "METAOPT_CORE_CLAIMS"
DEFAULT_LOCK_DIR = Path(tempfile.gettempdir()) / f"metaopt-cores-{os.getuid() if hasattr(os, 'getuid') else 0}"


def cores_to_claim(cpus: float, gpus: float, pin: bool) -> int:
    """How many cores a Ray task or trial claims and keeps to.

    Args:
      cpus: its Ray CPUs.
      gpus: its Ray GPUs (a GPU task's host threads are left to the OS).
      pin: the config's `pin_cpus`.

    Returns:
      `cpus` where pinning is on, it has no GPU and `cpus` is whole; else 0 (not pinned).
    """
    return int(cpus) if pin and gpus == 0 and cpus == int(cpus) else 0


def pin_process(cores: list[int]) -> None:
    """Keep every thread of this process (and the threads it starts later) on `cores`.

    Args:
      cores: core ids of this node.
    """
    for tid in os.listdir("/proc/self/task"):
        try:
            os.sched_setaffinity(int(tid), cores)
        except ProcessLookupError:  # the thread ended meanwhile
            pass


@contextmanager
def claimed_cores(count: int, lock_dir: Path | None = None) -> Iterator[list[int] | None]:
    """Hold `count` cores of this node that no other process holds, for the block.

    A claim is an exclusive `flock` on one file per core in `lock_dir`; the kernel drops it
    when the process ends, however it ends, so a killed worker never leaves a core claimed.

    Args:
      count: how many cores (a task's whole CPUs); 0 claims none.
      lock_dir: the node's claim files; None: $METAOPT_CORE_CLAIMS, else DEFAULT_LOCK_DIR
        (processes see each other's claims only in the same folder).

    Yields:
      The claimed core ids, or None where pinning is off, not possible here, or fewer than
      `count` cores are free (then the caller runs unpinned, as before this module existed).
    """
    if not CAN_PIN or count < 1 or count > len(NODE_CORES):
        yield None
        return
    lock_dir = lock_dir or Path(os.environ.get(LOCK_DIR_VARIABLE, DEFAULT_LOCK_DIR))
    held: dict[int, int] = {}
    try:
        for core in NODE_CORES:
            if len(held) == count:
                break
            fd = try_claim(lock_dir / f"{core}.lock")
            if fd is not None:
                held[core] = fd
        yield sorted(held) if len(held) == count else None
    finally:
        for fd in held.values():
            os.close(fd)  # closing the descriptor drops its lock


@contextmanager
def kept_to_own_cores(count: int) -> Iterator[list[int] | None]:
    """Claim `count` cores (`claimed_cores`) and keep this process to them for the block; where
    none are claimed, to all of the node's cores, so a Ray worker that ran a pinned task before
    does not stay on that task's cores.

    Args:
      count: how many cores; 0: none (the process may use them all).

    Yields:
      The claimed cores, or None.
    """
    with claimed_cores(count) as held:
        if CAN_PIN:
            pin_process(held if held is not None else list(NODE_CORES))
        yield held

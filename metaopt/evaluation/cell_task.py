"""The Ray task of one evaluation cell. Light on purpose: a worker process imports this module
before it runs the task, and the cell's code starts JAX's CPU backend as it is imported, which
sizes XLA's thread pool to the cores the process may use at that moment. So the task first
claims and pins its cores (`metaopt.distributed.cores`), then imports the work."""

from __future__ import annotations

from typing import Any

from metaopt.distributed.cores import kept_to_own_cores


def train_cell(cores: int, config: dict[str, Any], label: str, meta_params: dict | None, key: str = "",
               progress=None, config_hash: str = "", partial_every_s: float = 0.0,
               resume: bytes | None = None) -> dict[str, bytes]:
    """Run one cell (`metaopt.evaluation.cell_work.run_cell`) on `cores` cores of its own.

    Args:
      cores: how many of the node's cores to claim and keep to (the cell's whole CPUs); 0, or
        too few free, runs it unpinned.
      config, label, meta_params, key, progress, config_hash, partial_every_s, resume: as
        `run_cell`.

    Returns:
      As `run_cell`: the cell's files by name.
    """
    with kept_to_own_cores(cores):
        from metaopt.evaluation.cell_work import run_cell  # after pinning: it starts JAX (above)

        return run_cell(config, label, meta_params, key, progress, config_hash, partial_every_s, resume)

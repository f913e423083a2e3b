"""The meta-training actor: one per worker slot, holding one engine and running its pieces.

Its own light module: a Ray worker imports the actor's module before the actor starts, and
the engines' code starts JAX's CPU backend as it is imported (evosax makes arrays at import),
which sizes XLA's thread pool to the cores the process may use at that moment. So the actor
pins itself first (`metaopt.distributed.cores`), then imports the engines."""

from __future__ import annotations

import os
import time
from contextlib import ExitStack
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import ray

from metaopt.config import MetaTrainConfig
from metaopt.distributed.cores import kept_to_own_cores


@ray.remote
class MetaWorker:
    """Holds one engine and runs its pieces: ES shards or pipeline groups."""

    def __init__(self, config_json: str, cores: int = 0):
        """Args:
          config_json: the meta-training config.
          cores: how many of the node's cores to claim for the actor's life and keep every
            thread to, before JAX's CPU backend starts (so its thread pool fits them); 0, or
            too few free on the node, leaves the actor unpinned. The kernel drops the claim
            when the actor's process ends, so a restarted or replacement actor claims afresh.
        """
        self._claim = ExitStack()  # held while the actor lives
        self._cores = self._claim.enter_context(kept_to_own_cores(cores))
        from metaopt.meta.run import make_engine  # after pinning: it starts JAX (above)

        self.cfg = MetaTrainConfig.model_validate_json(config_json)
        self.engine = make_engine(self.cfg)

    def pid(self) -> int:
        """The actor's process id (also a readiness probe).

        Returns:
          The pid.
        """
        return os.getpid()

    def cores(self) -> list[int] | None:
        """The cores this actor claimed and keeps to, or None (unpinned).

        Returns:
          Core ids of its node, or None.
        """
        return self._cores

    def release(self) -> None:
        """Drop the core claims now: the pool calls this just before it kills the actor, since the
        kernel drops them only once the process has exited, which can be after the next pool's
        actors on the node have looked for free cores."""
        self._claim.close()
        self._cores = None

    def es_shard(self, members: np.ndarray, keys: Any) -> tuple[np.ndarray, float]:
        """Raw returns of one ES population shard (`ESEngine.evaluate_shard`).

        Args:
          members: (S, D) flat meta-parameters of the shard's members.
          keys: (R,) the generation's rollout keys.

        Returns:
          ((S, R, tasks) raw returns, compute seconds).
        """
        t0 = time.perf_counter()
        raw = np.asarray(self.engine.evaluate_shard(jnp.asarray(members), keys))
        return raw, time.perf_counter() - t0

    def pipeline_group(self, task: int, meta_params: Any, agents: Any) -> tuple[Any, float]:
        """Meta-gradient of one pipeline agent group (`PipelineEngine.group_gradient`).

        Args:
          task: the task index.
          meta_params: the current meta-parameters.
          agents: the group's agent states (leading axis: agents).

        Returns:
          ((gradient sum, meta-loss sum, new agent states, mean metrics) as host arrays, compute
          seconds).
        """
        t0 = time.perf_counter()
        out = jax.device_get(self.engine.group_gradient(task, meta_params, agents))
        return out, time.perf_counter() - t0

"""Meta-training spread over Ray actors, with the single-process engines' numbers.

The driver keeps the whole state and runs the cheap steps (ES ask/tell, pipeline resets and
the meta-optimizer step); actors run the expensive pure functions on fixed-size pieces
(ES population shards, pipeline agent groups) and return arrays. A piece is a pure function
of what the driver sends, so a piece lost to a dead or hung actor is simply run again, on
the restarted actor or another one, and the generation ends exactly as it would have.

Actors get the config as JSON (no pickled code) and compile their own functions; their
resources come from `distributed` in the config (one GPU per actor on GPU nodes).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import ray

from metaopt.config import DistributedConfig, MetaTrainConfig
from metaopt.distributed.cores import cores_to_claim
from metaopt.distributed.meta_worker import MetaWorker
from metaopt.distributed.resources import ray_options
from metaopt.distributed.retry import LOST_WORK, RetriesExhausted, RetryBudget
from metaopt.meta.run import make_engine

# How long `WorkerPool.shutdown` waits for its actors to drop their core claims before it kills
# them: an idle actor answers in milliseconds; a busy or hung one is not waited for longer.
RELEASE_WAIT_S = 10.0


class ShardFailed(RetriesExhausted):
    """A piece was lost on every attempt, or no live worker is left to run it."""


@dataclass
class WorkerPool:
    """Actors running pieces: a piece whose actor dies or times out runs again (it is
    idempotent), on a replacement actor, under the project's retry policy (`distributed.retry`)."""

    cfg: MetaTrainConfig
    dist: DistributedConfig
    actors: list = field(default_factory=list)
    restarts: int = 0
    warm: set = field(default_factory=set)  # actors that have finished a piece (compiled)

    def __post_init__(self):
        if not self.actors:  # given actors: a pool sharing already compiled workers
            self.actors = [self._new_actor(i) for i in range(self.dist.workers)]
        else:
            self.warm = set(range(len(self.actors)))

    def _cores_to_claim(self) -> int:
        """How many cores each actor claims on its node and keeps to (`distributed.pin_cpus`):
        claims, not slots, so workers on a node never share a core, with each other or with the
        plan cells and trials of other jobs there, whatever the nodes' sizes. A worker of less
        than a CPU claims one core (the next such worker finds it held and runs unpinned)."""
        whole = max(1, int(self.dist.cpus_per_worker))
        return cores_to_claim(whole, self.dist.gpus_per_worker, self.dist.pin_cpus)

    def _actor_options(self, index: int) -> dict:
        return {**ray_options(self.dist.cpus_per_worker, self.dist.gpus_per_worker), "max_restarts": -1,
                "max_task_retries": 0}

    def _new_actor(self, index: int):
        return MetaWorker.options(**self._actor_options(index)).remote(json.dumps(self.cfg.dump()), self._cores_to_claim())

    def _replace(self, index: int) -> bool:
        """Kill a hung or dead actor and start a fresh one in its slot, which (re)compiles
        before its next piece. If the cluster cannot place it within
        `distributed.replacement_timeout_s` (a lost node, no spare GPU), the slot stays empty
        and its pieces go to the live actors: the run goes on, slower. Returns whether placed."""
        ray.kill(self.actors[index], no_restart=True)
        actor = self._new_actor(index)
        self.warm.discard(index)
        self.restarts += 1
        ready, _ = ray.wait([actor.pid.remote()], timeout=self.dist.replacement_timeout_s)
        if ready:
            self.actors[index] = actor
            return True
        ray.kill(actor, no_restart=True)
        self.actors[index] = None
        return False

    def live(self) -> list[int]:
        """Slots with an actor (a slot is empty after a replacement could not be placed).

        Returns:
          The indices of the non-empty slots.
        """
        return [k for k, actor in enumerate(self.actors) if actor is not None]

    def _timeout(self, actor: int) -> float:
        """An actor's first piece includes compiling; later ones are compute only."""
        return self.dist.piece_timeout_s if actor in self.warm else self.dist.warmup_timeout_s

    def run(self, submit: Callable[[Any, Any], Any], pieces: list) -> tuple[list, list[float]]:
        """Run `submit(actor, piece)` for every piece, pieces dealt round-robin; returns the
        results in piece order and the compute seconds per actor.

        Args:
          submit: (actor handle, piece) -> an ObjectRef of (value, compute seconds).
          pieces: the pieces, each a pure function's input (safe to run again).

        Returns:
          (values in piece order, compute seconds per actor slot); raises ShardFailed after max_retries.
        """
        results: list = [None] * len(pieces)
        busy = [0.0] * len(self.actors)
        live = self.live()
        pending = {i: live[i % len(live)] for i in range(len(pieces))}
        budget = RetryBudget(self.dist.max_retries, ShardFailed)
        while pending:
            start = time.monotonic()
            futures = {submit(self.actors[a], pieces[i]): (i, a, start + self._timeout(a)) for i, a in pending.items()}
            pending = {}
            for ref, (i, a, deadline) in futures.items():
                try:
                    value, seconds = ray.get(ref, timeout=max(0.0, deadline - time.monotonic()))
                    results[i] = value
                    busy[a] += seconds
                    self.warm.add(a)
                except LOST_WORK as exc:
                    budget.spend(f"piece {i}", exc)
                    if self.actors[a] is not None and a not in pending.values():
                        self._replace(a)
                    if self.actors[a] is None:  # no replacement could be placed: the least busy live actor
                        live = self.live()
                        if not live:
                            raise ShardFailed(f"piece {i}: no live worker is left and none can be placed") from None
                        a = min(live, key=lambda k: sum(1 for b in pending.values() if b == k))
                    pending[i] = a
        return results, busy

    def pids(self) -> list[int]:
        """The process ids of the live actors.

        Returns:
          The pids, in slot order.
        """
        return ray.get([a.pid.remote() for a in self.actors if a is not None])

    def cores(self) -> list[list[int] | None]:
        """The cores each live actor keeps to (None: unpinned).

        Returns:
          Core ids per actor, in slot order.
        """
        return ray.get([a.cores.remote() for a in self.actors if a is not None])

    def shutdown(self) -> None:
        """Let every live actor drop its core claims (`MetaWorker.release`), then kill it; the
        pool is empty afterwards. An idle actor answers at once; a dead one's call fails at once;
        a busy or hung one is killed after RELEASE_WAIT_S, its claims dropped as its process ends."""
        live = [a for a in self.actors if a is not None]
        if live:
            ray.wait([a.release.remote() for a in live], num_returns=len(live), timeout=RELEASE_WAIT_S)
        for a in live:
            ray.kill(a, no_restart=True)
        self.actors = []


class _RayEngine:
    """The single-process engine's interface; pieces of each step go to the pool."""

    def __init__(self, local, pool: WorkerPool):
        self.local, self.pool = local, pool
        self.task_names = local.task_names
        self.env_steps_per_iteration = local.env_steps_per_iteration

    def init(self, key):
        return self.local.init(key)

    def meta_params(self, state):
        return self.local.meta_params(state)


class RayESEngine(_RayEngine):
    """ES with population shards evaluated by actors; ask/tell on the driver."""

    def step(self, state):
        """One ES generation: ask on the driver, shards on the actors, tell on the driver.

        Args:
          state: the ESState.

        Returns:
          (next state, the generation's metrics plus Ray timings: wall, slowest worker, overhead share,
          restarts).
        """
        t0 = time.perf_counter()
        population, keys, state = self.local.ask(state)
        shards = [np.asarray(s) for s in self.local.shards(population)]
        raws, busy = self.pool.run(lambda actor, shard: actor.es_shard.remote(shard, keys), shards)
        state, metrics = self.local.tell(state, population, jnp.concatenate([jnp.asarray(r) for r in raws]))
        jax.block_until_ready(state)
        return state, {**metrics, **_timing(time.perf_counter() - t0, busy, self.pool.restarts)}


class RayPipelineEngine(_RayEngine):
    """Pipeline training with agent groups run by actors; resets and the meta-optimizer step
    on the driver, which keeps every agent's state (so a lost group is simply re-run)."""

    def step(self, state):
        """One pipeline meta-iteration: resets on the driver, agent groups on the actors, the
        meta-update on the driver.

        Args:
          state: the PipelineState.

        Returns:
          (next state, the iteration's metrics plus Ray timings: wall, slowest worker, overhead share,
          restarts).
        """
        t0 = time.perf_counter()
        state = self.local.begin_iteration(state)
        groups = self.local.groups()
        meta_params = jax.device_get(state.meta_params)
        pieces = [(task, jax.device_get(jax.tree.map(lambda x: x[sl], state.agents[task]))) for task, sl in groups]
        outs, busy = self.pool.run(lambda actor, p: actor.pipeline_group.remote(p[0], meta_params, p[1]), pieces)
        new_state, metrics = self.local.finish_iteration(state, outs)
        return new_state, {**metrics, **_timing(time.perf_counter() - t0, busy, self.pool.restarts)}


def _timing(wall: float, busy: list[float], restarts: int) -> dict[str, float]:
    slowest = max(busy) if busy else 0.0
    return {"ray_wall_seconds": wall, "ray_slowest_worker_seconds": slowest,
            "ray_overhead_share": max(0.0, wall - slowest) / wall, "worker_restarts": float(restarts)}


def ray_engine(cfg: MetaTrainConfig, pool: WorkerPool, init_meta_params: dict | None = None):
    """The Ray engine of the method; `init_meta_params` is a warm start (driver side).

    Args:
      cfg: the meta-training config (its method picks the engine).
      pool: the actors that run the pieces.
      init_meta_params: warm-start meta-parameters; None: the method's own initialisation.

    Returns:
      A RayESEngine or RayPipelineEngine.
    """
    return (RayESEngine if cfg.method == "open" else RayPipelineEngine)(make_engine(cfg, init_meta_params), pool)

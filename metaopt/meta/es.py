"""OPEN meta-training by evolution strategies: evosax OpenES ask/tell around PPO runs.

A generation is three pure, jitted steps: `ask` (population and the generation's rollout
keys), `evaluate` (fitness of a shard of members: one jitted function of the members and the
keys), and `tell`. Shards have a fixed size, so evaluating them in sequence here, on several local
devices, or on Ray workers gives the same numbers. All members of a generation share its
rollout keys (common random numbers): fitness differences come from the members alone.

evosax minimises, so the ES sees the negated fitness; a NaN or inf fitness becomes +inf
and ranks worst.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from evosax.algorithms import Open_ES
from evosax.core.fitness_shaping import (
    centered_rank_fitness_shaping_fn,
    identity_fitness_shaping_fn,
    standardize_fitness_shaping_fn,
)

from metaopt.agents import make_ppo
from metaopt.config import ESConfig, MetaTrainConfig, OpenConfig, TaskConfig
from metaopt.optimizers import build_optimizer
from metaopt.optimizers import open as open_opt

# (members, D) population shard, (rollouts,) keys -> (members, rollouts, tasks) raw returns
EvaluateFn = Callable[[jax.Array, jax.Array], jax.Array]

SHAPING = {
    "centered_rank": centered_rank_fitness_shaping_fn,
    "z_score": standardize_fitness_shaping_fn,
    "raw": identity_fitness_shaping_fn,
}


class ESState(NamedTuple):
    """An ES run's state: evosax's strategy state, the run's key, the generation count."""

    strategy: Any  # evosax OpenES state: mean, std, Adam state, best so far
    key: jax.Array
    generation: jax.Array


def combine_fitness(raw: jax.Array, references: jax.Array) -> jax.Array:
    """(members, rollouts, tasks) raw returns -> (members,) fitness: mean over rollouts,
    each task divided by its reference return, then mean over tasks.

    Args:
      raw: (members, rollouts, tasks) raw returns.
      references: (tasks,) reference returns (1.0 for a single task).

    Returns:
      (members,) fitness.
    """
    return (raw.mean(axis=1) / references).mean(axis=1)


def _finite_stats(x: jax.Array) -> dict[str, jax.Array]:
    finite = jnp.isfinite(x)
    any_finite = finite.any()
    safe_mean = jnp.where(finite, x, 0.0).sum() / jnp.maximum(finite.sum(), 1)
    return {
        "best": jnp.where(any_finite, jnp.max(jnp.where(finite, x, -jnp.inf)), jnp.nan),
        "mean": jnp.where(any_finite, safe_mean, jnp.nan),
        "min": jnp.where(any_finite, jnp.min(jnp.where(finite, x, jnp.inf)), jnp.nan),
    }


@dataclass(frozen=True, eq=False)  # hashed by identity: a static argument of its jitted steps
class ESEngine:
    """One ES run's pure steps. `step` is the single-process generation."""

    cfg: ESConfig
    strategy: Open_ES
    init_mean: jax.Array
    references: jax.Array  # (tasks,)
    evaluate_shard: EvaluateFn  # jitted
    unravel: Callable[[jax.Array], dict]
    task_names: tuple[str, ...]
    env_steps_per_member: int  # over all tasks, one rollout

    @property
    def num_dims(self) -> int:
        """D, the number of meta-parameters searched over."""
        return int(self.init_mean.shape[0])

    @property
    def env_steps_per_iteration(self) -> int:
        """Env steps per generation over all members and rollouts."""
        return self.cfg.population_size * self.cfg.rollouts_per_member * self.env_steps_per_member

    def init(self, key: jax.Array) -> ESState:
        """The first ES state, with the leaf shapes and dtypes `tell` returns (checkpoints restore into
        it).

        Args:
          key: the run's PRNG key.

        Returns:
          The ESState at generation 0.
        """
        k_strategy, k_run = jax.random.split(key)
        strategy = self.strategy.init(k_strategy, self.init_mean, self.strategy.default_params)
        state = ESState(strategy, k_run, jnp.zeros((), jnp.int32))
        # evosax's tell returns some leaves with other shapes or weak types than its init
        # (best_fitness () -> (1,)); cast to what tell returns, so every generation (and a
        # state restored from a checkpoint) has one structure.
        p, r = self.cfg.population_size, self.cfg.rollouts_per_member
        fitness = jnp.zeros((p, r, len(self.task_names)))
        after = jax.eval_shape(lambda s: self.tell(s, jnp.zeros((p, self.num_dims)), fitness)[0], state)
        return jax.tree.map(lambda x, like: jnp.asarray(jnp.reshape(x, like.shape), like.dtype), state, after)

    @partial(jax.jit, static_argnums=0)
    def ask(self, state: ESState) -> tuple[jax.Array, jax.Array, ESState]:
        """(population (P, D), rollout keys (R,), state with its key advanced).

        Args:
          state: the current ESState.

        Returns:
          (population, keys, state) as above.
        """
        key, k_ask, k_eval = jax.random.split(state.key, 3)
        population, strategy = self.strategy.ask(k_ask, state.strategy, self.strategy.default_params)
        keys = jax.random.split(k_eval, self.cfg.rollouts_per_member)
        return population, keys, state._replace(strategy=strategy, key=key)

    def shards(self, population: jax.Array) -> list[jax.Array]:
        """The population split into shards of `cfg.shard_size` members, in order.

        Args:
          population: (P, D) members.

        Returns:
          The (shard_size, D) shards.
        """
        size = self.cfg.shard_size
        return [population[i:i + size] for i in range(0, population.shape[0], size)]

    def evaluate(self, population: jax.Array, keys: jax.Array) -> jax.Array:
        """All shards in sequence; each spread over local devices when there are several.

        Args:
          population: (P, D) members.
          keys: (R,) the generation's rollout keys.

        Returns:
          (P, R, tasks) raw returns.
        """
        return jnp.concatenate([self.evaluate_shard(_spread(s), keys) for s in self.shards(population)])

    @partial(jax.jit, static_argnums=0)
    def tell(self, state: ESState, population: jax.Array, raw: jax.Array) -> tuple[ESState, dict]:
        """The ES update from the members' raw returns (P, R, tasks); NaN or inf ranks worst.

        Args:
          state: the state `ask` returned.
          population: (P, D) the members asked.
          raw: (P, R, tasks) their raw returns.

        Returns:
          (the next state, metrics: fitness best/mean/min, non-finite members, sigma, the
          mean's norm, each task's mean return).
        """
        fitness = combine_fitness(raw, self.references)
        finite = jnp.isfinite(fitness)
        loss = jnp.where(finite, -fitness, jnp.inf)
        strategy, _ = self.strategy.tell(jax.random.fold_in(state.key, 0), population, loss, state.strategy,
                                         self.strategy.default_params)
        metrics = {f"fitness_{k}": v for k, v in _finite_stats(fitness).items()}
        metrics["nonfinite_members"] = (~finite).sum()
        metrics["sigma"] = strategy.std
        metrics["mean_norm"] = jnp.linalg.norm(strategy.mean)
        raw_mean = raw.mean(axis=1)  # (members, tasks)
        for t, name in enumerate(self.task_names):
            metrics[f"return_{name}"] = _finite_stats(raw_mean[:, t])["mean"]
        return ESState(strategy, state.key, state.generation + 1), metrics

    def step(self, state: ESState) -> tuple[ESState, dict]:
        """One generation in this process: ask, evaluate every shard, tell.

        Args:
          state: the current ESState.

        Returns:
          (next state, metrics) as `tell`.
        """
        population, keys, state = self.ask(state)
        return self.tell(state, population, self.evaluate(population, keys))

    def meta_params(self, state: ESState) -> dict:
        """The search distribution's mean: the trained optimizer.

        Args:
          state: an ESState.

        Returns:
          The meta-parameter tree.
        """
        return self.unravel(state.strategy.mean)


def _spread(shard: jax.Array) -> jax.Array:
    devices = jax.local_devices()
    if len(devices) == 1 or shard.shape[0] % len(devices):
        return shard
    mesh = jax.sharding.Mesh(np.array(devices), ("members",))
    return jax.device_put(shard, jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("members")))


def make_es_engine(
    cfg: ESConfig,
    init_mean: jax.Array,
    evaluate_shard: EvaluateFn,
    unravel: Callable[[jax.Array], dict] = lambda x: {"x": x},
    references: tuple[float, ...] = (1.0,),
    task_names: tuple[str, ...] = ("task",),
    env_steps_per_member: int = 0,
) -> ESEngine:
    """Any fitness: `evaluate_shard(members (S, D), keys (R,)) -> (S, R, tasks)` returns.

    Args:
      cfg: the ES settings.
      init_mean: (D,) the search distribution's first mean.
      evaluate_shard: the fitness function above (jitted here).
      unravel: (D,) -> meta-parameter tree.
      references: per task, the return its fitness is divided by.
      task_names: the tasks' names, for metrics.
      env_steps_per_member: env steps of one member's rollout over all tasks.

    Returns:
      The ESEngine.
    """
    strategy = Open_ES(
        population_size=cfg.population_size,
        solution=jnp.zeros_like(init_mean),
        use_antithetic_sampling=cfg.antithetic,
        optimizer=optax.adam(optax.exponential_decay(cfg.learning_rate, 1, cfg.lr_decay), b1=cfg.adam_b1, b2=cfg.adam_b2),
        std_schedule=optax.exponential_decay(cfg.sigma_init, 1, cfg.sigma_decay),
        fitness_shaping_fn=SHAPING[cfg.fitness_shaping],
    )
    return ESEngine(cfg, strategy, jnp.asarray(init_mean, jnp.float32), jnp.asarray(references, jnp.float32),
                    jax.jit(evaluate_shard), unravel, tuple(task_names), env_steps_per_member)


# ------------------------------------------------------------------ OPEN on PPO tasks


def open_task_fitness(task: TaskConfig, optimizer: OpenConfig, task_index: int) -> Callable[[jax.Array, jax.Array], jax.Array]:
    """(flat meta-parameters, key) -> the final update's mean last-episode return: one
    whole PPO training run with OPEN as its optimizer.

    Args:
      task: the task (env and PPO settings).
      optimizer: OPEN's config.
      task_index: folded into the key, so each task draws its own randomness.

    Returns:
      The fitness function, pure and jittable.
    """
    cfg = task.train_config(optimizer)

    def fitness(flat: jax.Array, key: jax.Array) -> jax.Array:
        meta_params = open_opt.unravel(flat, optimizer.larger)
        ppo = make_ppo(cfg, build_optimizer(optimizer, cfg.ppo, meta_params))
        _, metrics = ppo.train(jax.random.fold_in(key, task_index))
        return metrics["last_episode_return"][-1]

    return fitness


def members_per_vmap(cfg: ESConfig, backend: str | None = None) -> int:
    """How many members a shard evaluates at once (vmapped); the shard's chunks of that
    size run in sequence inside the same compiled call.

    Default: 1 on CPU, the whole shard elsewhere. On XLA:CPU a single PPO + OPEN run
    already keeps the cores busy, so batching members buys no parallelism and costs cache:
    each of OPEN's per-parameter passes streams (members, 8..24, N) arrays, members times
    the memory of one (figures: benchmarks/README.md). One member at a time also keeps the
    rollout's `lax.cond` a real branch (under vmap it becomes a select that runs both sides).
    Accelerators want the widest batch.

    Args:
      cfg: the ES settings; `cfg.members_per_vmap`, when set, wins (capped at the shard size).
      backend: the JAX backend to decide for; None: `jax.default_backend()`.

    Returns:
      Members per vmapped chunk, between 1 and `cfg.shard_size`.
    """
    if cfg.members_per_vmap is not None:
        return min(cfg.members_per_vmap, cfg.shard_size)
    return 1 if (backend or jax.default_backend()) == "cpu" else cfg.shard_size


def open_evaluate_fn(tasks: list[TaskConfig], optimizer: OpenConfig, per_vmap: int) -> EvaluateFn:
    """`per_vmap` members vmapped together (with their rollouts); chunks of them in
    sequence. 1: every PPO run (member x rollout) alone, unbatched.

    Args:
      tasks: the meta-training tasks.
      optimizer: OPEN's config.
      per_vmap: members vmapped together (see `members_per_vmap`).

    Returns:
      An EvaluateFn: (members (S, D), keys (R,)) -> (S, R, tasks) raw returns.
    """
    runs = [open_task_fitness(t, optimizer, i) for i, t in enumerate(tasks)]

    def member(flat: jax.Array, keys: jax.Array) -> jax.Array:  # (D,), (R,) -> (R, tasks)
        if per_vmap == 1:
            return jnp.stack([jax.lax.map(partial(run, flat), keys) for run in runs], axis=-1)
        return jnp.stack([jax.vmap(run, (None, 0))(flat, keys) for run in runs], axis=-1)

    def evaluate(members: jax.Array, keys: jax.Array) -> jax.Array:
        if per_vmap >= members.shape[0]:
            return jax.vmap(member, (0, None))(members, keys)
        return jax.lax.map(lambda m: member(m, keys), members, batch_size=per_vmap if per_vmap > 1 else None)

    return evaluate


def open_es_engine(cfg: MetaTrainConfig, init_meta_params: dict | None = None) -> ESEngine:
    """OPEN's ES engine. `init_meta_params` (a warm start, `metaopt.meta.warm_start`) is the
    search distribution's first mean; without it `cfg.es.init` decides.

    Args:
      cfg: the meta-training config (method open).
      init_meta_params: warm-start meta-parameters; None: `cfg.es.init`.

    Returns:
      The ESEngine.
    """
    opt: OpenConfig = cfg.optimizer
    if init_meta_params is not None:
        mean = open_opt.ravel(jax.tree.map(jnp.asarray, init_meta_params))
    elif cfg.es.init == "zeros":
        mean = open_opt.ravel(open_opt.zeros_meta_params(opt.larger))
    else:
        mean = open_opt.ravel(open_opt.init_meta_params(jax.random.key(cfg.seed + 1), opt.larger))
    # One task: fitness is its raw return (normalising would not change the ranking).
    references = tuple(t.reference for t in cfg.tasks) if len(cfg.tasks) > 1 else (1.0,)
    steps = sum(t.agent.num_updates * t.agent.batch_size for t in cfg.tasks)
    return make_es_engine(
        cfg.es, mean, open_evaluate_fn(cfg.tasks, opt, members_per_vmap(cfg.es)), lambda flat: open_opt.unravel(flat, opt.larger),
        references, tuple(cfg.env_names), steps,
    )

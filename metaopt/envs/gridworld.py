"""The six gridworlds of Optim4RL's reference (after Oh et al. 2020, arXiv:2007.08794), in JAX.

Rules as published (OPTIM4RL_SMALL_TASKS.md section 2):
- a rectangle walled on its border, every interior cell free; 9 actions (stay and the 8
  neighbours), a move into the wall keeps the agent where it was;
- objects, each with (reward, p_terminate, p_respawn): A = (+1, 0, p), B = (-1, 0.5, p);
  processed in index order, an object on the agent's new cell is collected (its reward added,
  the object removed), ends the episode with probability p_terminate, and an absent object
  (one just collected included) respawns with probability p_respawn on a uniformly random free
  cell (the agent's or another object's included);
- the episode also ends when its step count reaches `max_steps`; the reference counts that end as
  terminal (no bootstrap), so it is reported as `terminated` here too;
- auto-reset: agent and objects on distinct random free cells; the last step's reward is kept;
- observation: float32 (objects + 1, H, W), channel i the one-hot of object i while present, the
  last channel the agent; walls are not drawn. Fed flattened (C-order); the A2C conv torso
  unflattens it.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from metaopt.envs.core import VecEnv, with_episode_stats

MOVES = np.array([[0, 0], [-1, 0], [0, 1], [1, 0], [0, -1], [1, -1], [1, 1], [-1, 1], [-1, -1]], np.int32)


class GridSpec(NamedTuple):
    """One gridworld: size with the border walls, objects (reward, p_terminate, p_respawn), time limit."""

    rows: int
    cols: int
    objects: tuple[tuple[float, float, float], ...]
    max_steps: int


def _objects(n_each: int, p_respawn: float) -> tuple[tuple[float, float, float], ...]:
    return tuple([(1.0, 0.0, p_respawn)] * n_each + [(-1.0, 0.5, p_respawn)] * n_each)


GRIDWORLD_SPECS = {
    "small_dense_short": GridSpec(6, 8, _objects(1, 0.5), 50),
    "small_dense_long": GridSpec(8, 6, _objects(1, 0.5), 500),
    "big_sparse_short": GridSpec(12, 14, _objects(2, 0.05), 50),
    "big_sparse_long": GridSpec(14, 12, _objects(2, 0.05), 500),
    "big_dense_short": GridSpec(11, 15, _objects(2, 0.5), 50),
    "big_dense_long": GridSpec(15, 11, _objects(2, 0.5), 500),
}


class GridState(NamedTuple):
    """One gridworld's state: the agent's cell, each object's cell ((-1, -1) while absent), steps taken."""

    agent: jax.Array  # (2,) int32
    objects: jax.Array  # (num_objects, 2) int32
    time: jax.Array  # () int32


def free_cells(spec: GridSpec) -> np.ndarray:
    """The interior cells, row-major: (n, 2) int32."""
    rows, cols = np.meshgrid(np.arange(1, spec.rows - 1), np.arange(1, spec.cols - 1), indexing="ij")
    return np.stack([rows.ravel(), cols.ravel()], 1).astype(np.int32)


def make_single(spec: GridSpec):
    """Pure (reset, step, observe) of one (unbatched) gridworld.

    Args:
      spec: the gridworld.

    Returns:
      reset(key) -> state; step(key, state, action) -> (state after auto-reset, reward, done);
      observe(state) -> (objects + 1, rows, cols) float32.
    """
    free = jnp.asarray(free_cells(spec))
    props = jnp.asarray(np.array(spec.objects, np.float32))  # (n, 3)
    n = len(spec.objects)
    moves = jnp.asarray(MOVES)
    upper = jnp.array([spec.rows - 1, spec.cols - 1], jnp.int32)

    def is_wall(cell):
        return (cell[0] == 0) | (cell[0] == spec.rows - 1) | (cell[1] == 0) | (cell[1] == spec.cols - 1)

    n_free = free.shape[0]

    def distinct_cells(key):
        """n + 1 distinct free cells, every ordered choice equally likely: draw j uniform over the
        n_free - j cells not yet taken and step it past the taken ones in ascending order (k
        draws, where a permutation of every free cell would cost a sort per env per step)."""
        draws = jax.random.randint(key, (n + 1,), 0, n_free - jnp.arange(n + 1))
        taken = []
        for j in range(n + 1):
            index = draws[j]
            for low in (jnp.sort(jnp.stack(taken)) if taken else ()):
                index = index + (index >= low)
            taken.append(index)
        return free[jnp.stack(taken)]

    def reset(key) -> GridState:
        cells = distinct_cells(key)
        return GridState(cells[0], cells[1:], jnp.zeros((), jnp.int32))

    def step(key, state: GridState, action):
        target = jnp.clip(state.agent + moves[action], 0, upper)
        agent = jnp.where(is_wall(target), state.agent, target)
        k_draw, k_cell, k_reset = jax.random.split(key, 3)
        # Each object's rules depend on its own cell and draws only, so the index order of the
        # reference's loop is kept by processing all objects at once.
        terminate_draw, respawn_draw = jax.random.uniform(k_draw, (2, n))
        collected = jnp.all(state.objects == agent, axis=1)
        reward = jnp.sum(jnp.where(collected, props[:, 0], 0.0))
        end = jnp.any(collected & (terminate_draw <= props[:, 1]))
        objects = jnp.where(collected[:, None], -1, state.objects)
        respawn = (objects[:, 0] < 0) & (respawn_draw <= props[:, 2])
        objects = jnp.where(respawn[:, None], free[jax.random.randint(k_cell, (n,), 0, n_free)], objects)
        time = state.time + 1
        done = end | (time >= spec.max_steps)
        fresh = reset(k_reset)
        nxt = GridState(agent, objects, time)
        nxt = jax.tree.map(lambda f, c: jnp.where(done, f, c), fresh, nxt)
        return nxt, reward, done

    rows_index = jnp.arange(spec.rows)[:, None]
    cols_index = jnp.arange(spec.cols)[None, :]

    def observe(state: GridState) -> jax.Array:
        cells = jnp.concatenate([state.objects, state.agent[None]], 0)  # absent objects sit at (-1, -1)
        hit = (rows_index[None] == cells[:, 0, None, None]) & (cols_index[None] == cells[:, 1, None, None])
        return hit.astype(jnp.float32)

    return reset, step, observe


def make_gridworld(name: str, num_envs: int) -> VecEnv:
    """A batched gridworld of GRIDWORLD_SPECS.

    Args:
      name: a key of GRIDWORLD_SPECS.
      num_envs: copies stepped together.

    Returns:
      A VecEnv with 9 discrete actions and flattened (objects + 1, rows, cols) observations; the
      time limit ends an episode as `terminated`, as in the reference.
    """
    spec = GRIDWORLD_SPECS[name]
    single_reset, single_step, observe = make_single(spec)
    obs_shape = (len(spec.objects) + 1, spec.rows, spec.cols)
    obs_dim = int(np.prod(obs_shape))

    def flat(states):
        return jax.vmap(observe)(states).reshape(num_envs, obs_dim)

    def reset(key):
        states = jax.vmap(single_reset)(jax.random.split(key, num_envs))
        return flat(states), states

    def step(key, states, action):  # the terminal frame is never observed (auto-reset inside the step)
        states, reward, done = jax.vmap(single_step)(jax.random.split(key, num_envs), states, action)
        obs = flat(states)
        return states, obs, reward, done, jnp.zeros_like(done), obs

    reset_fn, step_fn = with_episode_stats(reset, step, num_envs)
    return VecEnv(name, num_envs, obs_dim, len(MOVES), True, reset_fn, step_fn, obs_shape)

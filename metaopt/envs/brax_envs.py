"""Brax locomotion, batched, with a time limit, clipped actions and cached-state auto-reset.

Auto-reset restores each env slot's own first state (as brax's training wrappers do):
re-running a physics reset on every step would cost more than the step itself.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from metaopt.envs.core import VecEnv, with_episode_stats


class BraxSlots(NamedTuple):
    """Batched Brax state plus each slot's first state (for auto-reset) and its step count."""

    state: Any  # brax State, batched
    first_pipeline_state: Any
    first_obs: jax.Array
    steps: jax.Array


def make_brax(name: str, num_envs: int, backend: str, episode_length: int) -> VecEnv:
    """A batched Brax env with a time limit, actions clipped to [-1, 1] and auto-reset to each slot's
    first state.

    Args:
      name: a Brax env name (e.g. "ant").
      num_envs: copies stepped together.
      backend: a Brax physics backend, one of `metaopt.config.BRAX_BACKENDS`.
      episode_length: truncation after this many steps.

    Returns:
      A VecEnv with continuous actions.
    """
    from brax import envs as brax_envs

    env = brax_envs.get_environment(name, backend=backend)
    v_reset, v_step = jax.vmap(env.reset), jax.vmap(env.step)

    def reset(key):
        state = v_reset(jax.random.split(key, num_envs))
        slots = BraxSlots(state, state.pipeline_state, state.obs, jnp.zeros((num_envs,), jnp.int32))
        return state.obs, slots

    def step(key, slots, action):
        del key  # brax dynamics are deterministic
        nstate = v_step(slots.state, jnp.clip(action, -1.0, 1.0))
        steps = slots.steps + 1
        terminated = nstate.done.astype(bool)
        truncated = (steps >= episode_length) & ~terminated
        done = terminated | truncated

        def pick(first, cur):
            return jnp.where(done.reshape(done.shape + (1,) * (cur.ndim - 1)), first, cur)

        final_obs = nstate.obs
        obs = pick(slots.first_obs, final_obs)
        nstate = nstate.replace(
            pipeline_state=jax.tree.map(pick, slots.first_pipeline_state, nstate.pipeline_state),
            obs=obs,
            done=jnp.zeros_like(nstate.done),
        )
        new_slots = slots._replace(state=nstate, steps=jnp.where(done, 0, steps))
        return new_slots, obs, nstate.reward.astype(jnp.float32), terminated, truncated, final_obs

    reset_fn, step_fn = with_episode_stats(reset, step, num_envs)
    return VecEnv(name, num_envs, env.observation_size, env.action_size, False, reset_fn, step_fn)

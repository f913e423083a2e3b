"""MinAtar games and bsuite's Catch from gymnax 1.x, batched; observations flattened to vectors.

Catch-bsuite has the rules of Optim4RL's reference Catch (OPTIM4RL_SMALL_TASKS.md section 1): a
10x5 grid, the paddle moves left/stays/right, +-1 at the ninth and last step, auto-reset, the
terminal frame never observed. Its (10, 5) observation (1.0 on the ball and the paddle) is fed
flattened row-major: the same 50-vector the reference's network flattens from (10, 5, 1).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from metaopt.envs.core import VecEnv, with_episode_stats

GYMNAX_IDS = {
    "breakout": "Breakout-MinAtar",
    "asterix": "Asterix-MinAtar",
    "space_invaders": "SpaceInvaders-MinAtar",
    "freeway": "Freeway-MinAtar",
    "catch": "Catch-bsuite",
}


def gymnax_default_params(name: str):
    """gymnax's default EnvParams of a MinAtar game (what the published code runs with).

    Args:
      name: a key of GYMNAX_IDS.

    Returns:
      gymnax's EnvParams for that game.
    """
    import gymnax  # imported here: gymnax's import is slow

    return gymnax.make(GYMNAX_IDS[name])[1]


def make_minatar(name: str, num_envs: int, episode_length: int | None = None) -> VecEnv:
    """A batched MinAtar game with gymnax's default parameters but for the time limit.

    Args:
      name: a key of GYMNAX_IDS.
      num_envs: copies stepped together.
      episode_length: truncation after this many steps; None keeps gymnax's own per game.

    Returns:
      A VecEnv with discrete actions and observations flattened to float32 vectors.
    """
    import gymnax

    env, params = gymnax.make(GYMNAX_IDS[name])
    if episode_length is not None:
        params = params.replace(max_steps_in_episode=episode_length)
    obs_shape = env.observation_space(params).shape
    obs_dim = math.prod(obs_shape)

    def flat(x):
        return x.reshape(num_envs, obs_dim).astype(jnp.float32)

    def reset(key):
        obs, state = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(key, num_envs), params)
        return flat(obs), state

    def step(key, state, action):
        # gymnax 1.x: (obs, state, reward, terminated, truncated, info), auto-reset inside.
        obs, state, reward, terminated, truncated, info = jax.vmap(env.step, in_axes=(0, 0, 0, None))(
            jax.random.split(key, num_envs), state, action, params
        )
        return state, flat(obs), reward.astype(jnp.float32), terminated, truncated, flat(info["final_observation"])

    reset_fn, step_fn = with_episode_stats(reset, step, num_envs)
    return VecEnv(name, num_envs, obs_dim, env.num_actions, True, reset_fn, step_fn, tuple(obs_shape))

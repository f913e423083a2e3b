"""One factory for every environment metaopt trains on (gymnax MinAtar and Catch, Brax, the gridworlds)."""

from __future__ import annotations

from metaopt.config import BRAX_ENVS, GRIDWORLDS, EnvConfig
from metaopt.envs.core import EnvStep, VecEnv, with_normalization
from metaopt.envs.gridworld import GRIDWORLD_SPECS, make_gridworld

__all__ = ["EnvStep", "VecEnv", "default_episode_length", "make_env", "resolve_env"]

BRAX_EPISODE_LENGTH = 1000  # as published for ant and humanoid (OPEN.md, OPTIM4RL.md)


def default_episode_length(name: str) -> int:
    """The time limit an env has when the config sets none.

    Args:
      name: an env name of `metaopt.config.ENV_NAMES`.

    Returns:
      gymnax's own `max_steps_in_episode` for a MinAtar game (the published code keeps
      gymnax's defaults), 1000 for Brax.
    """
    if name in BRAX_ENVS:
        return BRAX_EPISODE_LENGTH
    if name in GRIDWORLDS:
        return GRIDWORLD_SPECS[name].max_steps
    from metaopt.envs.minatar import gymnax_default_params

    return int(gymnax_default_params(name).max_steps_in_episode)


def resolve_env(cfg: EnvConfig) -> EnvConfig:
    """`cfg` with `episode_length` filled in from the simulator's default where it is None,
    so records (results.json) state the time limit a run really had.

    Args:
      cfg: an env config.

    Returns:
      `cfg` itself when it sets a time limit, else a copy with the simulator's.
    """
    if cfg.episode_length is not None:
        return cfg
    return cfg.model_copy(update={"episode_length": default_episode_length(cfg.name)})


def make_env(cfg: EnvConfig, num_envs: int, gamma: float = 0.99) -> VecEnv:
    """The env `cfg` names: batched, auto-resetting, normalised and reward-scaled as configured.

    Args:
      cfg: the env config; a missing time limit is resolved here.
      num_envs: copies stepped together.
      gamma: discount of the running return whose scale normalises rewards (used only with
        normalize_reward).

    Returns:
      A VecEnv.
    """
    cfg = resolve_env(cfg)
    if cfg.is_brax:
        from metaopt.envs.brax_envs import make_brax

        env = make_brax(cfg.name, num_envs, cfg.backend, cfg.episode_length)
    elif cfg.name in GRIDWORLDS:
        if cfg.episode_length != default_episode_length(cfg.name):
            raise ValueError(f"env.episode_length: the gridworld {cfg.name} has its own time limit "
                             f"({default_episode_length(cfg.name)}); remove episode_length")
        env = make_gridworld(cfg.name, num_envs)
    else:
        from metaopt.envs.minatar import make_minatar

        env = make_minatar(cfg.name, num_envs, cfg.episode_length)
    reset, step = with_normalization(
        env.reset, env.step, env.obs_dim, num_envs, gamma, cfg.normalize_obs, cfg.normalize_reward
    )
    if cfg.reward_scale != 1.0:
        step = _scaled_rewards(step, cfg.reward_scale)
    return VecEnv(env.name, num_envs, env.obs_dim, env.action_dim, env.discrete, reset, step, env.obs_shape)


def _scaled_rewards(step, scale: float):
    """The training reward times `scale` (brax PPO's reward_scaling); episode returns stay raw."""

    def step_fn(key, state, action):
        state, out = step(key, state, action)
        return state, out._replace(reward=out.reward * scale)

    return step_fn

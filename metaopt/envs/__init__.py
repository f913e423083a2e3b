"""One factory for every environment metaopt trains on (gymnax MinAtar and Brax)."""

from __future__ import annotations

from metaopt.config import EnvConfig
from metaopt.envs.core import EnvStep, VecEnv, with_normalization

__all__ = ["EnvStep", "VecEnv", "make_env"]


def make_env(cfg: EnvConfig, num_envs: int, gamma: float = 0.99) -> VecEnv:
    if cfg.is_brax:
        from metaopt.envs.brax_envs import make_brax

        env = make_brax(cfg.name, num_envs, cfg.backend, cfg.episode_length)
    else:
        from metaopt.envs.minatar import make_minatar

        env = make_minatar(cfg.name, num_envs, cfg.episode_length)
    reset, step = with_normalization(
        env.reset, env.step, env.obs_dim, num_envs, gamma, cfg.normalize_obs, cfg.normalize_reward
    )
    return VecEnv(env.name, num_envs, env.obs_dim, env.action_dim, env.discrete, reset, step)

"""The vectorised environment interface the PPO loop sees, whatever the simulator.

Every env is batched (`num_envs` copies), auto-resets, and returns the observation the
transition really ended in (`final_obs`) next to the post-reset one, so GAE can bootstrap
through time-limit truncation but not through termination. Episode returns are tracked
on raw rewards, before any reward normalisation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp


class EnvStep(NamedTuple):
    """One batched transition as the PPO loop sees it."""

    obs: jax.Array  # (num_envs, obs_dim): observation to act on next (after auto-reset)
    reward: jax.Array  # (num_envs,): training reward (normalised where configured)
    terminated: jax.Array  # (num_envs,) bool: a true end; no bootstrap
    truncated: jax.Array  # (num_envs,) bool: time limit; bootstrap from final_obs
    final_obs: jax.Array  # (num_envs, obs_dim): observation the transition ended in
    episode_return: jax.Array  # (num_envs,): raw return of an episode that ended here, else 0


ResetFn = Callable[[jax.Array], tuple[jax.Array, Any]]
StepFn = Callable[[jax.Array, Any, jax.Array], tuple[Any, EnvStep]]


@dataclass(frozen=True)
class VecEnv:
    """A batched, auto-resetting env: its sizes and its pure reset and step functions."""

    name: str
    num_envs: int
    obs_dim: int
    action_dim: int  # number of actions (discrete) or action dimensions (continuous)
    discrete: bool
    reset: ResetFn  # key -> (obs, state)
    step: StepFn  # (key, state, action) -> (state, EnvStep)
    obs_shape: tuple[int, ...] | None = None  # one observation's shape before flattening, where a network needs it


# ------------------------------------------------------------------ episode statistics


class EpisodeStatsState(NamedTuple):
    """A base env's state with each copy's running raw return."""

    inner: Any
    running_return: jax.Array


def with_episode_stats(reset: ResetFn, step: Callable, num_envs: int) -> tuple[ResetFn, StepFn]:
    """Adds raw episode returns to a base step that yields
    (state, obs, reward, terminated, truncated, final_obs).

    Args:
      reset: key -> (obs, state) of the base env.
      step: (key, state, action) -> (state, obs, reward, terminated, truncated, final_obs).
      num_envs: copies stepped together.

    Returns:
      (reset_fn, step_fn) of the VecEnv interface; step_fn returns an EnvStep.
    """

    def reset_fn(key):
        obs, inner = reset(key)
        return obs, EpisodeStatsState(inner, jnp.zeros((num_envs,), jnp.float32))

    def step_fn(key, state, action):
        inner, obs, reward, terminated, truncated, final_obs = step(key, state.inner, action)
        total = state.running_return + reward
        done = terminated | truncated
        out = EnvStep(obs, reward, terminated, truncated, final_obs, jnp.where(done, total, 0.0))
        return EpisodeStatsState(inner, jnp.where(done, 0.0, total)), out

    return reset_fn, step_fn


# ------------------------------------------------------------------ normalisation


class RunningMoments(NamedTuple):
    """Running mean, variance and sample count of a statistic."""

    mean: jax.Array
    var: jax.Array
    count: jax.Array


def moments_init(shape) -> RunningMoments:
    """Zero mean, unit variance and a count of 1e-4 (so the first batch dominates).

    Args:
      shape: the statistic's shape.

    Returns:
      The initial moments.
    """
    return RunningMoments(jnp.zeros(shape), jnp.ones(shape), jnp.asarray(1e-4))


def moments_update(m: RunningMoments, batch: jax.Array) -> RunningMoments:
    """Parallel (Chan et al.) merge of a batch into running mean/variance over axis 0.

    Args:
      m: the running moments.
      batch: (B, *shape) new samples.

    Returns:
      The merged moments.
    """
    b_mean, b_var, b_count = batch.mean(0), batch.var(0), batch.shape[0]
    delta = b_mean - m.mean
    total = m.count + b_count
    mean = m.mean + delta * b_count / total
    m2 = m.var * m.count + b_var * b_count + delta**2 * m.count * b_count / total
    return RunningMoments(mean, m2 / total, total)


class NormState(NamedTuple):
    """A base env's state with the normalisation statistics and each copy's discounted return."""

    inner: Any
    obs_moments: RunningMoments
    return_moments: RunningMoments
    discounted_return: jax.Array


def with_normalization(
    reset: ResetFn, step: StepFn, obs_dim: int, num_envs: int,
    gamma: float, normalize_obs: bool, normalize_reward: bool,
) -> tuple[ResetFn, StepFn]:
    """Running observation normalisation and return-scale reward normalisation, with their
    statistics in the env state (so each vmapped agent keeps its own).

    Args:
      reset: the VecEnv reset to wrap.
      step: the VecEnv step to wrap.
      obs_dim: observation size.
      num_envs: copies stepped together.
      gamma: discount of the running return whose standard deviation divides rewards.
      normalize_obs: normalise observations (and final_obs) by running mean and variance.
      normalize_reward: divide rewards by the running return's standard deviation.

    Returns:
      (reset_fn, step_fn); `reset` and `step` themselves when both options are off.
    """
    if not (normalize_obs or normalize_reward):
        return reset, step

    def norm_obs(m, x):
        return (x - m.mean) / jnp.sqrt(m.var + 1e-8) if normalize_obs else x

    def reset_fn(key):
        obs, inner = reset(key)
        om = moments_update(moments_init((obs_dim,)), obs) if normalize_obs else moments_init((obs_dim,))
        state = NormState(inner, om, moments_init(()), jnp.zeros((num_envs,)))
        return norm_obs(om, obs), state

    def step_fn(key, state, action):
        inner, out = step(key, state.inner, action)
        om = moments_update(state.obs_moments, out.obs) if normalize_obs else state.obs_moments
        done = out.terminated | out.truncated
        ret = state.discounted_return * gamma + out.reward
        rm = moments_update(state.return_moments, ret) if normalize_reward else state.return_moments
        reward = out.reward / jnp.sqrt(rm.var + 1e-8) if normalize_reward else out.reward
        out = out._replace(obs=norm_obs(om, out.obs), final_obs=norm_obs(om, out.final_obs), reward=reward)
        return NormState(inner, om, rm, jnp.where(done, 0.0, ret)), out

    return reset_fn, step_fn

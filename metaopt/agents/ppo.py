"""PPO in pure JAX (PureJaxRL-style): one loop for every optimizer.

`make_ppo(cfg, optimizer)` returns pure `init(key)` and `update(state)` functions;
`train(key)` is their scan and jits/vmaps as a whole. Callers that want progress bars or
checkpoints run `update` in compiled chunks instead; the numbers are the same.

The optimizer is any `optax.GradientTransformationExtraArgs` over {"actor", "critic"}.
The loop always passes what a learned optimizer needs as extra args:
  training_progress  update / (updates - 1)
  epoch_progress     epoch / (epochs - 1)
  activations        per-layer mean |activation| per unit on the minibatch (dormancy)
  key                a fresh PRNG key per optimizer step
Hand-made optimizers ignore them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from metaopt.agents import networks as nets
from metaopt.config import PPOConfig, TrainConfig
from metaopt.envs import VecEnv, make_env
from metaopt.optimizers.open import dormancy_score  # one definition: OPEN's input, PPO's metric


class RunnerState(NamedTuple):
    """The state of one PPO run between updates."""

    params: Any
    opt_state: Any
    env_state: Any
    obs: jax.Array
    key: jax.Array
    update_idx: jax.Array
    last_return: jax.Array  # (num_envs,): raw return of each env's last finished episode, NaN before one


class Transition(NamedTuple):
    """One rollout step, time-major when stacked."""

    obs: jax.Array
    action: jax.Array
    log_prob: jax.Array
    reward: jax.Array
    terminated: jax.Array
    done: jax.Array
    truncated_value: jax.Array  # V(obs the transition ended in) where truncated, else 0
    episode_return: jax.Array


class PPO(NamedTuple):
    """A PPO run's pure functions (from `make_ppo`)."""

    init: Callable[[jax.Array], RunnerState]
    update: Callable[[RunnerState], tuple[RunnerState, dict]]
    # The PPO loss of the current parameters on a fresh rollout: Optim4RL's meta-loss.
    fresh_loss: Callable[[RunnerState], tuple[jax.Array, tuple[RunnerState, dict]]]
    num_updates: int
    env: VecEnv

    def train(self, key: jax.Array) -> tuple[RunnerState, dict]:
        """A whole run: jittable, vmappable over keys; metrics have one row per update.

        Args:
          key: the run's PRNG key.

        Returns:
          (final RunnerState, metrics: each a (num_updates,) array).
        """
        state = self.init(key)
        return jax.lax.scan(lambda s, _: self.update(s), state, None, length=self.num_updates)


def make_train(cfg: TrainConfig, optimizer: optax.GradientTransformationExtraArgs):
    """PureJaxRL's entry point: a pure, jittable `train(rng) -> (final state, metrics)`.

    Args:
      cfg: the run's config.
      optimizer: any optax transformation (see `make_ppo`).

    Returns:
      `train(key) -> (final RunnerState, metrics)`.
    """
    return make_ppo(cfg, optimizer).train


def gae(
    rewards, values, next_values, terminated, done, gamma: float, lam: float
) -> tuple[jax.Array, jax.Array]:
    """GAE over time-major arrays. `next_values[t]` is V of the observation transition t
    ended in, so truncated steps bootstrap from it; terminated steps do not; the trace
    is cut at every episode end (done = terminated | truncated).

    Args:
      rewards: (T, ...) rewards.
      values: (T, ...) V of each step's observation.
      next_values: (T, ...) V of the observation each transition ended in.
      terminated: (T, ...) 1.0 where the episode truly ended.
      done: (T, ...) 1.0 where the episode ended or was truncated.
      gamma: discount factor.
      lam: GAE lambda.

    Returns:
      (advantages, value targets), each (T, ...).
    """
    deltas = rewards + gamma * next_values * (1.0 - terminated) - values
    decay = gamma * lam * (1.0 - done)

    def back(carry, x):
        delta, d = x
        carry = delta + d * carry
        return carry, carry

    _, adv = jax.lax.scan(back, jnp.zeros_like(deltas[0]), (deltas, decay), reverse=True)
    return adv, adv + values


def last_episode_returns(previous: jax.Array, done: jax.Array, episode_return: jax.Array) -> jax.Array:
    """Per env, the return of the last episode that ended in this (time-major) rollout, or
    `previous` where none ended: what PureJaxRL logs as returned_episode_returns.

    Args:
      previous: (envs,) the last returns before this rollout (NaN: none yet).
      done: (T, envs) episode-end flags.
      episode_return: (T, envs) raw returns where an episode ended.

    Returns:
      (envs,) the updated last returns.
    """
    ended = done > 0
    last = done.shape[0] - 1 - jnp.argmax(ended[::-1], axis=0)
    value = jnp.take_along_axis(episode_return, last[None], axis=0)[0]
    return jnp.where(ended.any(0), value, previous)


def make_ppo(cfg: TrainConfig, optimizer: optax.GradientTransformationExtraArgs) -> PPO:
    """PPO for one config and optimizer as pure functions.

    Args:
      cfg: env, PPO sizes and coefficients (its optimizer section is not read here).
      optimizer: any optax transformation; learned ones get training_progress, key and the
        activations as extra args.

    Returns:
      A PPO: `init(key)`, `update(state)` (one rollout and its epochs), `train(key)`,
      `fresh_loss(state)` (pipeline training's meta-loss) and `num_updates`.
    """
    p: PPOConfig = cfg.ppo
    env = make_env(cfg.env, p.num_envs, p.gamma)
    num_updates = p.num_updates
    act_name = p.activation

    def policy(params, obs):
        out, stats = nets.actor_apply(params["actor"], obs, act_name)
        return out, params["actor"].get("log_std"), stats

    def value_fn(params, obs):
        return nets.critic_apply(params["critic"], obs, act_name)[0]

    def init(key) -> RunnerState:
        k_net, k_env, k_run = jax.random.split(key, 3)
        params = nets.init_actor_critic(k_net, env.obs_dim, env.action_dim, env.discrete, p.actor_layers, p.critic_layers,
                                        p.shared_init_key)
        obs, env_state = env.reset(k_env)
        no_return = jnp.full((p.num_envs,), jnp.nan, jnp.float32)
        return RunnerState(params, optimizer.init(params), env_state, obs, k_run, jnp.zeros((), jnp.int32), no_return)

    def rollout(params, env_state, obs, key):
        def one_step(carry, step_key):
            env_state, obs = carry
            k_act, k_env = jax.random.split(step_key)
            out, log_std, _ = policy(params, obs)
            action = nets.sample_action(k_act, out, log_std)
            log_prob, _ = nets.log_prob_entropy(out, log_std, action)
            env_state, s = env.step(k_env, env_state, action)
            # The critic is not needed to act; V(obs) is computed after the rollout in one
            # batched pass. V of the observation a transition ended in is only needed where
            # the time limit cut an episode (elsewhere it is the next step's V or unused),
            # which is rare: evaluate it only at steps where that happened.
            trunc = s.truncated & ~s.terminated
            truncated_value = jax.lax.cond(
                trunc.any(),
                lambda: jnp.where(trunc, value_fn(params, s.final_obs), 0.0).astype(s.reward.dtype),
                lambda: jnp.zeros_like(s.reward),
            )
            tr = Transition(obs, action, log_prob, s.reward, s.terminated.astype(jnp.float32),
                            (s.terminated | s.truncated).astype(jnp.float32), truncated_value, s.episode_return)
            return (env_state, s.obs), tr

        (env_state, obs), traj = jax.lax.scan(one_step, (env_state, obs), jax.random.split(key, p.num_steps))
        return env_state, obs, traj

    def loss_fn(params, mb):
        obs, action, old_logp, old_value, adv, target = mb
        out, log_std, actor_stats = policy(params, obs)
        value, critic_stats = nets.critic_apply(params["critic"], obs, act_name)
        logp, entropy = nets.log_prob_entropy(out, log_std, action)
        ratio = jnp.exp(logp - old_logp)
        adv = (adv - adv.mean()) / (adv.std() + 1e-8)
        pg_loss = -jnp.minimum(ratio * adv, jnp.clip(ratio, 1 - p.clip_eps, 1 + p.clip_eps) * adv).mean()
        v_loss = (value - target) ** 2
        if p.clip_value_loss:
            v_clipped = old_value + jnp.clip(value - old_value, -p.clip_eps, p.clip_eps)
            v_loss = jnp.maximum(v_loss, (v_clipped - target) ** 2)
        v_loss = 0.5 * v_loss.mean()
        ent = entropy.mean()
        total = pg_loss + p.vf_coef * v_loss - p.ent_coef * ent
        aux = {
            "policy_loss": pg_loss,
            "value_loss": v_loss,
            "entropy": ent,
            "approx_kl": ((ratio - 1) - jnp.log(ratio)).mean(),
            "clip_fraction": (jnp.abs(ratio - 1) > p.clip_eps).mean(),
        }
        return total, (aux, {"actor": actor_stats, "critic": critic_stats})

    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
    training_denominator = max(num_updates - 1, 1)
    epoch_denominator = max(p.update_epochs - 1, 1)

    def dormant_fraction(activations):
        hidden = [dormancy_score(v) for k, v in activations.items() if k.startswith("dense_")][:-1]
        return (jnp.concatenate(hidden) <= p.dormant_threshold).mean()

    def collect(params, env_state, obs, key):
        """A rollout and its GAE targets: a flat PPO batch. Data is a constant of the loss,
        so no gradient flows into it (meta-gradients differentiate through updates only)."""
        params = jax.lax.stop_gradient(params)
        env_state, obs, traj = rollout(params, env_state, obs, key)
        values = value_fn(params, traj.obs.reshape(p.batch_size, -1)).reshape(traj.reward.shape)
        # V of the observation each transition ended in: the next step's value except at
        # episode ends, where only truncated steps need it (terminated ones do not bootstrap).
        next_values = jnp.concatenate([values[1:], value_fn(params, obs)[None]], 0)
        truncated = (traj.done > 0) & (traj.terminated == 0)
        next_values = jnp.where(truncated, traj.truncated_value, next_values)
        adv, targets = gae(traj.reward, values, next_values, traj.terminated, traj.done, p.gamma, p.gae_lambda)
        batch = (traj.obs, traj.action, traj.log_prob, values, adv, targets)
        batch = jax.tree.map(lambda x: x.reshape((p.batch_size,) + x.shape[2:]), batch)
        return batch, traj, env_state, obs

    def episode_metrics(traj, state: RunnerState) -> tuple[dict, jax.Array]:
        finished = traj.done.sum()
        last_return = last_episode_returns(state.last_return, traj.done, traj.episode_return)
        metrics = {
            "episode_return": jnp.where(finished > 0, traj.episode_return.sum() / jnp.maximum(finished, 1), jnp.nan),
            "episodes_finished": finished,
            # Mean over envs of each env's last finished episode (NaN until one finishes):
            # the published ES fitness, defined even when no episode ends in this update.
            "last_episode_return": jnp.nanmean(last_return),
        }
        return metrics, last_return

    def fresh_loss(state: RunnerState):
        key, k_roll = jax.random.split(state.key)
        batch, traj, env_state, obs = collect(state.params, state.env_state, state.obs, k_roll)
        loss, (aux, _) = loss_fn(state.params, batch)
        metrics, last_return = episode_metrics(traj, state)
        new_state = state._replace(env_state=env_state, obs=obs, key=key, last_return=last_return)
        return loss, (new_state, {**aux, **metrics})

    def update(state: RunnerState) -> tuple[RunnerState, dict]:
        key, k_roll, k_perm, k_opt = jax.random.split(state.key, 4)
        params = state.params
        batch, traj, env_state, obs = collect(params, state.env_state, state.obs, k_roll)
        training_progress = state.update_idx / training_denominator

        def epoch(carry, inp):
            epoch_idx, perm, opt_key = inp
            mbs = jax.tree.map(lambda x: x[perm].reshape((p.num_minibatches, -1) + x.shape[1:]), batch)

            def minibatch(carry, inp):
                params, opt_state = carry
                mb, step_key = inp
                (_, (aux, activations)), grads = grad_fn(params, mb)
                updates, opt_state = optimizer.update(
                    grads, opt_state, params,
                    training_progress=training_progress,
                    epoch_progress=epoch_idx / epoch_denominator,
                    activations=activations,
                    key=step_key,
                )
                params = optax.apply_updates(params, updates)
                aux["grad_norm"] = optax.tree.norm(grads)
                aux["dormant_actor"] = dormant_fraction(activations["actor"])
                aux["dormant_critic"] = dormant_fraction(activations["critic"])
                return (params, opt_state), aux

            return jax.lax.scan(minibatch, carry, (mbs, jax.random.split(opt_key, p.num_minibatches)))

        epochs = jnp.arange(p.update_epochs, dtype=jnp.float32)
        # All epochs' permutations in one batched sort (same permutations as one per epoch).
        perms = jax.vmap(lambda k: jax.random.permutation(k, p.batch_size))(jax.random.split(k_perm, p.update_epochs))
        (params, opt_state), aux = jax.lax.scan(
            epoch, (params, state.opt_state), (epochs, perms, jax.random.split(k_opt, p.update_epochs)),
        )
        episodes, last_return = episode_metrics(traj, state)
        metrics = {**{k: v.mean() for k, v in aux.items()}, **episodes}
        new_state = RunnerState(params, opt_state, env_state, obs, key, state.update_idx + 1, last_return)
        return new_state, metrics

    return PPO(init, update, fresh_loss, num_updates, env)

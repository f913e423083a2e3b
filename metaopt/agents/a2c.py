"""A2C in pure JAX, as Optim4RL's reference trains it on Catch and the gridworlds.

One parameter set for `num_envs` envs; each update collects one `num_steps` rollout (the envs
carry on across rollouts, no reset at their boundaries) and takes one optimizer step on

    actor  -mean(log pi(a_t|s_t) * sg(A_t))
  + critic vf_coef * mean(A_t^2)
  - entropy ent_coef * mean(H(pi(.|s_t)))

where A_t = G_t^lambda - V(s_t): the TD(lambda) return bootstrapped from V(s_T), its targets under
stop-gradient, discount gamma * (1 - done) with timeouts counted as terminal, no advantage or
reward normalisation. The network is one shared torso with a linear actor head (logits) and a
linear critic head (OPTIM4RL_SMALL_TASKS.md section 3).

`make_a2c(cfg, optimizer)` returns the same `Agent` functions as PPO's `make_ppo` (init, update,
fresh_loss, train), so every optimizer, `run_training` and pipeline training take either.
Optimizers get the same extra args as under PPO: `training_progress`, `key`, `epoch_progress`
(always 0: one epoch, as PPO with `update_epochs` 1 gives) and `activations`, each layer's mean
|activation| per unit on the update's rollout ({"torso": {"conv", "dense"}, "actor": {"actor":
logits}, "critic": {"critic": value}}), which OPEN reads as dormancy (optimizers/flat.py: the
torso is on both heads' paths).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import optax

from metaopt.agents import networks as nets
from metaopt.agents.ppo import PPO as Agent
from metaopt.agents.ppo import RunnerState, last_episode_returns
from metaopt.config import A2CConfig, TrainConfig
from metaopt.envs import make_env

# ------------------------------------------------------------------ networks (flax's defaults)


def _lecun_normal(key, shape, fan_in: int) -> jax.Array:
    """flax's default kernel init: variance 1/fan_in, truncated normal at 2 standard deviations."""
    std = math.sqrt(1.0 / fan_in) / 0.87962566103423978  # the std of a unit normal truncated at +-2
    return std * jax.random.truncated_normal(key, -2.0, 2.0, shape, jnp.float32)


def _dense(key, n_in: int, n_out: int) -> dict:
    return {"kernel": _lecun_normal(key, (n_in, n_out), n_in), "bias": jnp.zeros((n_out,), jnp.float32)}


def init_network(key, a2c: A2CConfig, obs_shape: tuple[int, ...], num_actions: int) -> dict:
    """The shared torso with its actor and critic heads, initialised as flax initialises the
    reference's modules (lecun-normal kernels, zero biases).

    Args:
      key: a PRNG key.
      a2c: the A2C settings (torso, widths).
      obs_shape: one observation's shape; (C, H, W) for the conv2x2 torso.
      num_actions: number of discrete actions.

    Returns:
      {"torso": ..., "actor": Dense, "critic": Dense} as plain arrays.
    """
    k_conv, k_dense, k_actor, k_critic = jax.random.split(key, 4)
    torso = {}
    if a2c.torso == "conv2x2":
        channels, rows, cols = obs_shape
        fan_in = 2 * 2 * cols  # the columns are the conv's input features (the reference's axis quirk)
        torso["conv"] = {"kernel": _lecun_normal(k_conv, (2, 2, cols, a2c.conv_features), fan_in),
                         "bias": jnp.zeros((a2c.conv_features,), jnp.float32)}
        flat = channels * rows * a2c.conv_features
    else:
        flat = math.prod(obs_shape)
    torso["dense"] = _dense(k_dense, flat, a2c.hidden_width)
    return {"torso": torso, "actor": _dense(k_actor, a2c.hidden_width, num_actions),
            "critic": _dense(k_critic, a2c.hidden_width, 1)}


def conv2x2_same(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """flax's Conv(2x2, stride 1, SAME) on an NHWC input, written as one matmul of 2x2 patches:
    out[b, y, z, f] = sum_{i, j} pad(x)[b, y + i, z + j, :] @ kernel[i, j], padding one row and one
    column at the high end (SAME for an even kernel). The same numbers as flax's Conv (tested).
    Agents and seeds are always vmapped, each with its own kernel, which XLA:CPU runs as a grouped
    convolution; as matmuls it is faster, and as one matmul over the four shifted views (contraction
    4 * C_in) faster than four (benchmarks/README.md, "Optim4RL on its own ground").

    Args:
      x: (B, Y, Z, C_in); for the gridworlds (B, object channel, row, column) as the reference feeds it.
      kernel: (2, 2, C_in, F).

    Returns:
      (B, Y, Z, F).
    """
    y, z = x.shape[1], x.shape[2]
    padded = jnp.pad(x, ((0, 0), (0, 1), (0, 1), (0, 0)))
    patches = jnp.concatenate([padded[:, i:i + y, j:j + z, :] for i in range(2) for j in range(2)], axis=-1)
    return patches @ kernel.reshape(-1, kernel.shape[-1])  # (i, j, C_in) flattened in the patches' order


def network_forward(params: dict, obs: jax.Array, obs_shape: tuple[int, ...]) -> tuple[jax.Array, jax.Array, dict]:
    """(..., obs_dim) flat observations -> (logits (..., actions), values (...), statistics).

    Args:
      params: from `init_network`.
      obs: flat observations, any leading axes.
      obs_shape: one observation's shape (the conv torso unflattens to it).

    Returns:
      (logits, values, each layer's mean |activation| per unit over the batch (and the conv's
      positions), the heads' of their raw outputs, no gradient; laid out as the params tree:
      {"torso": {layer: ...}, "actor": {"actor": ...}, "critic": {"critic": ...}}).
    """
    lead = obs.shape[:-1]
    x = obs.reshape((-1, obs.shape[-1]))
    torso, stats = params["torso"], {}
    if "conv" in torso:
        x = jax.nn.relu(conv2x2_same(x.reshape((-1, *obs_shape)), torso["conv"]["kernel"]) + torso["conv"]["bias"])
        stats["conv"] = nets.unit_mean_abs(x)
        x = x.reshape((x.shape[0], -1))
    h = jax.nn.relu(x @ torso["dense"]["kernel"] + torso["dense"]["bias"])
    stats["dense"] = nets.unit_mean_abs(h)
    logits = h @ params["actor"]["kernel"] + params["actor"]["bias"]
    value = h @ params["critic"]["kernel"] + params["critic"]["bias"]
    stats = {"torso": stats, "actor": {"actor": nets.unit_mean_abs(logits)}, "critic": {"critic": nets.unit_mean_abs(value)}}
    return logits.reshape(lead + logits.shape[-1:]), value[:, 0].reshape(lead), stats


def network_apply(params: dict, obs: jax.Array, obs_shape: tuple[int, ...]) -> tuple[jax.Array, jax.Array]:
    """`network_forward` without its statistics: (logits (..., actions), values (...))."""
    logits, values, _ = network_forward(params, obs, obs_shape)
    return logits, values


# ------------------------------------------------------------------ the loss


def td_lambda_advantages(rewards, values, bootstrap, done, gamma: float, lam: float) -> jax.Array:
    """A_t = G_t^lambda - V(s_t) over time-major arrays, G bootstrapped from `bootstrap` = V(s_T),
    cut (no bootstrap) where done (rlax.td_lambda's recursion).

    Args:
      rewards: (T, ...) rewards.
      values: (T, ...) V(s_t).
      bootstrap: (...) V(s_T), the value of the observation after the last step.
      done: (T, ...) 1.0 where the episode ended at step t (terminated or timed out).
      gamma: discount.
      lam: lambda.

    Returns:
      (T, ...) advantages; the returns inside are functions of the values only through their inputs,
      so callers stop their gradient.
    """
    discounts = gamma * (1.0 - done)
    next_values = jnp.concatenate([values[1:], bootstrap[None]], 0)

    def back(g_next, x):
        r, d, v_next = x
        g = r + d * ((1 - lam) * v_next + lam * g_next)
        return g, g

    _, returns = jax.lax.scan(back, bootstrap, (rewards, discounts, next_values), reverse=True)
    return returns - values


def a2c_loss(params: dict, obs: jax.Array, last_obs: jax.Array, action, reward, done, a2c: A2CConfig,
             obs_shape: tuple[int, ...]) -> tuple[jax.Array, dict]:
    """The A2C loss of one rollout (time-major, (T, envs, ...)) and its parts (`a2c_loss_and_stats`
    without the activation statistics)."""
    total, (parts, _) = a2c_loss_and_stats(params, obs, last_obs, action, reward, done, a2c, obs_shape)
    return total, parts


def a2c_loss_and_stats(params: dict, obs: jax.Array, last_obs: jax.Array, action, reward, done, a2c: A2CConfig,
                       obs_shape: tuple[int, ...]) -> tuple[jax.Array, tuple[dict, dict]]:
    """The A2C loss of one rollout (time-major, (T, envs, ...)), its parts and the network's
    activation statistics on it.

    Args:
      params: the network.
      obs: (T, envs, obs_dim) observations acted on.
      last_obs: (envs, obs_dim) the observation after the last step.
      action: (T, envs) actions taken.
      reward: (T, envs) training rewards.
      done: (T, envs) 1.0 where an episode ended.
      a2c: coefficients, gamma and lambda.
      obs_shape: one observation's shape.

    Returns:
      (total loss, ({"policy_loss", "value_loss", "entropy"}, statistics as `network_forward`'s)).
    """
    logits, values, stats = network_forward(params, jnp.concatenate([obs, last_obs[None]], 0), obs_shape)
    targets_from = jax.lax.stop_gradient(values)
    adv_target = td_lambda_advantages(reward, targets_from[:-1], targets_from[-1], done, a2c.gamma, a2c.gae_lambda)
    returns = adv_target + targets_from[:-1]  # G^lambda, a constant
    td = returns - values[:-1]
    logp, entropy = nets.log_prob_entropy(logits[:-1], None, action)
    policy_loss = -(logp * jax.lax.stop_gradient(td)).mean()
    value_loss = (td**2).mean()
    ent = entropy.mean()
    total = policy_loss + a2c.vf_coef * value_loss - a2c.ent_coef * ent
    return total, ({"policy_loss": policy_loss, "value_loss": value_loss, "entropy": ent}, stats)


# ------------------------------------------------------------------ the agent


def make_a2c(cfg: TrainConfig, optimizer: optax.GradientTransformationExtraArgs) -> Agent:
    """A2C for one config and optimizer as pure functions.

    Args:
      cfg: env and `a2c` settings (its optimizer section is not read here).
      optimizer: any optax transformation; it gets training_progress and key as extra args.

    Returns:
      An Agent: `init(key)`, `update(state)` (one rollout, one optimizer step), `train(key)`,
      `fresh_loss(state)` (the A2C loss of the current parameters on a fresh rollout: pipeline
      training's meta-loss) and `num_updates`.
    """
    a: A2CConfig = cfg.a2c
    env = make_env(cfg.env, a.num_envs, a.gamma)
    obs_shape = env.obs_shape or (env.obs_dim,)
    num_updates = a.num_updates
    training_denominator = max(num_updates - 1, 1)

    def init(key) -> RunnerState:
        k_net, k_env, k_run = jax.random.split(key, 3)
        params = init_network(k_net, a, obs_shape, env.action_dim)
        obs, env_state = env.reset(k_env)
        no_return = jnp.full((a.num_envs,), jnp.nan, jnp.float32)
        return RunnerState(params, optimizer.init(params), env_state, obs, k_run, jnp.zeros((), jnp.int32), no_return)

    def rollout(params, env_state, obs, key):
        """`num_steps` steps with the current policy; the data is a constant of the loss."""
        params = jax.lax.stop_gradient(params)

        def one_step(carry, step_key):
            env_state, obs = carry
            k_act, k_env = jax.random.split(step_key)
            logits, _ = network_apply(params, obs, obs_shape)
            action = jax.random.categorical(k_act, logits)
            env_state, s = env.step(k_env, env_state, action)
            done = (s.terminated | s.truncated).astype(jnp.float32)
            return (env_state, s.obs), (obs, action, s.reward, done, s.episode_return)

        (env_state, obs), traj = jax.lax.scan(one_step, (env_state, obs), jax.random.split(key, a.num_steps))
        return env_state, obs, traj

    def loss_on(params, traj, last_obs):
        obs, action, reward, done, _ = traj
        return a2c_loss_and_stats(params, obs, last_obs, action, reward, done, a, obs_shape)

    def episode_metrics(traj, state: RunnerState):
        done, episode_return = traj[3], traj[4]
        finished = done.sum()
        last_return = last_episode_returns(state.last_return, done, episode_return)
        metrics = {
            # the reference's logged return: the mean of the episodes that ended in this update
            "episode_return": jnp.where(finished > 0, episode_return.sum() / jnp.maximum(finished, 1), jnp.nan),
            "episodes_finished": finished,
            "last_episode_return": jnp.nanmean(last_return),
        }
        return metrics, last_return

    def fresh_loss(state: RunnerState):
        key, k_roll = jax.random.split(state.key)
        env_state, obs, traj = rollout(state.params, state.env_state, state.obs, k_roll)
        loss, (aux, _) = loss_on(state.params, traj, obs)
        metrics, last_return = episode_metrics(traj, state)
        return loss, (state._replace(env_state=env_state, obs=obs, key=key, last_return=last_return), {**aux, **metrics})

    grad_fn = jax.value_and_grad(loss_on, has_aux=True)

    def update(state: RunnerState) -> tuple[RunnerState, dict]:
        key, k_roll, k_opt = jax.random.split(state.key, 3)
        env_state, obs, traj = rollout(state.params, state.env_state, state.obs, k_roll)
        # The gradient is data to the optimizer (first-order meta-gradients): taken at
        # stop_gradient(params), its value is the same and no second-order path is built.
        (_, (aux, activations)), grads = grad_fn(jax.lax.stop_gradient(state.params), traj, obs)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params,
                                              training_progress=state.update_idx / training_denominator,
                                              epoch_progress=0.0, activations=activations, key=k_opt)
        params = optax.apply_updates(state.params, updates)
        episodes, last_return = episode_metrics(traj, state)
        metrics = {**aux, "grad_norm": optax.tree.norm(grads), **episodes}
        return RunnerState(params, opt_state, env_state, obs, key, state.update_idx + 1, last_return), metrics

    return Agent(init, update, fresh_loss, num_updates, env)

"""Separate actor and critic MLPs as plain pytrees.

Plain functions (not flax modules) because the forward pass must also hand back each
layer's mean |activation| per unit: learned optimizers read dormancy from it. Layers are
named dense_0..dense_L (L = head) so sorted-key order is depth order; a continuous actor
adds a state-independent `log_std`, which counts as its last layer.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp

ACTIVATIONS = {"relu": jax.nn.relu, "tanh": jnp.tanh, "swish": jax.nn.swish}  # swish: brax's PPO networks


def layer_names(num_hidden: int) -> list[str]:
    """The layer names of an MLP with `num_hidden` hidden layers: dense_0 .. dense_{num_hidden} (the
    head).

    Args:
      num_hidden: number of hidden layers (at most 9, so names sort in depth order).

    Returns:
      The names, input side first.
    """
    return [f"dense_{i}" for i in range(num_hidden + 1)]


def orthogonal(key, shape: tuple[int, int], scale: float) -> jax.Array:
    """Orthogonal init by Gram-Schmidt (twice, for float32) on a Gaussian matrix: the same
    distribution as sign-corrected QR. Not LAPACK QR: under vmap on XLA:CPU its batched
    custom call re-enters the intra-op thread pool it runs on and can deadlock.

    Args:
      key: a PRNG key.
      shape: (in, out) of the kernel.
      scale: the gain the orthogonal matrix is multiplied by.

    Returns:
      An (in, out) float32 kernel.
    """
    n_in, n_out = shape
    rows, cols = max(n_in, n_out), min(n_in, n_out)
    a = jax.random.normal(key, (rows, cols), jnp.float32)

    def column(j, q):
        v = a[:, j]
        for _ in range(2):  # q's columns >= j are still zero, so they drop out
            v = v - q @ (q.T @ v)
        return q.at[:, j].set(v / jnp.linalg.norm(v))

    q = jax.lax.fori_loop(0, cols, column, jnp.zeros((rows, cols), jnp.float32))
    return scale * (q if n_in >= n_out else q.T)


def init_mlp(key, in_dim: int, hidden: Sequence[int], out_dim: int, head_scale: float) -> dict:
    """Orthogonal kernels (sqrt 2 for hidden layers, `head_scale` for the head), zero biases.

    Args:
      key: a PRNG key.
      in_dim: input size.
      hidden: the hidden layers' widths, input side first.
      out_dim: output size.
      head_scale: gain of the head's orthogonal kernel.

    Returns:
      {dense_i: {"kernel": (in, out), "bias": (out,)}}, dense_0 at the input, the head last.
    """
    num_hidden = len(hidden)
    sizes = [in_dim, *hidden, out_dim]
    keys = jax.random.split(key, num_hidden + 1)
    params = {}
    for i, name in enumerate(layer_names(num_hidden)):
        scale = head_scale if i == num_hidden else math.sqrt(2.0)
        kernel = orthogonal(keys[i], (sizes[i], sizes[i + 1]), scale)
        params[name] = {"kernel": kernel, "bias": jnp.zeros((sizes[i + 1],), jnp.float32)}
    return params


def mlp_apply(params: dict, x: jax.Array, activation: str) -> tuple[jax.Array, dict]:
    """Returns (output, {layer: mean over the batch of |activation| per unit}).

    Args:
      params: an MLP from `init_mlp` (other keys than dense_* are ignored).
      x: (..., in) inputs.
      activation: a key of ACTIVATIONS, applied after every hidden layer.

    Returns:
      (output (..., out), statistics: each layer's mean |activation| per unit, the head's of its raw
      output; no gradient).
    """
    act = ACTIVATIONS[activation]
    names = sorted((k for k in params if k.startswith("dense_")), key=lambda k: int(k.removeprefix("dense_")))
    stats = {}
    for name in names[:-1]:
        x = act(x @ params[name]["kernel"] + params[name]["bias"])
        stats[name] = unit_mean_abs(x)
    head = names[-1]
    out = x @ params[head]["kernel"] + params[head]["bias"]
    stats[head] = unit_mean_abs(out)
    return out, stats


def unit_mean_abs(x: jax.Array) -> jax.Array:
    """(..., units) -> (units,): mean |x| per unit over every other axis, without gradient."""
    return jax.lax.stop_gradient(jnp.abs(x).reshape(-1, x.shape[-1]).mean(0))


def init_actor_critic(key, obs_dim: int, action_dim: int, discrete: bool, actor_hidden: Sequence[int],
                      critic_hidden: Sequence[int], shared_key: bool = False) -> dict:
    """Actor and critic MLPs with the given hidden widths, from independent keys;
    `shared_key`: from the same key, as the published code does (same-shaped layers then
    start equal).

    Args:
      key: a PRNG key.
      obs_dim: observation size.
      action_dim: number of actions (discrete) or action dimensions (continuous).
      discrete: a categorical policy; False: Gaussian, with a zero-initialised `log_std`.
      actor_hidden: the actor's hidden widths, input side first.
      critic_hidden: the critic's hidden widths, input side first.
      shared_key: initialise both networks from `key` itself (see above).

    Returns:
      {"actor": MLP (+ log_std), "critic": MLP with one output}.
    """
    k_actor, k_critic = (key, key) if shared_key else jax.random.split(key)
    actor = init_mlp(k_actor, obs_dim, actor_hidden, action_dim, 0.01)
    if not discrete:
        actor["log_std"] = jnp.zeros((action_dim,), jnp.float32)
    critic = init_mlp(k_critic, obs_dim, critic_hidden, 1, 1.0)
    return {"actor": actor, "critic": critic}


def actor_apply(params: dict, obs: jax.Array, activation: str) -> tuple[jax.Array, dict]:
    """The actor's forward pass.

    Args:
      params: the actor's parameters.
      obs: (..., obs_dim) observations.
      activation: a key of ACTIVATIONS.

    Returns:
      (logits or action means (..., action_dim), per-layer statistics as `mlp_apply`, plus exp(log_std)
      for a Gaussian actor).
    """
    out, stats = mlp_apply(params, obs, activation)
    if "log_std" in params:
        stats["log_std"] = jax.lax.stop_gradient(jnp.exp(params["log_std"]))
    return out, stats


def critic_apply(params: dict, obs: jax.Array, activation: str) -> tuple[jax.Array, dict]:
    """The critic's forward pass.

    Args:
      params: the critic's parameters.
      obs: (..., obs_dim) observations.
      activation: a key of ACTIVATIONS.

    Returns:
      (values (...), per-layer statistics as `mlp_apply`).
    """
    out, stats = mlp_apply(params, obs, activation)
    return out[..., 0], stats


# ------------------------------------------------------------------ policy distributions


def log_prob_entropy(actor_out: jax.Array, log_std: jax.Array | None, action: jax.Array):
    """Categorical (log_std None) or diagonal Gaussian log-probability and entropy.

    Args:
      actor_out: (..., actions) logits, or (..., dims) Gaussian means.
      log_std: (dims,) Gaussian log standard deviations; None: categorical.
      action: (...) action indices, or (..., dims) continuous actions.

    Returns:
      (log-probability (...), entropy (...)).
    """
    if log_std is None:
        logp_all = jax.nn.log_softmax(actor_out)
        logp = jnp.take_along_axis(logp_all, action[..., None].astype(jnp.int32), -1)[..., 0]
        entropy = -(jnp.exp(logp_all) * logp_all).sum(-1)
        return logp, entropy
    var = jnp.exp(2 * log_std)
    logp = (-0.5 * ((action - actor_out) ** 2 / var) - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)
    entropy = jnp.broadcast_to((0.5 + 0.5 * math.log(2 * math.pi) + log_std).sum(-1), logp.shape)
    return logp, entropy


def sample_action(key, actor_out: jax.Array, log_std: jax.Array | None) -> jax.Array:
    """An action from the policy: categorical over logits, or Gaussian around the means.

    Args:
      key: a PRNG key.
      actor_out: (..., actions) logits, or (..., dims) Gaussian means.
      log_std: (dims,) Gaussian log standard deviations; None: categorical.

    Returns:
      (...) int action indices, or (..., dims) continuous actions (unclipped).
    """
    if log_std is None:
        return jax.random.categorical(key, actor_out)
    return actor_out + jnp.exp(log_std) * jax.random.normal(key, actor_out.shape)

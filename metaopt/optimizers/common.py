"""Pieces every optimizer chain shares."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from metaopt.config import PPOConfig
from metaopt.optimizers.flat import SHARED_TORSO, is_agent_top


def clip_by_global_norm_per_network(max_norm: float | None) -> optax.GradientTransformationExtraArgs:
    """Clip each top-level subtree ("actor", "critic") by its own global norm, as the
    published code does with its two separate train states; a tree with a shared torso
    (A2C: one network, one loss, one train state) by its whole global norm. None: identity.

    Args:
      max_norm: the largest global norm per top-level subtree; None: no clipping.

    Returns:
      An optax transformation (stateless).
    """
    if max_norm is None:
        return optax.with_extra_args_support(optax.identity())

    def update_fn(updates, state, params=None):
        del params
        def clip(tree):
            norm = optax.tree.norm(tree)
            scale = jnp.minimum(1.0, max_norm / (norm + 1e-12))
            return jax.tree.map(lambda g: g * scale.astype(g.dtype), tree)
        if SHARED_TORSO in updates and is_agent_top(set(updates)):  # an agent, as FlatLayout reads it
            return clip(updates), state
        return {k: clip(v) for k, v in updates.items()}, state

    return optax.with_extra_args_support(
        optax.GradientTransformation(lambda params: optax.EmptyState(), update_fn)
    )


def gradient_clipping(max_grad_norm: float | None, clip_elementwise: float | None) -> optax.GradientTransformationExtraArgs:
    """The clipping every optimizer chain starts with: per-network global norm (None: off),
    then element-wise to [-c, c] (None: off; brax-style runs, e.g. Optim4RL's, use 1).

    Args:
      max_grad_norm: per-network global-norm limit; None: off.
      clip_elementwise: element-wise limit c; None: off.

    Returns:
      The chained optax transformation.
    """
    elementwise = optax.clip(clip_elementwise) if clip_elementwise is not None else optax.identity()
    return optax.chain(clip_by_global_norm_per_network(max_grad_norm), optax.with_extra_args_support(elementwise))


def ppo_lr_schedule(learning_rate: float, anneal: bool, ppo: PPOConfig):
    """Constant, or PureJaxRL's linear annealing: one step down per PPO update, to 0.

    Args:
      learning_rate: the initial learning rate.
      anneal: anneal linearly to 0 over the run; False: constant.
      ppo: the PPO config (updates, epochs and minibatches fix the schedule's length).

    Returns:
      A float (constant) or an optax schedule of the optimizer step count.
    """
    if not anneal:
        return learning_rate
    steps_per_update = ppo.update_epochs * ppo.num_minibatches

    def schedule(count):
        return learning_rate * (1.0 - (count // steps_per_update) / ppo.num_updates)

    return schedule


class DecayState(NamedTuple):
    """Steps taken, for the step-size schedule the decay follows."""

    count: jax.Array


def decoupled_weight_decay(rate: float, step_size) -> optax.GradientTransformationExtraArgs:
    """Decoupled weight decay after an optimizer's update (AdamW's form, Loshchilov & Hutter):
    updates - rate * step_size(count) * params. Identity when `rate` is 0.

    Args:
      rate: the decay per unit of step size (AdamW's weight_decay).
      step_size: the optimizer's learning rate: a float or a schedule of the step count.

    Returns:
      The transformation; its update needs `params`.
    """
    if rate == 0:
        return optax.with_extra_args_support(optax.identity())
    schedule = step_size if callable(step_size) else (lambda _: step_size)

    def update_fn(updates, state: DecayState, params=None):
        if params is None:
            raise ValueError("decoupled weight decay needs the parameters: call update(grads, state, params)")
        scale = rate * schedule(state.count)
        updates = jax.tree.map(lambda u, p: u - (scale * p).astype(u.dtype), updates, params)
        return updates, DecayState(optax.safe_increment(state.count))

    return optax.with_extra_args_support(
        optax.GradientTransformation(lambda params: DecayState(jnp.zeros([], jnp.int32)), update_fn))

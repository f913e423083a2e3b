"""Hand-designed baselines from optax, chained after gradient clipping."""

from __future__ import annotations

import optax

from metaopt.config import AdamConfig, PPOConfig, RMSPropConfig
from metaopt.optimizers.common import decoupled_weight_decay, gradient_clipping, ppo_lr_schedule


def adam_from_config(cfg: AdamConfig, ppo: PPOConfig) -> optax.GradientTransformationExtraArgs:
    """Adam from its config: gradient clipping, then optax.adam on the PPO learning-rate schedule
    (and decoupled weight decay on the same schedule where set: AdamW).

    Args:
      cfg: an AdamConfig.
      ppo: the PPO config (the annealing schedule follows its updates).

    Returns:
      The chained optax transformation.
    """
    lr = ppo_lr_schedule(cfg.learning_rate, cfg.anneal_lr, ppo)
    return optax.chain(
        gradient_clipping(cfg.max_grad_norm, cfg.clip_elementwise),
        optax.adam(lr, b1=cfg.b1, b2=cfg.b2, eps=cfg.eps),
        decoupled_weight_decay(cfg.weight_decay, lr),
    )


def rmsprop_from_config(cfg: RMSPropConfig, ppo: PPOConfig) -> optax.GradientTransformationExtraArgs:
    """RMSProp from its config: gradient clipping, then optax.rmsprop on the PPO learning-rate schedule.

    Args:
      cfg: an RMSPropConfig.
      ppo: the PPO config (the annealing schedule follows its updates).

    Returns:
      The chained optax transformation.
    """
    lr = ppo_lr_schedule(cfg.learning_rate, cfg.anneal_lr, ppo)
    return optax.chain(
        gradient_clipping(cfg.max_grad_norm, cfg.clip_elementwise),
        optax.rmsprop(lr, decay=cfg.decay, eps=cfg.eps, momentum=cfg.momentum or None, centered=cfg.centered),
        decoupled_weight_decay(cfg.weight_decay, lr),
    )

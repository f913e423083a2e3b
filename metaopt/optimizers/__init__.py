"""Optimizers for the PPO loop: every one an `optax.GradientTransformationExtraArgs`.

`build_optimizer(cfg, ppo_cfg, meta_params)` is the single seam; the loop never asks which
one it has. Learned optimizers take their meta-parameters as an argument (meta-training
passes traced ones) or from the file named in their config.
"""

from __future__ import annotations

from collections.abc import Callable

import optax

from metaopt.config import LEARNED_OPTIMIZERS, PPOConfig
from metaopt.optimizers.baselines import adam_from_config, rmsprop_from_config
from metaopt.optimizers.common import (
    clip_by_global_norm_per_network,
    decoupled_weight_decay,
    gradient_clipping,
    ppo_lr_schedule,
)
from metaopt.optimizers.learned import load_meta_params
from metaopt.optimizers.open import open_optimizer
from metaopt.optimizers.optim4rl import optim4rl_optimizer

__all__ = [
    "build_optimizer",
    "clip_by_global_norm_per_network",
    "ppo_lr_schedule",
    "open_optimizer",
    "optim4rl_optimizer",
    "BUILDERS",
]


def open_from_config(cfg, ppo: PPOConfig, meta_params: dict) -> optax.GradientTransformationExtraArgs:
    """OPEN from its config: gradient clipping, then `open_optimizer`.

    Args:
      cfg: an OpenConfig.
      ppo: unused (OPEN has no learning-rate schedule).
      meta_params: OPEN meta-parameters.

    Returns:
      The chained optax transformation.
    """
    del ppo
    return optax.chain(gradient_clipping(cfg.max_grad_norm, cfg.clip_elementwise), open_optimizer(meta_params, cfg.cpu_kernel),
                       decoupled_weight_decay(cfg.weight_decay, 1.0))  # OPEN has no learning rate


def optim4rl_from_config(cfg, ppo: PPOConfig, meta_params: dict) -> optax.GradientTransformationExtraArgs:
    """Optim4RL from its config: gradient clipping, then `optim4rl_optimizer`, then decoupled weight
    decay scaled by its learning rate where set (the study's second reading of "L2 on Optim4RL").

    Args:
      cfg: an Optim4RLConfig.
      ppo: unused (the learning rate is constant).
      meta_params: Optim4RL meta-parameters.

    Returns:
      The chained optax transformation.
    """
    del ppo
    return optax.chain(
        gradient_clipping(cfg.max_grad_norm, cfg.clip_elementwise),
        optim4rl_optimizer(meta_params, cfg.learning_rate, cfg.cpu_kernel),
        decoupled_weight_decay(cfg.weight_decay, cfg.learning_rate),
    )


BUILDERS: dict[str, Callable[..., optax.GradientTransformationExtraArgs]] = {
    "adam": adam_from_config,
    "rmsprop": rmsprop_from_config,
    "open": open_from_config,
    "optim4rl": optim4rl_from_config,
}


def build_optimizer(cfg, ppo_cfg: PPOConfig, meta_params: dict | None = None) -> optax.GradientTransformationExtraArgs:
    """The optimizer a config names, with its gradient clipping in front: the one seam every
    PPO run goes through.

    Args:
      cfg: an optimizer config (`TrainConfig.optimizer`).
      ppo_cfg: the PPO config (Adam's and RMSProp's learning-rate schedule follows its updates).
      meta_params: a learned optimizer's meta-parameters; None: load `cfg.meta_params`.

    Returns:
      An `optax.GradientTransformationExtraArgs` (update takes training_progress, key, ...).

    Raises:
      ValueError: meta-parameters for Adam/RMSProp, or none for a learned optimizer.
    """
    if cfg.name not in LEARNED_OPTIMIZERS:
        if meta_params is not None:
            raise ValueError(f"{cfg.name} takes no meta-parameters")
        return BUILDERS[cfg.name](cfg, ppo_cfg)
    if meta_params is None:
        if cfg.meta_params is None:
            raise ValueError(f"optimizer.meta_params: {cfg.name} needs trained meta-parameters; pass --meta-params FILE")
        _, meta_params = load_meta_params(cfg.meta_params, cfg.name)
    return BUILDERS[cfg.name](cfg, ppo_cfg, meta_params)

"""Optimizers for the PPO loop: every one an `optax.GradientTransformationExtraArgs`.

`build_optimizer(cfg, ppo_cfg)` is the single seam; the loop never asks which one it has.
"""

from __future__ import annotations

from typing import Callable

import optax

from metaopt.config import PPOConfig
from metaopt.optimizers.baselines import adam_from_config, rmsprop_from_config
from metaopt.optimizers.common import clip_by_global_norm_per_network, ppo_lr_schedule

__all__ = ["build_optimizer", "clip_by_global_norm_per_network", "ppo_lr_schedule", "BUILDERS"]

BUILDERS: dict[str, Callable[..., optax.GradientTransformationExtraArgs]] = {
    "adam": adam_from_config,
    "rmsprop": rmsprop_from_config,
}


def build_optimizer(cfg, ppo_cfg: PPOConfig) -> optax.GradientTransformationExtraArgs:
    return BUILDERS[cfg.name](cfg, ppo_cfg)

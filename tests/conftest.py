"""Shared, session-scoped fixtures: compiled trainings are expensive, so tests share them."""

from __future__ import annotations

import pytest

from metaopt.config import load_train_config

# Small but real: 8192 env steps per update as published would take too long on 2 CPU cores.
TINY = {
    "ppo.num_envs": 8,
    "ppo.num_steps": 16,
    "ppo.num_minibatches": 2,
    "ppo.update_epochs": 2,
    "ppo.total_timesteps": 8 * 16 * 3,
}


@pytest.fixture(scope="session")
def tiny_breakout_cfg():
    return load_train_config(env="breakout", overrides=TINY)

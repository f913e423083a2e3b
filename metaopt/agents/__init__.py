"""RL agents trained in the inner loop: PPO (MinAtar, Brax) and A2C (Optim4RL's small tasks).

`make_agent(cfg, optimizer)` is the one entry point: A2C where `cfg.a2c` is set, else PPO; both
give the same pure functions (init, update, fresh_loss, train)."""

import optax

from metaopt.agents.a2c import make_a2c
from metaopt.agents.ppo import PPO, RunnerState, gae, make_ppo, make_train
from metaopt.config import TrainConfig

Agent = PPO  # the functions every agent gives (PPO's were the first)


def make_agent(cfg: TrainConfig, optimizer: optax.GradientTransformationExtraArgs) -> Agent:
    """The agent `cfg` names, as pure functions.

    Args:
      cfg: the run's config; A2C where `cfg.a2c` is set, else PPO.
      optimizer: any optax transformation.

    Returns:
      The Agent (init, update, fresh_loss, train, num_updates, env).
    """
    return make_a2c(cfg, optimizer) if cfg.a2c is not None else make_ppo(cfg, optimizer)


__all__ = ["PPO", "Agent", "RunnerState", "gae", "make_a2c", "make_agent", "make_ppo", "make_train"]

"""RL agents trained in the inner loop."""

from metaopt.agents.ppo import PPO, RunnerState, gae, make_ppo, make_train

__all__ = ["PPO", "RunnerState", "gae", "make_ppo", "make_train"]

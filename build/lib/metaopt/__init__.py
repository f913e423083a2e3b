"""metaopt: meta-training learned optimizers (OPEN, Optim4RL) for reinforcement learning."""

__version__ = "0.1.0"

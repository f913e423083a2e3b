"""Trainings over seeds and optimizers, evaluation plans (Ray tasks), RL statistics, reports."""

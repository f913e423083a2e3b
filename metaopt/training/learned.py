"""How good is a trained optimizer: fresh agents (PPO or A2C) trained with it on its tasks."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from metaopt.config import MetaTrainConfig, TrainConfig
from metaopt.optimizers import build_optimizer
from metaopt.training.runs import run_training


def evaluation_configs(cfg: MetaTrainConfig, meta_params: str | Path | None) -> list[TrainConfig]:
    """One config per task: the task's evaluation agent (`TaskConfig.eval_ppo`: evaluation
    settings and budget over the meta-training ones), the learned optimizer with these
    meta-parameters (None: given to the optimizer builder instead), evaluation seeds.

    Args:
      cfg: the meta-training config.
      meta_params: a meta-parameter file for every config; None: the caller passes the meta-parameters
        to the builder.

    Returns:
      One TrainConfig per task, in task order.
    """
    t = cfg.tracking
    configs = []
    for task in cfg.tasks:
        agent = task.eval_ppo(t)
        section = {"a2c": agent} if task.a2c is not None else {"ppo": agent}
        optimizer = cfg.optimizer.model_copy(update={"meta_params": None if meta_params is None else str(meta_params)})
        if task.learning_rate is not None:  # the task's own Optim4RL step size
            optimizer = optimizer.model_copy(update={"learning_rate": task.learning_rate})
        configs.append(TrainConfig(env=task.env, **section, optimizer=optimizer, seed=t.eval_seed, num_seeds=t.eval_seeds))
    return configs


def task_final_returns(cfg: MetaTrainConfig, meta_params: str | Path | dict) -> list[np.ndarray]:
    """Per task, the per-seed final returns of fresh agents trained with these meta-parameters
    on the tasks' evaluation settings and seeds (tracking.eval_seed, eval_seeds).

    Args:
      cfg: the meta-training config (its tasks and tracking.eval_* settings).
      meta_params: a file, or the meta-parameters themselves (a Ray task gets these: it may
        run on a node without the driver's files).

    Returns:
      One array of eval_seeds final returns per task, in task order (NaN: no finished episode).
    """
    tree = meta_params if isinstance(meta_params, dict) else None
    returns = []
    for train_cfg in evaluation_configs(cfg, None if tree is not None else meta_params):
        optimizer = None if tree is None else build_optimizer(train_cfg.optimizer, train_cfg.agent, tree)
        returns.append(np.asarray(run_training(train_cfg, optimizer=optimizer).final_returns(), dtype=float))
    return returns


def combined_score(cfg: MetaTrainConfig, returns: list[np.ndarray]) -> float:
    """Mean final return over seeds; with several tasks, each divided by its reference return
    first, then averaged. NaN (no finished episode) scores -inf.

    Args:
      cfg: the meta-training config (its tasks' reference returns).
      returns: `task_final_returns`' output.

    Returns:
      The score (higher is better); -inf where no episode finished.
    """
    values = []
    for ret, task in zip(returns, cfg.tasks, strict=True):
        mean = float(np.nanmean(ret))
        # Tasks without a reference return (the gridworlds) enter raw.
        values.append(mean / task.reference if len(cfg.tasks) > 1 and task.reference is not None else mean)
    total = float(np.mean(values))
    return total if np.isfinite(total) else float("-inf")


def score(cfg: MetaTrainConfig, meta_params: str | Path | dict) -> float:
    """`combined_score` of fresh agents trained with these meta-parameters.

    Args:
      cfg: the meta-training config (its tasks and tracking.eval_* settings).
      meta_params: a file, or the meta-parameters themselves.

    Returns:
      The score (higher is better); -inf where no episode finished.
    """
    return combined_score(cfg, task_final_returns(cfg, meta_params))

"""How good is a trained optimizer: fresh agents (PPO or A2C) trained with it on its tasks."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from metaopt.config import MetaTrainConfig, TrainConfig
from metaopt.evaluation.runs import run_training
from metaopt.optimizers import build_optimizer


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


def score(cfg: MetaTrainConfig, meta_params: str | Path | dict) -> float:
    """Mean final return over seeds; with several tasks, each divided by its reference
    return first, then averaged. NaN (no finished episode) scores -inf.

    Args:
      cfg: the meta-training config (its tasks and tracking.eval_* settings).
      meta_params: a file, or the meta-parameters themselves (a Ray task gets these: it may
        run on a node without the driver's files).

    Returns:
      The score (higher is better); -inf where no episode finished.
    """
    tree = meta_params if isinstance(meta_params, dict) else None
    values = []
    for train_cfg, task in zip(evaluation_configs(cfg, None if tree is not None else meta_params), cfg.tasks):
        optimizer = None if tree is None else build_optimizer(train_cfg.optimizer, train_cfg.agent, tree)
        ret = float(np.nanmean(run_training(train_cfg, optimizer=optimizer).final_returns()))
        # Tasks without a reference return (the gridworlds) enter raw.
        values.append(ret / task.reference if len(cfg.tasks) > 1 and task.reference is not None else ret)
    total = float(np.mean(values))
    return total if np.isfinite(total) else float("-inf")

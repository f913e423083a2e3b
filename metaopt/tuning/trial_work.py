"""The work of one Tune trial, as the trial's process runs it. Imported by the trial
(`metaopt.tuning.trial_tasks`) only once it holds its cores: importing this starts JAX's CPU
backend, which sizes XLA's thread pool to them."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
from ray import tune

from metaopt.config import BaselineSweepConfig, baseline_train_config, meta_config_at
from metaopt.meta.run import config_hash, meta_train
from metaopt.tracking.mlflow_run import code_version
from metaopt.training.learned import combined_score, task_final_returns
from metaopt.training.runs import run_training
from metaopt.tuning.trial_records import SEED_KEY, read_trial_record, write_trial_record


def baseline_trial(params: dict, sweep_json: str) -> None:
    """One Tune trial: PPO with this optimizer and learning rate, all seeds of the sweep.

    Args:
      params: the trial's grid point: env, optimizer, learning_rate.
      sweep_json: the BaselineSweepConfig as JSON (trials read no files).
    """
    sweep = BaselineSweepConfig.model_validate_json(sweep_json)
    cfg = baseline_train_config(sweep, params["env"], params["optimizer"], params["learning_rate"])

    def chunk_metrics(done: int, chunk: dict[str, np.ndarray]) -> dict[str, float]:
        with np.errstate(all="ignore"):
            ret = float(np.nanmean(chunk["episode_return"]))
        return {"episode_return": ret, "env_steps": done * cfg.agent.batch_size, "updates": done}

    def on_chunk(done: int, total: int, chunk: dict[str, np.ndarray]) -> None:
        if done < total:  # the last chunk is reported below, with the final return
            tune.report(chunk_metrics(done, chunk))

    result = run_training(cfg, progress=on_chunk)
    finals = result.final_returns()
    n = result.metrics["episode_return"].shape[1]
    last = {name: values[:, -1:] for name, values in result.metrics.items()}
    tune.report({
        **chunk_metrics(n, last),
        "final_return": float(np.nanmean(finals)),
        "final_return_se": float(np.nanstd(finals, ddof=1) / np.sqrt(len(finals))) if len(finals) > 1 else 0.0,
        **{f"final_return_seed{i}": float(v) for i, v in enumerate(finals)},
        "env_steps_per_second": result.env_steps_per_second,
        "compile_seconds": result.compile_seconds,
    })


def sensitivity_trial(params: dict, base_json: str, results: str | None = None) -> None:
    """One Tune trial: meta-train at the grid point (resuming from the trial folder's checkpoints), then
    report the fresh agents' final return; a record in `results` that matches the trial's config
    is reported instead.

    Args:
      params: the grid point (dotted keys) and its meta seed (`meta_seed`).
      base_json: the base meta-training config as JSON (trials read no files).
      results: an absolute folder of trial records (read and written); None: none.
    """
    point = {k: v for k, v in params.items() if k != SEED_KEY}
    meta_seed = params[SEED_KEY]
    cfg = meta_config_at(json.loads(base_json), point, seed=meta_seed)
    key = config_hash(cfg)
    record = read_trial_record(Path(results), point, meta_seed, key) if results else None
    if record is None:
        out = Path(tune.get_context().get_trial_dir()) / "meta"

        def on_iteration(done: int, total: int, row: dict[str, float]) -> None:
            tune.report({k: v for k, v in row.items() if np.isfinite(v)})

        started = time.perf_counter()
        result = meta_train(cfg, out, progress=on_iteration, resume=True)
        trained = time.perf_counter()
        returns = task_final_returns(cfg, result.meta_params_path)
        last = result.history[-1] if result.history else {}
        record = {
            "point": point, SEED_KEY: meta_seed, "config_hash": key, "tasks": list(cfg.env_names),
            "eval_seeds": list(range(cfg.tracking.eval_seed, cfg.tracking.eval_seed + cfg.tracking.eval_seeds)),
            "final_returns": [r.tolist() for r in returns], "final_return": combined_score(cfg, returns),
            "last_iteration": {k: v for k, v in last.items() if np.isfinite(v)},
            "meta_training_s": trained - started, "evaluation_s": time.perf_counter() - trained,
            "code_version": code_version(),
        }
        if results:
            write_trial_record(Path(results), record, result.meta_params_path)
    tune.report({**record["last_iteration"], "final_return": record["final_return"],
                 "compute_s": record["meta_training_s"] + record["evaluation_s"]})

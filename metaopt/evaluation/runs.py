"""Run PPO trainings (seeds vmapped) in compiled chunks, so callers can show progress.

Chunking changes nothing numerically: chunk i runs updates [i*K, (i+1)*K) of the same
scan that `PPO.train` runs in one go. Only per-update summaries come back to the host.
"""

from __future__ import annotations

import resource
import time
from collections.abc import Callable
from dataclasses import dataclass

import jax
import numpy as np
import optax

from metaopt.agents import PPO, make_ppo
from metaopt.config import TrainConfig
from metaopt.envs import resolve_env
from metaopt.optimizers import build_optimizer

ProgressFn = Callable[[int, int, dict[str, np.ndarray]], None]  # (done, total, last chunk metrics)


@dataclass
class RunResult:
    """A finished training of `config.num_seeds` agents."""

    config: TrainConfig
    label: str
    metrics: dict[str, np.ndarray]  # name -> (seeds, updates)
    compile_seconds: float
    run_seconds: float
    env_steps: int  # over all seeds
    peak_rss_mb: float

    @property
    def env_steps_per_second(self) -> float:
        """Env steps (all seeds) per second of run time, compilation left out."""
        return self.env_steps / self.run_seconds

    @property
    def steps_axis(self) -> np.ndarray:
        """Env steps per seed after each update: the x axis of the curves."""
        batch = self.config.ppo.batch_size
        return (np.arange(self.metrics["episode_return"].shape[1]) + 1) * batch

    def final_returns(self, tail: float = 0.1) -> np.ndarray:
        """Per seed: mean return of finished episodes over the last `tail` of updates.

        Args:
          tail: the fraction of the last updates averaged over (at least one update).

        Returns:
          A (seeds,) array; NaN for a seed with no finished episode in that tail.
        """
        r = self.metrics["episode_return"]
        k = max(1, int(round(r.shape[1] * tail)))
        with np.errstate(all="ignore"):
            return np.nanmean(r[:, -k:], axis=1)


def chunk_size(num_updates: int, target_chunks: int = 25) -> int:
    """The divisor of num_updates closest to num_updates / target_chunks (one compile).

    Args:
      num_updates: PPO updates in the run.
      target_chunks: the number of chunks wanted.

    Returns:
      The chunk length in updates, a divisor of `num_updates`.
    """
    target = num_updates / target_chunks
    divisors = [d for d in range(1, num_updates + 1) if num_updates % d == 0]
    return min(divisors, key=lambda d: abs(d - target))


def run_training(
    cfg: TrainConfig,
    optimizer: optax.GradientTransformationExtraArgs | None = None,
    label: str | None = None,
    progress: ProgressFn | None = None,
) -> RunResult:
    """Train `cfg.num_seeds` PPO agents at once (vmapped) in compiled chunks of updates.

    Args:
      cfg: the run.
      optimizer: the optimizer to use; None: `build_optimizer(cfg.optimizer, cfg.ppo)`.
      label: the run's name in tables and files; None: the optimizer's name.
      progress: called after each chunk with (updates done, total, that chunk's metrics).

    Returns:
      A RunResult: per-update metrics of every seed, timings, env steps, peak memory, and the
      config with the env's resolved time limit.
    """
    cfg = cfg.model_copy(update={"env": resolve_env(cfg.env)})  # records state the real time limit
    optimizer = optimizer if optimizer is not None else build_optimizer(cfg.optimizer, cfg.ppo)
    ppo: PPO = make_ppo(cfg, optimizer)
    n, k = ppo.num_updates, chunk_size(ppo.num_updates)
    keys = jax.random.split(jax.random.key(cfg.seed), cfg.num_seeds)

    def run_chunk(state):
        return jax.lax.scan(lambda s, _: ppo.update(s), state, None, length=k)

    init = jax.jit(jax.vmap(ppo.init))
    t0 = time.perf_counter()
    state = init(keys)
    chunk = jax.jit(jax.vmap(run_chunk), donate_argnums=0).lower(state).compile()
    compile_s = time.perf_counter() - t0

    parts: list[dict[str, np.ndarray]] = []
    t0 = time.perf_counter()
    for done in range(k, n + 1, k):
        state, metrics = chunk(state)
        parts.append(jax.tree.map(np.asarray, metrics))  # blocks: progress is real time
        if progress is not None:
            progress(done, n, parts[-1])
    run_s = time.perf_counter() - t0
    metrics = {name: np.concatenate([p[name] for p in parts], axis=1) for name in parts[0]}
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    return RunResult(
        config=cfg,
        label=label or cfg.optimizer.name,
        metrics=metrics,
        compile_seconds=compile_s,
        run_seconds=run_s,
        env_steps=cfg.num_seeds * n * cfg.ppo.batch_size,
        peak_rss_mb=peak,
    )

"""Run PPO trainings (seeds vmapped) in compiled chunks, so callers can show progress and
keep the run between processes.

Chunking changes nothing numerically: chunk i runs updates [i*K, (i+1)*K) of the same
scan that `PPO.train` runs in one go. Only per-update summaries come back to the host.
After any chunk the run can be saved (`PartialRun.to_bytes`: the agents' whole state and the
metrics so far, as safetensors) and resumed later with the same compiled chunk, so a run
stopped and resumed gives the numbers of one that never stopped.
"""

from __future__ import annotations

import hashlib
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
import numpy as np
import optax

from metaopt import serialization
from metaopt.agents import Agent, make_agent
from metaopt.config import TrainConfig
from metaopt.envs import resolve_env
from metaopt.optimizers import build_optimizer
from metaopt.serialization import arrays_to_state, state_to_arrays

PARTIAL_FORMAT = "metaopt-partial-run/1"
A2C_FINAL_ENTRIES = 20  # Optim4RL's analysis: a run's final return is the mean of its last 20 logged returns

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
    resumed_at: int = 0  # the update a saved partial run was resumed at (0: run from the start)

    @property
    def env_steps_per_second(self) -> float:
        """Env steps (all seeds) per second of run time, compilation left out."""
        return self.env_steps / self.run_seconds

    @property
    def steps_axis(self) -> np.ndarray:
        """Env steps per seed after each update: the x axis of the curves."""
        batch = self.config.agent.batch_size
        return (np.arange(self.metrics["episode_return"].shape[1]) + 1) * batch

    def final_returns(self, tail: float = 0.1) -> np.ndarray:
        """Per seed: mean return of finished episodes over the last `tail` of updates. A2C runs
        (Optim4RL's small tasks) use their reference's definition instead: the mean of the last
        A2C_FINAL_ENTRIES updates in which an episode ended.

        Args:
          tail: the fraction of the last updates averaged over (at least one update); PPO only.

        Returns:
          A (seeds,) array; NaN for a seed with no finished episode in that tail.
        """
        r = self.metrics["episode_return"]
        if self.config.a2c is not None:
            return np.array([np.mean(row[~np.isnan(row)][-A2C_FINAL_ENTRIES:]) if (~np.isnan(row)).any() else np.nan
                             for row in r])
        k = max(1, int(round(r.shape[1] * tail)))
        with np.errstate(all="ignore"):
            return np.nanmean(r[:, -k:], axis=1)


class PartialRunMismatch(ValueError):
    """A saved partial run that does not belong to the run asked to resume from it."""


@dataclass
class PartialRun:
    """A run stopped between chunks: what it takes to go on with the same numbers."""

    fingerprint: str  # `run_fingerprint` of the run's config
    updates_done: int
    num_updates: int  # of the whole run
    state: Any  # the vmapped RunnerState after `updates_done` updates
    metrics: dict[str, np.ndarray]  # name -> (seeds, updates_done)
    run_seconds: float  # run time so far, compilation left out

    def to_bytes(self, metadata: dict[str, str] | None = None) -> bytes:
        """The partial run as safetensors bytes (no pickle); `metadata` travels with it.

        Args:
          metadata: extra string metadata (e.g. a plan cell's config hash).

        Returns:
          The bytes, readable by `PartialRun.from_bytes` and `serialization.metadata_from_bytes`.
        """
        flat = {f"state/{k}": v for k, v in state_to_arrays(self.state).items()}
        flat.update({f"metrics/{k}": np.asarray(v) for k, v in self.metrics.items()})
        meta = {**(metadata or {}), "format": PARTIAL_FORMAT, "fingerprint": self.fingerprint,
                "updates_done": str(self.updates_done), "num_updates": str(self.num_updates),
                "run_seconds": repr(self.run_seconds)}
        return serialization.flat_to_bytes(flat, meta)

    @classmethod
    def from_bytes(cls, data: bytes, template: Any, source: str = "partial run") -> PartialRun:
        """The inverse of `to_bytes`, its state checked against `template` (ValueError on any mismatch).

        Args:
          data: the bytes.
          template: a fresh state of the same run (structure, shapes, dtypes, PRNG key kinds).
          source: where the bytes came from, for error messages.

        Returns:
          The partial run, its state as JAX arrays.
        """
        try:
            flat, meta = serialization.flat_from_bytes(data, source)
            if meta.get("format") != PARTIAL_FORMAT:
                raise ValueError(f"{source}: not a metaopt partial run (format {meta.get('format')!r})")
            state = {k.split("/", 1)[1]: v for k, v in flat.items() if k.startswith("state/")}
            metrics = {k.split("/", 1)[1]: v for k, v in flat.items() if k.startswith("metrics/")}
            return cls(fingerprint=meta["fingerprint"], updates_done=int(meta["updates_done"]),
                       num_updates=int(meta["num_updates"]), state=arrays_to_state(state, template, source),
                       metrics=metrics, run_seconds=float(meta["run_seconds"]))
        except (KeyError, ValueError) as exc:
            raise PartialRunMismatch(str(exc)) from None


def run_fingerprint(cfg: TrainConfig, chunk: int) -> str:
    """What a partial run must share with the run resuming it: the config and the chunk length.

    Args:
      cfg: the run's config (env resolved).
      chunk: updates per compiled chunk.

    Returns:
      16 hex digits of a SHA-256.
    """
    return hashlib.sha256(f"{cfg.model_dump_json()}|chunk={chunk}".encode()).hexdigest()[:16]


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
    resume: bytes | None = None,
    checkpoint: Callable[[PartialRun], None] | None = None,
) -> RunResult:
    """Train `cfg.num_seeds` PPO agents at once (vmapped) in compiled chunks of updates.

    Args:
      cfg: the run.
      optimizer: the optimizer to use; None: `build_optimizer(cfg.optimizer, cfg.agent)`.
      label: the run's name in tables and files; None: the optimizer's name.
      progress: called after each chunk with (updates done, total, that chunk's metrics).
      resume: a `PartialRun.to_bytes()` of this same run (config and optimizer): go on from
        its update; PartialRunMismatch (a ValueError) if it belongs to another run.
      checkpoint: called after each chunk but the last with the run so far (its state is only
        valid during the call: serialise it there, e.g. `to_bytes()`).

    Returns:
      A RunResult: per-update metrics of every seed, timings, env steps, peak memory, and the
      config with the env's resolved time limit.
    """
    cfg = cfg.model_copy(update={"env": resolve_env(cfg.env)})  # records state the real time limit
    optimizer = optimizer if optimizer is not None else build_optimizer(cfg.optimizer, cfg.agent)
    ppo: Agent = make_agent(cfg, optimizer)
    n, k = ppo.num_updates, chunk_size(ppo.num_updates)
    keys = jax.random.split(jax.random.key(cfg.seed), cfg.num_seeds)

    def run_chunk(state):
        return jax.lax.scan(lambda s, _: ppo.update(s), state, None, length=k)

    fingerprint = run_fingerprint(cfg, k)
    init = jax.jit(jax.vmap(ppo.init))
    t0 = time.perf_counter()
    state = init(keys)
    parts: list[dict[str, np.ndarray]] = []
    start, prior_s = 0, 0.0
    if resume is not None:
        partial = PartialRun.from_bytes(resume, state)
        if partial.fingerprint != fingerprint or partial.updates_done % k or not 0 < partial.updates_done < n:
            raise PartialRunMismatch(f"the partial run (update {partial.updates_done}, fingerprint {partial.fingerprint}) "
                             f"is not of this run ({n} updates in chunks of {k}, fingerprint {fingerprint})")
        state, start, prior_s = partial.state, partial.updates_done, partial.run_seconds
        parts.append(partial.metrics)
    chunk = jax.jit(jax.vmap(run_chunk), donate_argnums=0).lower(state).compile()
    compile_s = time.perf_counter() - t0

    def so_far() -> dict[str, np.ndarray]:
        return {name: np.concatenate([p[name] for p in parts], axis=1) for name in parts[0]}

    t0 = time.perf_counter()
    for done in range(start + k, n + 1, k):
        state, metrics = chunk(state)
        parts.append(jax.tree.map(np.asarray, metrics))  # blocks: progress is real time
        if progress is not None:
            progress(done, n, parts[-1])
        if checkpoint is not None and done < n:
            checkpoint(PartialRun(fingerprint, done, n, state, so_far(), prior_s + time.perf_counter() - t0))
    run_s = prior_s + time.perf_counter() - t0
    metrics = so_far()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    return RunResult(
        config=cfg,
        label=label or cfg.optimizer.name,
        metrics=metrics,
        compile_seconds=compile_s,
        run_seconds=run_s,
        env_steps=cfg.num_seeds * n * cfg.agent.batch_size,
        peak_rss_mb=peak,
        resumed_at=start,
    )

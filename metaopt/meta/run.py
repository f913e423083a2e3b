"""The host loop around a meta-training engine: checkpoints, resume, a metrics file.

The engine's `step(state)` is pure (given the state, the next one is fixed), so the loop
only has to save states: a run stopped at any point and resumed from its last checkpoint
ends with exactly the numbers of a run that never stopped. Drivers that distribute the
step (Ray) pass their own engine with the same interface.

Files in `out/`: config.yaml (resolved), metrics.csv (one row per iteration),
checkpoints/ckpt_NNNNNN.safetensors, meta_params.safetensors (loadable by
`metaopt train --meta-params`), summary.json.
"""

from __future__ import annotations

import csv
import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import jax
import numpy as np
import yaml

from metaopt.config import MetaTrainConfig
from metaopt.meta.es import open_es_engine
from metaopt.meta.pipeline import pipeline_engine
from metaopt.meta.warm_start import load_warm_start
from metaopt.optimizers.learned import save_meta_params
from metaopt.tracking.checkpoints import checkpoints, latest_checkpoint, load_checkpoint, save_checkpoint, to_keep

ProgressFn = Callable[[int, int, dict[str, float]], None]  # (done, total, this iteration's row)


class Engine(Protocol):
    """What `meta_train` drives: the ES or pipeline engine, or a Ray engine with their interface.

    `init(key)` gives the first state from the run's PRNG key; `step(state)` one iteration,
    pure: (next state, that iteration's metrics); `meta_params(state)` the trained
    optimizer's meta-parameter tree.
    """

    task_names: tuple[str, ...]
    env_steps_per_iteration: int

    def init(self, key: jax.Array) -> Any: ...
    def step(self, state: Any) -> tuple[Any, dict]: ...
    def meta_params(self, state: Any) -> dict: ...


class Hooks(Protocol):
    """Observers of a run (MLflow): called after each iteration and each checkpoint. A hook
    may also define `checkpoints_removed(names: list[str])`, called after old checkpoints
    were deleted (`keep_checkpoints`).

    `iteration(row)` gets the iteration's metrics row (with `iteration` and `seconds`);
    `checkpoint(path, iteration)` the checkpoint file just written and its iteration.
    """

    def iteration(self, row: dict[str, float]) -> None: ...
    def checkpoint(self, path: Path, iteration: int) -> None: ...


def make_engine(cfg: MetaTrainConfig, init_meta_params: dict | None = None) -> Engine:
    """The method's engine; `init_meta_params` is a warm start's tree (the driver's only:
    workers never call `init`).

    Args:
      cfg: the meta-training config; its method picks the engine.
      init_meta_params: warm-start meta-parameters; None: the method's own initialisation.

    Returns:
      An ESEngine (open) or PipelineEngine (optim4rl).
    """
    if cfg.method == "open":
        return open_es_engine(cfg, init_meta_params)
    return pipeline_engine(cfg, init_meta_params)


# Bumped when a default that changes the numbers changes (the hash leaves defaults out).
CONFIG_HASH_VERSION = 1


def config_hash(cfg: MetaTrainConfig) -> str:
    """What fixes the numbers: the fields set away from their defaults, without the other
    method's section, so that a field added later (with a default that keeps today's
    behaviour) does not orphan existing checkpoints. The iteration budget, checkpoint
    period, worker layout and tracking may change between a run and its resumption.

    Args:
      cfg: the meta-training config.

    Returns:
      16 hex digits of a SHA-256.
    """
    other = "pipeline" if cfg.method == "open" else "es"
    data = cfg.model_dump(mode="json", exclude_defaults=True,
                          exclude={"iterations", "checkpoint_every", "keep_checkpoints", "distributed", "tracking", other})
    text = json.dumps({"version": CONFIG_HASH_VERSION, "config": data}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def checkpoint_scores(cfg: MetaTrainConfig, history: list[dict[str, float]]) -> dict[int, float]:
    """Iteration -> how good the state after it is (higher is better): ES's population-mean
    fitness, the pipeline's negated meta-loss.

    Args:
      cfg: the meta-training config (its method picks the metric).
      history: the metrics rows so far, each with its `iteration`.

    Returns:
      Iteration -> score, for the rows that have the metric.
    """
    key, sign = ("fitness_mean", 1.0) if cfg.method == "open" else ("meta_loss", -1.0)
    return {int(row["iteration"]): sign * row[key] for row in history if key in row}


def _prune_checkpoints(folder: Path, cfg: MetaTrainConfig, history: list[dict[str, float]], hooks) -> None:
    found = checkpoints(folder)
    keep = to_keep(list(found), cfg.keep_checkpoints, checkpoint_scores(cfg, history))
    removed = []
    for iteration, path in found.items():
        if iteration not in keep:
            path.unlink(missing_ok=True)
            removed.append(path.name)
    if removed:
        for hook in hooks:
            if hasattr(hook, "checkpoints_removed"):
                hook.checkpoints_removed(removed)


@dataclass
class MetaRunResult:
    """A finished (or stopped) meta-training run: its folder, last state, meta-parameters, metrics
    history."""

    out: Path
    state: Any
    meta_params: dict
    history: list[dict[str, float]]
    resumed_from: int
    meta_params_path: Path


def _read_history(path: Path, upto: int) -> list[dict[str, float]]:
    if not path.is_file():
        return []
    with path.open() as f:
        rows = [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f) if int(float(row["iteration"])) <= upto]
    return [{**row, "iteration": int(row["iteration"])} for row in rows]  # written back as 7, not 7.0


class _MetricsFile:
    """metrics.csv, rewritten on resume to the checkpoint's iteration, then appended."""

    def __init__(self, path: Path, history: list[dict[str, float]]):
        self.path, self.fields = path, list(history[0]) if history else None
        if history:
            self._write(history, "w")
        elif path.exists():
            path.unlink()

    def _write(self, rows, mode):
        with self.path.open(mode, newline="") as f:
            w = csv.DictWriter(f, fieldnames=self.fields)
            if mode == "w":
                w.writeheader()
            w.writerows(rows)

    def append(self, row: dict[str, float]) -> None:
        if self.fields is None:
            self.fields = list(row)
            self._write([row], "w")
        else:
            self._write([row], "a")


def meta_train(
    cfg: MetaTrainConfig,
    out: str | Path,
    *,
    engine: Engine | None = None,
    progress: ProgressFn | None = None,
    resume: bool = True,
    stop_after: int | None = None,
    hooks: Sequence[Hooks] = (),
) -> MetaRunResult:
    """Run (or resume) meta-training to `cfg.iterations`.

    Args:
      cfg: the meta-training config.
      out: the run's folder: config.yaml, metrics.csv, checkpoints/, meta_params.safetensors.
      engine: the engine to step (Ray's, a shared one in tests); None: `make_engine(cfg)`.
      progress: called after each iteration with (done, total, the iteration's metrics row).
      resume: continue from the newest checkpoint in `out` (of the same config hash).
      stop_after: end the call after that many iterations in total, as an interruption would.
      hooks: observers of iterations and checkpoints (the MLflow tracker).

    Returns:
      A MetaRunResult: folder, final state, meta-parameters, history rows, where it resumed
      from and the meta-parameters' file.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if engine is None:
        warm = load_warm_start(cfg)
        engine = make_engine(cfg, None if warm is None else warm.meta_params)
    digest = config_hash(cfg)
    meta = {"method": cfg.method, "envs": ",".join(cfg.env_names), "config_hash": digest}
    (out / "config.yaml").write_text(yaml.safe_dump(cfg.dump(), sort_keys=False))

    state, start = engine.init(jax.random.key(cfg.seed)), 0
    found = latest_checkpoint(out / "checkpoints") if resume else None
    if found is not None:
        state, start = load_checkpoint(found, state, expect={"config_hash": digest})
    history = _read_history(out / "metrics.csv", start) if start else []
    metrics_file = _MetricsFile(out / "metrics.csv", history)

    end = cfg.iterations if stop_after is None else min(cfg.iterations, stop_after)
    t_start = time.perf_counter()
    for it in range(start, end):
        t0 = time.perf_counter()
        try:
            new_state, metrics = engine.step(state)
        except (Exception, KeyboardInterrupt):
            path = save_checkpoint(out / "checkpoints", it, state, meta)  # the last good state
            for hook in hooks:
                hook.checkpoint(path, it)
            raise
        row = {"iteration": it + 1, **{k: float(np.asarray(v)) for k, v in metrics.items()}}
        seconds = time.perf_counter() - t0
        row.update(seconds=seconds, env_steps_per_second=engine.env_steps_per_iteration / seconds)
        state = new_state
        history.append(row)
        metrics_file.append(row)
        for hook in hooks:
            hook.iteration(row)
        if (it + 1) % cfg.checkpoint_every == 0 or it + 1 == end:
            path = save_checkpoint(out / "checkpoints", it + 1, state, meta)
            for hook in hooks:
                hook.checkpoint(path, it + 1)
            if cfg.keep_checkpoints is not None:
                _prune_checkpoints(out / "checkpoints", cfg, history, hooks)
        if progress is not None:
            progress(it + 1, cfg.iterations, row)

    meta_params = jax.tree.map(np.asarray, engine.meta_params(state))
    path = save_meta_params(out / "meta_params.safetensors", cfg.method, meta_params,
                            envs=meta["envs"], iterations=str(end), config_hash=digest)
    summary = {
        "method": cfg.method, "envs": cfg.env_names, "iterations": end, "resumed_from": start,
        "config_hash": digest, "seconds_this_call": time.perf_counter() - t_start,
        "last": history[-1] if history else None, "meta_params": str(path),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return MetaRunResult(out, state, meta_params, history, start, path)

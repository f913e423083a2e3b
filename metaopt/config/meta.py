"""What a meta-training run is: its tasks, the method's section (ES for OPEN, pipeline training
for Optim4RL), workers and tracking (MetaTrainConfig). Schemas only: validation reads no files."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from metaopt.config.base import PositiveFloat, PositiveInt, _Strict, format_validation_error
from metaopt.config.run import (
    A2CConfig,
    EnvConfig,
    LearnedOptimizerConfig,
    PPOConfig,
    TrainConfig,
    _check_agent,
    _MaybeA2C,
)

# ---------------------------------------------------------------------------- meta-training

# Tuned-Adam final returns (1e7 steps MinAtar, 5e7 Ant) from OPEN.md: multi-task fitness
# divides each env's return by these before averaging.
REFERENCE_RETURNS = {
    "asterix": 15.04, "freeway": 61.84, "breakout": 50.08, "space_invaders": 167.09, "ant": 6517.31,
}


def _deep_merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


class TaskConfig(_MaybeA2C):
    """One env of meta-training with its PPO settings. In YAML `env: breakout` starts from
    configs/ppo/breakout.yaml; `ppo:` and `env:` mappings given next to it override fields."""

    env: EnvConfig
    ppo: PPOConfig = PPOConfig()
    a2c: A2CConfig | None = None  # set: the task trains A2C agents (configs/a2c/ENV.yaml), `ppo` is not read
    reference_return: PositiveFloat | None = None  # None: REFERENCE_RETURNS[env]
    # Optim4RL's step size on this task (its lr scales m / sqrt(v)); None: optimizer.learning_rate.
    # Multi-task runs mixing MinAtar and Brax need their own (published: 1e-3 small tasks, 3e-4 Brax).
    learning_rate: PositiveFloat | None = None

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        """`- breakout` is short for `- env: breakout` (the loader adds the published settings)."""
        return {"env": data} if isinstance(data, str) else data

    @property
    def reference(self) -> float | None:
        """The return multi-task fitness divides by: `reference_return`, else REFERENCE_RETURNS[env]
        (None if neither)."""
        return self.reference_return if self.reference_return is not None else REFERENCE_RETURNS.get(self.env.name)

    def train_config(self, optimizer, seed: int = 0) -> TrainConfig:
        """A run of this task's env and PPO with `optimizer`.

        Args:
          optimizer: an optimizer config.
          seed: the run's seed.

        Returns:
          The TrainConfig (one seed).
        """
        return TrainConfig(env=self.env, ppo=self.ppo, a2c=self.a2c, optimizer=optimizer, seed=seed)

    @property
    def agent(self) -> PPOConfig | A2CConfig:
        """The agent's settings: `a2c` where set, else `ppo`."""
        return self.a2c if self.a2c is not None else self.ppo

    def eval_ppo(self, tracking: TrackingConfig) -> PPOConfig | A2CConfig:
        """This task's agent (PPO or A2C) for evaluating a trained optimizer: `tracking.eval_ppo`
        fields and `tracking.eval_total_timesteps` over the meta-training settings (A2C's
        reference evaluates with 64 envs per agent where meta-training gives each agent one).

        Args:
          tracking: the run's tracking settings.

        Returns:
          The validated PPOConfig or A2CConfig.
        """
        fields = {**self.agent.model_dump(), **tracking.eval_ppo}
        if tracking.eval_total_timesteps is not None:
            fields["total_timesteps"] = tracking.eval_total_timesteps
        try:
            return type(self.agent).model_validate(fields)
        except ValidationError as exc:
            raise ValueError(f"tracking.eval_ppo for {self.env.name}: {format_validation_error(exc, 'eval')}") from None

    @model_validator(mode="after")
    def _check_a2c(self) -> TaskConfig:
        _check_agent(self.env, self.a2c)
        return self


class ESConfig(_Strict):
    """evosax OpenES, settings as published for OPEN (OPEN.md)."""

    population_size: PositiveInt = 64
    # Members per compiled evaluation call. Fixed, so a population evaluated in shards
    # (locally in sequence, or on Ray workers) gives bit-identical fitnesses.
    members_per_shard: PositiveInt | None = None  # None: the whole population in one call
    # Members vmapped together inside a shard's call; chunks of that size run in sequence.
    # None: by backend, 1 on CPU (why: metaopt.meta.es.members_per_vmap), the whole shard
    # on accelerators.
    members_per_vmap: PositiveInt | None = None
    rollouts_per_member: PositiveInt = 1
    sigma_init: PositiveFloat = 0.03
    sigma_decay: Annotated[float, Field(gt=0, le=1)] = 0.999  # per generation
    learning_rate: PositiveFloat = 0.03
    lr_decay: Annotated[float, Field(gt=0, le=1)] = 0.999  # per generation
    adam_b1: Annotated[float, Field(ge=0, lt=1)] = 0.99
    adam_b2: Annotated[float, Field(ge=0, lt=1)] = 0.999
    antithetic: bool = True
    fitness_shaping: Literal["centered_rank", "z_score", "raw"] = "centered_rank"
    init: Literal["zeros", "random"] = "zeros"  # zeros: the optimizer starts as a no-op

    @property
    def shard_size(self) -> int:
        """Members per compiled evaluation call."""
        return self.members_per_shard or self.population_size

    @model_validator(mode="after")
    def _check_population(self) -> ESConfig:
        if self.antithetic and self.population_size % 2:
            raise ValueError(f"population_size={self.population_size} must be even with antithetic sampling; "
                             f"use {self.population_size + 1}")
        if self.population_size % self.shard_size:
            raise ValueError(
                f"members_per_shard={self.members_per_shard} does not divide "
                f"population_size={self.population_size}; pick a divisor"
            )
        return self


# The Optim4RL reference's meta-gradient clip values (meta_rl_catch.json): global norm 0.5 or element-wise 1.0.
REFERENCE_META_GRAD_CLIP = {"global_norm": 0.5, "elementwise": 1.0}


class PipelineConfig(_Strict):
    """Optim4RL pipeline training (OPTIM4RL.md)."""

    width: PositiveInt = 8  # agents per task, each on its own stage of training
    # Agents per compiled meta-gradient call; fixed, so any split over workers gives the
    # same meta-gradient.
    agents_per_group: PositiveInt | None = None  # None: all agents of a task in one call
    reset_interval: PositiveInt = 64  # meta-iterations between an agent's resets
    inner_updates: PositiveInt = 4  # PPO updates backpropagated through per meta-iteration
    meta_learning_rate: PositiveFloat = 1e-3
    meta_grad_clip: Literal["global_norm", "elementwise", "none"] = "global_norm"
    # Absent or null: the reference's value for the clip (global norm 0.5, element-wise 1.0), so a
    # grid over `meta_grad_clip` alone sweeps the reference's two clips.
    meta_grad_clip_value: PositiveFloat = 0.5
    l2: Annotated[float, Field(ge=0)] = 0.0  # weight of ||meta-parameters||^2 in the meta-loss
    # Each agent's meta-loss divided by its own magnitude (stop-gradient), so tasks whose losses
    # differ by orders of magnitude (MinAtar vs Brax) weigh alike. None: on with several tasks.
    normalize_meta_loss: bool | None = None
    # Each task's mean meta-gradient rescaled to exactly this global L2 norm (up or down) before
    # the tasks are averaged: the reference's `max_norm` (a rescale, not a clip). None: off.
    task_grad_rescale: PositiveFloat | None = None
    # Recompute each inner PPO update in the backward pass instead of storing it:
    # memory of one update instead of `inner_updates`, for about one more forward pass.
    rematerialize: bool = False

    @property
    def group_size(self) -> int:
        """Agents per compiled meta-gradient call."""
        return self.agents_per_group or self.width

    @model_validator(mode="before")
    @classmethod
    def _reference_clip_value(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("meta_grad_clip_value") is None:
            clip = data.get("meta_grad_clip", "global_norm")
            data = {**data, "meta_grad_clip_value": REFERENCE_META_GRAD_CLIP.get(clip, 0.5)}
        return data

    @model_validator(mode="after")
    def _check_groups(self) -> PipelineConfig:
        if self.width % self.group_size:
            raise ValueError(f"agents_per_group={self.agents_per_group} does not divide width={self.width}; pick a divisor")
        return self


class DistributedConfig(_Strict):
    """Ray actors for meta-training. Does not change the numbers: a run may resume with
    another number of workers."""

    workers: PositiveInt = 2
    cpus_per_worker: PositiveFloat = 1.0
    gpus_per_worker: Annotated[float, Field(ge=0)] = 0.0  # 1 on GPU nodes: one actor per GPU
    # A shard or group running longer is re-run on a fresh actor; an actor's first piece
    # (which compiles) gets warmup_timeout_s.
    piece_timeout_s: PositiveFloat = 1800.0
    warmup_timeout_s: PositiveFloat = 1800.0
    max_retries: Annotated[int, Field(ge=0)] = 3
    # A replacement actor the cluster has not placed by then (a lost node, no spare GPU):
    # its slot stays empty and its pieces go to the live actors (the run goes on, slower).
    replacement_timeout_s: PositiveFloat = 300.0
    # Each CPU worker claims cpus_per_worker cores of its node that no other metaopt process
    # there holds, and keeps every thread (XLA's pool included) to them: unpinned, each
    # worker's XLA threads spread over every core and contend (figures: benchmarks/README.md).
    # A worker that finds too few free cores, or has a GPU, runs unpinned. Off: the OS places
    # the threads (where jobs of other programs share the cores).
    pin_cpus: bool = True


class TrackingConfig(_Strict):
    """MLflow. Does not change the numbers."""

    uri: str | None = None  # None: $MLFLOW_TRACKING_URI, else ~/.local/share/metaopt/mlruns.db
    experiment: str = "metaopt"
    model_name: str | None = None  # registered model; None: METHOD-ENV (METHOD-multitask)
    # The champion alias moves to a new version only if it beats the current champion when
    # both train fresh agents on the same seeds.
    eval_seeds: PositiveInt = 2
    eval_total_timesteps: PositiveInt | None = None  # None: each task's own budget
    # PPO fields that differ in evaluation from meta-training (e.g. Optim4RL's Brax runs
    # evaluate with 4096 envs and 32 minibatches), applied to every task's PPO config.
    eval_ppo: dict[str, Any] = {}
    eval_seed: Annotated[int, Field(ge=0)] = 1000  # not the meta-training seeds

    @field_validator("model_name")
    @classmethod
    def _valid_name(cls, v: str | None) -> str | None:
        if v is not None and not all(c.isalnum() or c in "-_." for c in v):
            raise ValueError(f"{v!r} may only hold letters, digits, '-', '_' and '.'; e.g. open-breakout")
        return v


class MetaTrainConfig(_Strict):
    """A meta-training run: OPEN by ES or Optim4RL by pipeline training, on one or more envs."""

    method: Literal["open", "optim4rl"]
    tasks: Annotated[list[TaskConfig], Field(min_length=1)]
    optimizer: LearnedOptimizerConfig  # missing fields: configs/optimizers/METHOD.yaml
    es: ESConfig = ESConfig()
    pipeline: PipelineConfig = PipelineConfig()
    distributed: DistributedConfig = DistributedConfig()
    tracking: TrackingConfig = TrackingConfig()
    iterations: PositiveInt = 500  # ES generations or pipeline meta-iterations
    checkpoint_every: PositiveInt = 10
    # Checkpoints kept (in --out and in MLflow): the newest `keep_checkpoints` and the best one
    # (ES: highest population-mean fitness; pipeline: lowest meta-loss). None: all of them.
    keep_checkpoints: PositiveInt | None = 3
    seed: Annotated[int, Field(ge=0)] = 0
    # Warm start: the meta-parameters to start from (models:/NAME@ALIAS or models:/NAME/VERSION,
    # a saved .safetensors, or a published OPEN .npy) instead of es.init / a random init. ES
    # starts its mean there, pipeline training its meta-parameters. Method and network size
    # must match `optimizer` (checked when the file is loaded, by metaopt.meta.warm_start).
    init_from: str | None = None

    @model_validator(mode="after")
    def _check(self) -> MetaTrainConfig:
        if self.optimizer.name != self.method:
            raise ValueError(f"optimizer.name is {self.optimizer.name} but method is {self.method}; make them match")
        if self.optimizer.meta_params is not None:
            raise ValueError("optimizer.meta_params: meta-training creates the meta-parameters; remove it")
        if self.method == "open" and any(t.learning_rate is not None for t in self.tasks):
            raise ValueError("tasks[].learning_rate: OPEN sets its own step sizes; remove it")
        other = "pipeline" if self.method == "open" else "es"
        if other in self.model_fields_set:
            raise ValueError(f"{other}: not used by method {self.method}; remove the section")
        for task in self.tasks:
            task.eval_ppo(self.tracking)  # evaluation settings must validate before any compute
        if self.method == "open" and any(t.a2c is not None for t in self.tasks):
            raise ValueError("tasks[].a2c: ES meta-trains OPEN on PPO tasks (its published setting; a trained OPEN "
                             "runs under A2C); remove a2c")
        if len(self.tasks) > 1 and self.method == "open":
            missing = [t.env.name for t in self.tasks if t.reference is None]
            if missing:
                raise ValueError(f"tasks: no reference return for {missing[0]}; "
                                 "set tasks[].reference_return for multi-task fitness")
        if len(self.tasks) > 1:
            names = [t.env.name for t in self.tasks]
            if len(set(names)) != len(names):
                raise ValueError(f"tasks: {names} repeats an env; list each env once")
        return self

    @property
    def env_names(self) -> list[str]:
        """The tasks' env names, in task order."""
        return [t.env.name for t in self.tasks]

    @property
    def model_name(self) -> str:
        """tracking.model_name, else METHOD-ENV (METHOD-multitask), with -l2 for an
        L2-regularised Optim4RL run so it never becomes a version of the plain model."""
        if self.tracking.model_name:
            return self.tracking.model_name
        name = f"{self.method}-{self.env_names[0] if len(self.tasks) == 1 else 'multitask'}".replace("_", "-")
        return f"{name}-l2" if self.method == "optim4rl" and self.pipeline.l2 > 0 else name

    def dump(self) -> dict[str, Any]:
        """The resolved config as plain data that validates again (the other method's
        section left out).

        Returns:
          A JSON-compatible dict.
        """
        return self.model_dump(mode="json", exclude={"pipeline" if self.method == "open" else "es"})

__all__ = [
    "REFERENCE_RETURNS",
    "_deep_merge",
    "TaskConfig",
    "ESConfig",
    "REFERENCE_META_GRAD_CLIP",
    "PipelineConfig",
    "DistributedConfig",
    "TrackingConfig",
    "MetaTrainConfig",
]

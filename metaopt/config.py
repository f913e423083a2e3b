"""Typed, validated configuration: the one place that decides what a run is.

Everything that reaches compiled code has passed through these models, so bad input fails
here with a one-line message naming the field and the fix, before any JAX compilation.
Validation reads no files: the loaders (`load_train_config`, `load_meta_config`,
`load_sweep_config`) read the YAML in `configs/`, merge the published and optimizer defaults
in, check the files a config names, then validate; a resolved config's dump validates again
anywhere (a Ray worker on another node).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)

MINATAR_ENVS = ("breakout", "asterix", "space_invaders", "freeway")
BRAX_ENVS = ("ant", "humanoid")
# Optim4RL's own small tasks (OPTIM4RL_SMALL_TASKS.md), trained with A2C as its reference does.
GRIDWORLDS = ("small_dense_long", "small_dense_short", "big_sparse_short", "big_dense_short", "big_sparse_long",
              "big_dense_long")
SMALL_TASK_ENVS = ("catch",) + GRIDWORLDS
ENV_NAMES = MINATAR_ENVS + BRAX_ENVS + SMALL_TASK_ENVS
BRAX_BACKENDS = ("positional", "generalized", "spring", "mjx")

CONFIG_DIR = Path(__file__).resolve().parent / "configs"  # package data; ./configs in a checkout links here


class ConfigError(ValueError):
    """A one-line, user-facing description of a bad input and its fix."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


PositiveInt = Annotated[int, Field(gt=0)]
PositiveFloat = Annotated[float, Field(gt=0)]
UnitInterval = Annotated[float, Field(ge=0, le=1)]


class EnvConfig(_Strict):
    """The environment of a run."""

    name: Literal[ENV_NAMES]  # type: ignore[valid-type]
    # Brax only; default picked by benchmarks/ppo_throughput.py (see benchmarks/README.md).
    backend: Literal[BRAX_BACKENDS] = "positional"  # type: ignore[valid-type]
    # Time limit (truncation). None: the simulator's own, resolved by metaopt.envs.resolve_env
    # (gymnax's per MinAtar game: Freeway 2500, the others 1000; Brax 1000).
    episode_length: PositiveInt | None = None
    normalize_obs: bool = False
    normalize_reward: bool = False
    # Training rewards times this (after normalisation), as brax PPO's reward_scaling
    # (Optim4RL's Brax runs: 10); reported episode returns stay raw.
    reward_scale: PositiveFloat = 1.0

    @property
    def is_brax(self) -> bool:
        """Whether the env is a Brax one."""
        return self.name in BRAX_ENVS


class _AgentBase(_Strict):
    """What every agent's settings give: a rollout of num_steps in num_envs envs per update."""

    num_envs: int
    num_steps: int
    total_timesteps: int

    @property
    def batch_size(self) -> int:
        """Env steps per update: num_envs * num_steps."""
        return self.num_envs * self.num_steps

    @property
    def num_updates(self) -> int:
        """Updates in the run: total_timesteps // batch_size."""
        return self.total_timesteps // self.batch_size


class PPOConfig(_AgentBase):
    """PPO's sizes and coefficients (PureJaxRL's names)."""

    num_envs: PositiveInt = 64
    num_steps: PositiveInt = 128
    total_timesteps: PositiveInt = 10_000_000
    update_epochs: PositiveInt = 4
    num_minibatches: PositiveInt = 8
    gamma: Annotated[float, Field(gt=0, le=1)] = 0.99
    gae_lambda: UnitInterval = 0.95
    clip_eps: PositiveFloat = 0.2
    ent_coef: Annotated[float, Field(ge=0)] = 0.01
    vf_coef: Annotated[float, Field(ge=0)] = 0.5
    clip_value_loss: bool = True
    hidden_width: PositiveInt = 64
    hidden_layers: PositiveInt = 2
    # Per-network hidden widths, input side first, where actor and critic differ (Optim4RL's
    # Brax networks: policy 32x4, value 64x5). None: hidden_layers layers of hidden_width.
    actor_hidden: list[PositiveInt] | None = None
    critic_hidden: list[PositiveInt] | None = None
    activation: Literal["relu", "tanh", "swish"] = "relu"
    # The published code initialises actor and critic from one key, so their hidden layers
    # start identical (a fault, fixed here). True reproduces it, e.g. to run published OPEN
    # weights in the conditions they were meta-trained in (its effect on returns:
    # benchmarks/README.md).
    shared_init_key: bool = False
    # A hidden unit is dormant when its normalised activation score is <= this (ReDo's tau).
    dormant_threshold: Annotated[float, Field(ge=0)] = 0.1

    @property
    def actor_layers(self) -> tuple[int, ...]:
        """The actor's hidden widths, input side first."""
        return tuple(self.actor_hidden or [self.hidden_width] * self.hidden_layers)

    @property
    def critic_layers(self) -> tuple[int, ...]:
        """The critic's hidden widths, input side first."""
        return tuple(self.critic_hidden or [self.hidden_width] * self.hidden_layers)

    @model_validator(mode="after")
    def _check_layers(self) -> PPOConfig:
        for field, layers in (("actor_hidden", self.actor_layers), ("critic_hidden", self.critic_layers)):
            if len(layers) > 9:  # layer names dense_0..dense_9 sort in depth order
                raise ValueError(f"{field}: {len(layers)} hidden layers; at most 9 are supported")
        return self

    @model_validator(mode="after")
    def _check_batching(self) -> PPOConfig:
        if self.batch_size % self.num_minibatches:
            raise ValueError(
                f"num_envs*num_steps={self.batch_size} is not divisible by "
                f"num_minibatches={self.num_minibatches}; pick a divisor of {self.batch_size}"
            )
        if self.total_timesteps < self.batch_size:
            raise ValueError(
                f"total_timesteps={self.total_timesteps} is below one batch "
                f"(num_envs*num_steps={self.batch_size}); raise total_timesteps or shrink the batch"
            )
        return self


class A2CConfig(_AgentBase):
    """A2C as Optim4RL's reference runs it on Catch and the gridworlds: `num_envs` envs share one
    parameter set, each update is one `num_steps` rollout, TD(lambda) advantages without
    normalisation (timeouts count as terminal), critic weight and entropy bonus as below."""

    num_envs: PositiveInt = 64
    num_steps: PositiveInt = 20
    total_timesteps: PositiveInt = 500_000
    gamma: Annotated[float, Field(gt=0, le=1)] = 0.995
    gae_lambda: UnitInterval = 0.95
    vf_coef: Annotated[float, Field(ge=0)] = 0.5
    ent_coef: Annotated[float, Field(ge=0)] = 0.01
    # The shared torso before the actor and critic heads: "mlp" flattens the observation into one
    # Dense(hidden_width) + ReLU (Catch 256, small grids 32); "conv2x2" is the big grids' Conv(16,
    # 2x2, SAME) + ReLU, flatten, Dense(hidden_width) + ReLU, applied as the reference applies it to
    # channels-first observations: the kernel slides over (object channel, row) and takes the
    # columns as input features (OPTIM4RL_SMALL_TASKS.md section 3, reproduced on purpose).
    torso: Literal["mlp", "conv2x2"] = "mlp"
    hidden_width: PositiveInt = 256
    conv_features: PositiveInt = 16

    update_epochs: Literal[1] = 1  # one gradient step per rollout (what learning-rate schedules count)
    num_minibatches: Literal[1] = 1

    @model_validator(mode="after")
    def _check_budget(self) -> A2CConfig:
        if self.total_timesteps < self.batch_size:
            raise ValueError(f"total_timesteps={self.total_timesteps} is below one rollout "
                             f"(num_envs*num_steps={self.batch_size}); raise total_timesteps")
        return self


class _OptimizerBase(_Strict):
    # Clipping by global norm, separately for actor and critic, as in the published code.
    # None turns it off.
    max_grad_norm: PositiveFloat | None = 0.5
    # Then element-wise clipping to [-c, c] (Optim4RL's Brax runs, all optimizers: 1). None: off.
    clip_elementwise: PositiveFloat | None = None
    # Decoupled weight decay after the update: params shrink by weight_decay x the learning rate
    # (Adam/RMSProp: the scheduled one, i.e. AdamW; Optim4RL: its rate; OPEN: 1). 0: off.
    weight_decay: Annotated[float, Field(ge=0)] = 0.0

    # Fields added after results were recorded, left out of the dump at these values: configs that
    # do not use them dump and hash (finished evaluation cells, checkpoints) as before they existed.
    _LATER_FIELDS: ClassVar[dict[str, Any]] = {"weight_decay": 0.0, "inputs": "raw"}

    @model_serializer(mode="wrap")
    def _without_later_fields_at_default(self, handler):
        data = handler(self)
        if isinstance(data, dict):
            for key, value in self._LATER_FIELDS.items():
                if key in data and data[key] == value:
                    del data[key]
        return data


class AdamConfig(_OptimizerBase):
    """Adam (optax), with PPO's learning-rate annealing."""

    name: Literal["adam"] = "adam"
    learning_rate: PositiveFloat = 5e-3
    anneal_lr: bool = True
    b1: Annotated[float, Field(ge=0, lt=1)] = 0.9
    b2: Annotated[float, Field(ge=0, lt=1)] = 0.999
    eps: PositiveFloat = 1e-5


class RMSPropConfig(_OptimizerBase):
    """RMSProp (optax), with PPO's learning-rate annealing."""

    name: Literal["rmsprop"] = "rmsprop"
    learning_rate: PositiveFloat = 5e-3
    anneal_lr: bool = True
    decay: Annotated[float, Field(ge=0, lt=1)] = 0.99
    eps: PositiveFloat = 1e-5
    momentum: Annotated[float, Field(ge=0, lt=1)] = 0.0
    centered: bool = False


class _LearnedBase(_OptimizerBase):
    # Trained meta-parameters: a saved .safetensors, a published OPEN .npy, or published:ENV
    # (the shipped published OPEN weights, resolved by the loader). Meta-training
    # supplies its own and leaves this empty; `metaopt train` needs it.
    meta_params: str | None = None
    # On CPU, run the per-parameter network as a compiled kernel (optimizers/kernels/; the
    # same function to float32 rounding, for speed). False: XLA's code, as on other platforms.
    cpu_kernel: bool = True



class OpenConfig(_LearnedBase):
    """OPEN: no learning rate; the network sets step sizes. Clipping as published."""

    name: Literal["open"] = "open"
    # Network size when meta-training (small: GRU 8 / MLP 16; larger: 16 / 32, the
    # published multi-task size). A loaded file brings its own size.
    larger: bool = False


class Optim4RLConfig(_LearnedBase):
    """Optim4RL: a fixed learning rate scales the learned m / sqrt(v)."""

    name: Literal["optim4rl"] = "optim4rl"
    learning_rate: PositiveFloat = 1e-3
    max_grad_norm: PositiveFloat | None = None
    clip_elementwise: PositiveFloat | None = 1.0  # as published (Brax), before the optimizer
    hidden: PositiveInt = 8
    # The GRUs' inputs when meta-training starts: "raw" g and g^2 (the RLC 2024 code), or "log":
    # [sign(g), log|g|] and 2 log|g| (the reference's 2023 gradient processing). A loaded file
    # brings its own.
    inputs: Literal["raw", "log"] = "raw"


LearnedOptimizerConfig = Annotated[OpenConfig | Optim4RLConfig, Field(discriminator="name")]
OptimizerConfig = Annotated[
    AdamConfig | RMSPropConfig | OpenConfig | Optim4RLConfig, Field(discriminator="name")
]
OPTIMIZER_NAMES = ("adam", "rmsprop", "open", "optim4rl")
LEARNED_OPTIMIZERS = ("open", "optim4rl")
TUNABLE_OPTIMIZERS = ("adam", "rmsprop")  # `adam:tuned`: the learning rate a sweep found best
TUNED_BASELINES_FILE = CONFIG_DIR / "tuned" / "baselines.yaml"


class _MaybeA2C(_Strict):
    """A model with an optional `a2c` section, left out of its dump where unset: PPO runs dump (and
    hash: finished evaluation cells, partial runs) exactly as before A2C existed."""

    @model_serializer(mode="wrap")
    def _without_unset_a2c(self, handler):
        data = handler(self)
        if isinstance(data, dict) and data.get("a2c", 0) is None:
            del data["a2c"]
        return data


def _check_agent(env: EnvConfig, a2c: A2CConfig | None, optimizer_name: str | None) -> None:
    """A2C's constraints, shared by TrainConfig and TaskConfig."""
    if a2c is None:
        return
    if env.is_brax:
        raise ValueError(f"a2c: {env.name} has continuous actions and A2C here is for discrete ones; remove a2c to run PPO")
    if optimizer_name == "open":
        raise ValueError("optimizer: OPEN's inputs are PPO's (epochs, per-network dormancy); use PPO (remove a2c) "
                         "or another optimizer")
    if a2c.torso == "conv2x2" and env.name not in GRIDWORLDS[2:]:
        raise ValueError(f"a2c.torso: conv2x2 is the big gridworlds' torso; use mlp for {env.name}")


class TrainConfig(_MaybeA2C):
    """One training run: env, agent (PPO, or A2C where `a2c` is set), optimizer and seeds
    (`num_seeds` agents from `seed`)."""

    env: EnvConfig
    ppo: PPOConfig = PPOConfig()
    a2c: A2CConfig | None = None  # set: the run is A2C (Optim4RL's small tasks) and `ppo` is not read
    optimizer: OptimizerConfig = AdamConfig()
    seed: Annotated[int, Field(ge=0)] = 0
    num_seeds: PositiveInt = 1

    @property
    def agent(self) -> PPOConfig | A2CConfig:
        """The agent's settings: `a2c` where set, else `ppo` (both give num_envs, num_steps,
        batch_size, num_updates, total_timesteps)."""
        return self.a2c if self.a2c is not None else self.ppo

    @model_validator(mode="after")
    def _check_a2c(self) -> TrainConfig:
        _check_agent(self.env, self.a2c, self.optimizer.name)
        return self


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
        _check_agent(self.env, self.a2c, None)
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
    # Pin worker i to its own cores (cpus_per_worker of them). Meant for a machine the pool
    # has to itself (a laptop, a dedicated CPU node): unpinned, each worker's XLA threads
    # spread over every core and contend (figures: benchmarks/README.md).
    # Off, the OS places the threads: right where other jobs share the cores, or on GPU workers.
    pin_cpus: bool = False


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
            raise ValueError("tasks[].a2c: OPEN's inputs are PPO's; meta-train OPEN on PPO tasks")
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


# ---------------------------------------------------------------------------- sweeps (Ray Tune)


class SweepResources(_Strict):
    """What each trial asks Ray for: one GPU per trial on a GPU cluster, a CPU share locally."""

    cpus_per_trial: PositiveFloat = 1.0
    gpus_per_trial: Annotated[float, Field(ge=0)] = 0.0
    max_concurrent_trials: PositiveInt | None = None  # None: as many as the resources allow
    max_failures: Annotated[int, Field(ge=0)] = 2  # a crashed trial runs again (from its checkpoint)


class EarlyStoppingConfig(_Strict):
    """ASHA on the running mean return; each trial reports about 25 times during training."""

    enabled: bool = False
    grace_period: PositiveInt = 5  # reports before a trial may be stopped
    reduction_factor: Annotated[float, Field(gt=1)] = 3.0


class LogGrid(_Strict):
    """Log-spaced points from `low` to `high`, both included."""

    low: PositiveFloat
    high: PositiveFloat
    points: PositiveInt

    @model_validator(mode="after")
    def _check(self) -> LogGrid:
        if self.high < self.low:
            raise ValueError(f"high {self.high} is below low {self.low}; swap them")
        if self.points == 1 and self.high != self.low:
            raise ValueError("points is 1 but low != high; use points >= 2 or low == high")
        return self

    @property
    def values(self) -> list[float]:
        """The grid's points, rounded to 6 significant digits."""
        if self.points == 1:
            return [self.low]
        ratio = (self.high / self.low) ** (1 / (self.points - 1))
        return [float(f"{self.low * ratio ** i:.6g}") for i in range(self.points)]


def _check_sweep_name(v: str) -> str:
    if not v or not all(c.isalnum() or c in "-_" for c in v):
        raise ValueError(f"{v!r} names the sweep's folder: use letters, digits, '-' and '_'")
    return v


def _check_env_list(v: list[str]) -> list[str]:
    for env in v:
        if env not in ENV_NAMES:
            raise ValueError(f"unknown env {env!r}; choose from {', '.join(ENV_NAMES)}")
    if len(set(v)) != len(v):
        raise ValueError(f"{v} repeats an env; list each once")
    return v


STORAGE_SCHEMES = ("s3", "gs", "gcs")  # object stores whose URIs are bucket/key paths (pyarrow)


def _check_storage(v: str) -> str:
    if "://" in v:
        scheme, rest = v.split("://", 1)
        if scheme not in STORAGE_SCHEMES:
            raise ValueError(f"scheme {scheme!r} is not one pyarrow stores Tune experiments on; use "
                             f"{', '.join(s + '://' for s in STORAGE_SCHEMES)} or a folder")
        if not rest.strip("/"):
            raise ValueError(f"{v!r} names no bucket; give e.g. s3://BUCKET/tune")
        if "?" in rest:
            raise ValueError(f"{v!r} carries query options; set them in the environment instead (AWS_ENDPOINT_URL, ...)")
    return v


FolderName = Annotated[str, AfterValidator(_check_sweep_name)]  # names an output folder
# Where Ray Tune keeps a sweep: a folder, or an object-store URI (s3://BUCKET/PREFIX) so that a
# cluster's nodes need no shared file system. Credentials and AWS_ENDPOINT_URL (MinIO) come
# from the environment.
StorageLocation = Annotated[str, AfterValidator(_check_storage)]
EnvList = Annotated[list[str], Field(min_length=1), AfterValidator(_check_env_list)]


class BaselineSweepConfig(_Strict):
    """Learning-rate sweeps of Adam and RMSProp per env (ray_jobs/tune_baselines.py): one
    trial per (env, optimizer, learning rate), its seeds vmapped inside the trial."""

    name: FolderName = "baselines"
    envs: EnvList
    optimizers: Annotated[list[Literal["adam", "rmsprop"]], Field(min_length=1)] = ["adam", "rmsprop"]
    learning_rates: LogGrid = LogGrid(low=1e-4, high=1e-2, points=5)
    seeds: PositiveInt = 4
    seed: Annotated[int, Field(ge=0)] = 0
    ppo: dict[str, Any] = {}  # fields of every PPO env's configs/ppo/ENV.yaml to override
    a2c: dict[str, Any] = {}  # fields of every A2C env's configs/a2c/ENV.yaml (Catch, the gridworlds) to override

    def agent_overrides(self, env: str) -> dict[str, Any]:
        """`agent.X` overrides for `env`: the `a2c` fields for an A2C env, else the `ppo` fields."""
        return {f"agent.{k}": v for k, v in (self.a2c if env in SMALL_TASK_ENVS else self.ppo).items()}
    early_stopping: EarlyStoppingConfig = EarlyStoppingConfig()
    resources: SweepResources = SweepResources()
    tracking: TrackingConfig = TrackingConfig(experiment="metaopt-tune")
    tuned_file: str | None = None  # None: configs/tuned/baselines.yaml
    storage: StorageLocation | None = None  # None: the --out folder

    def check_runs(self) -> None:
        """Every trial's run validates (reads the envs' config files); the loader calls it."""
        for env in self.envs:
            for optimizer in self.optimizers:
                self.train_config(env, optimizer, self.learning_rates.low)

    def train_config(self, env: str, optimizer: str, learning_rate: float) -> TrainConfig:
        """The run of one trial.

        Args:
          env: an env name of `envs`.
          optimizer: "adam" or "rmsprop".
          learning_rate: the trial's learning rate.

        Returns:
          A TrainConfig with the sweep's seeds and PPO overrides (reads configs/ppo/ENV.yaml).
        """
        overrides = self.agent_overrides(env)
        overrides.update({"optimizer.learning_rate": learning_rate, "seed": self.seed, "num_seeds": self.seeds})
        return load_train_config(env=env, optimizer=optimizer, overrides=overrides)

    @property
    def tuned_path(self) -> Path:
        """The tuned-baselines file the sweep writes."""
        return Path(self.tuned_file) if self.tuned_file is not None else TUNED_BASELINES_FILE


class SensitivitySweepConfig(_Strict):
    """A grid over meta-hyperparameters (ray_jobs/tune_sensitivity.py): each trial
    meta-trains from `base` with its grid point, then trains fresh agents with the result
    (the base config's tracking.eval_* settings) and reports their final return."""

    name: FolderName = "sensitivity"
    base: str  # a meta-training config, e.g. configs/meta/optim4rl_breakout_smoke.yaml
    overrides: dict[str, Any] = {}  # dotted keys applied to `base` before the grid point
    # 2 or 3 dotted keys of the meta-training config: heatmap rows, columns, and panels.
    grid: dict[str, Annotated[list[Any], Field(min_length=1)]]
    meta_seeds: PositiveInt = 1  # meta-training runs per grid point (seeds 0..k-1), averaged
    # A folder (committed, or on shared storage) where each finished trial leaves its record and
    # meta-parameters; a trial whose record matches its config is reported, not re-run. None: off.
    results: str | None = None
    baselines_csv: str | None = None  # a baseline sweep's trials.csv: adds its spread to the figure
    resources: SweepResources = SweepResources()
    tracking: TrackingConfig = TrackingConfig(experiment="metaopt-tune")
    storage: StorageLocation | None = None  # None: the --out folder

    @field_validator("grid")
    @classmethod
    def _two_or_three_axes(cls, v: dict[str, list[Any]]) -> dict[str, list[Any]]:
        if not 2 <= len(v) <= 3:
            raise ValueError(f"has {len(v)} keys; give 2 (a heatmap) or 3 (heatmaps side by side)")
        return v

    def check_points(self) -> None:
        """`base` and `baselines_csv` exist and every grid point gives a valid meta-training
        config (reads files); the loader calls it.

        Raises:
          ConfigError: one line naming the field or the grid point.
        """
        import itertools

        for name in ("base", "baselines_csv"):
            path = getattr(self, name)
            if path is not None and not Path(path).is_file():
                raise ConfigError(f"{name}: file {path} does not exist; give an existing file (configs/meta/ for base)")
        base = self.base_config()
        for values in itertools.product(*self.grid.values()):
            point = dict(zip(self.grid, values))
            try:
                self.meta_config(point, seed=0, base=base)
            except ConfigError as exc:
                shown = ", ".join(f"{k}={v}" for k, v in point.items())
                raise ConfigError(f"grid point {shown}: {exc}") from None

    def base_config(self) -> dict[str, Any]:
        """`base` with `overrides`, as plain data: what trials start from (they read no files,
        so they run on any node of a cluster).

        Returns:
          The resolved config's `dump()`.
        """
        return load_meta_config(self.base, self.overrides).dump()

    def meta_config(self, point: dict[str, Any], seed: int, base: dict[str, Any] | None = None) -> MetaTrainConfig:
        """The meta-training config of one grid point and seed.

        Args:
          point: dotted key -> value, one value per grid axis.
          seed: the meta-training seed.
          base: `base_config()` if already at hand; None: computed here (reads files).

        Returns:
          The validated MetaTrainConfig.
        """
        return meta_config_at(self.base_config() if base is None else base, point, seed, source=self.base)


class PlanOptimizer(_Strict):
    """One optimizer of an evaluation plan (the short form is just `optimizer`)."""

    optimizer: str  # adam, rmsprop, adam:tuned, rmsprop:tuned, open, optim4rl or models:/NAME@ALIAS
    label: str | None = None  # row name in tables; default: `optimizer`
    # open/optim4rl: a .safetensors, a published OPEN .npy or published:NAME; "{env}" becomes the
    # cell's env (published:{env}: each game's own published OPEN).
    meta_params: str | None = None
    # The envs it was meta-trained on (the generalisation matrix marks the others held out);
    # ["{env}"]: the cell's own env. None: a hand-designed optimizer.
    trained_on: list[str] | None = None
    set: dict[str, Any] = {}  # optimizer fields to override, e.g. {learning_rate: 3e-4}

    @model_validator(mode="after")
    def _check(self) -> PlanOptimizer:
        base = self.optimizer.partition(":")[0]
        if not self.optimizer.startswith("models:/") and base not in OPTIMIZER_NAMES:
            raise ValueError(f"unknown optimizer {self.optimizer!r}; choose from {', '.join(OPTIMIZER_NAMES)}, "
                             "adam:tuned, rmsprop:tuned or models:/NAME@ALIAS")
        if self.meta_params is not None and base not in LEARNED_OPTIMIZERS:
            raise ValueError(f"{self.optimizer} takes no meta_params; remove it")
        if base in LEARNED_OPTIMIZERS and self.meta_params is None:
            raise ValueError(f"{self.optimizer} needs meta_params (a file or published:NAME)")
        for env in self.trained_on or []:
            if env not in ENV_NAMES and env != "{env}":
                raise ValueError(f"trained_on: unknown env {env!r}; choose from {', '.join(ENV_NAMES)} or {{env}}")
        return self

    @property
    def name(self) -> str:
        """The optimizer's label in tables: `label`, else `optimizer`."""
        return self.label or self.optimizer


class EvalResources(_Strict):
    """What each (optimizer, env) cell asks Ray for; its seeds are vmapped inside it."""

    cpus_per_cell: PositiveFloat = 1.0
    gpus_per_cell: Annotated[float, Field(ge=0)] | None = None  # None: 1 where the cluster has GPUs, else 0


class EvalPlanConfig(_Strict):
    """An evaluation plan (configs/eval/*.yaml): every optimizer trains fresh PPO agents on
    every env, `seeds` seeds each, at one budget; scores are normalised per env by
    `normalise_by`'s interquartile mean from the same plan. Checked without reading files;
    `metaopt.evaluation.plan.resolve_cells` loads what the cells need."""

    name: FolderName
    # The report's section: main comparison, ant reproduction, generalisation, L2 ablation.
    section: Literal["main", "ant", "generalisation", "l2", "other"] = "main"
    envs: EnvList
    optimizers: Annotated[list[PlanOptimizer], Field(min_length=1)]  # a string is short for {optimizer: ...}
    seeds: PositiveInt = 16
    seed: Annotated[int, Field(ge=0)] = 0  # base seed; cells of one env share seeds
    # Env steps per seed; a number for every env or {env: steps}; None: each env's published budget.
    total_timesteps: PositiveInt | dict[str, PositiveInt] | None = None
    ppo: dict[str, Any] = {}  # fields of every PPO env's configs/ppo/ENV.yaml to override
    a2c: dict[str, Any] = {}  # fields of every A2C env's configs/a2c/ENV.yaml (Catch, the gridworlds) to override

    def agent_overrides(self, env: str) -> dict[str, Any]:
        """`agent.X` overrides for `env`: the `a2c` fields for an A2C env, else the `ppo` fields."""
        return {f"agent.{k}": v for k, v in (self.a2c if env in SMALL_TASK_ENVS else self.ppo).items()}
    tuned_file: str | None = None  # for adam:tuned / rmsprop:tuned; None: configs/tuned/baselines.yaml
    normalise_by: str | None = "adam:tuned"  # a label of `optimizers`; None: raw returns only
    # Other plans' results folders: a finished cell there with the same config (hash) is copied
    # here instead of being trained again (the same run; its cell.json says where it came from).
    reuse_from: list[str] = []
    resources: EvalResources = EvalResources()
    # Every this many seconds the driver prints a line per running cell and saves their partial runs.
    progress_every_s: PositiveFloat = 60.0
    tracking: TrackingConfig = TrackingConfig(experiment="metaopt-eval")

    @field_validator("optimizers", mode="before")
    @classmethod
    def _long_form(cls, v: Any) -> Any:
        return [{"optimizer": o} if isinstance(o, str) else o for o in v] if isinstance(v, list) else v

    @field_validator("optimizers")
    @classmethod
    def _distinct_labels(cls, v: list[PlanOptimizer]) -> list[PlanOptimizer]:
        names = [e.name for e in v]
        for name in names:
            if names.count(name) > 1:
                raise ValueError(f"two optimizers are labelled {name!r}; give each a distinct label")
        return v

    @model_validator(mode="after")
    def _check(self) -> EvalPlanConfig:
        if self.normalise_by is not None and self.normalise_by not in self.labels:
            raise ValueError(f"normalise_by: {self.normalise_by!r} is not a label of optimizers "
                             f"({', '.join(self.labels)}); add it or set normalise_by: null")
        if isinstance(self.total_timesteps, dict):
            missing = [env for env in self.envs if env not in self.total_timesteps]
            if missing:
                raise ValueError(f"total_timesteps: no budget for {missing[0]}; give every env one or one number")
        return self

    @property
    def labels(self) -> list[str]:
        """The optimizers' labels, in plan order."""
        return [o.name for o in self.optimizers]

    def budget(self, env: str) -> int | None:
        """The env steps per seed the plan sets for `env`.

        Args:
          env: an env name of `envs`.

        Returns:
          The budget; None: the env's published one.
        """
        return self.total_timesteps.get(env) if isinstance(self.total_timesteps, dict) else self.total_timesteps


# ---------------------------------------------------------------------------- loading


def _fix_for(err: dict[str, Any]) -> str:
    kind, ctx = err["type"], err.get("ctx", {})
    if kind == "literal_error":
        return f"choose one of {ctx.get('expected')}"
    if kind == "union_tag_invalid":
        return f"choose one of {ctx.get('expected_tags')}"
    if kind == "extra_forbidden":
        return "remove it or fix its spelling"
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        return "use a value in range"
    if kind == "missing":
        return "add it"
    return "fix the value"


def format_validation_error(exc: ValidationError, source: str = "config") -> str:
    """One line: the first offending field, what is wrong, and the fix.

    Args:
      exc: the pydantic error.
      source: where the config came from (a file name), the message's prefix.

    Returns:
      The message.
    """
    err = exc.errors()[0]
    loc = [str(p) for p in err["loc"] if not str(p).startswith("function-")]
    if len(loc) > 2 and loc[0] == "optimizer" and loc[1] in OPTIMIZER_NAMES:
        del loc[1]  # the discriminated-union tag is not part of the user's dotted path
    field = ".".join(loc)
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "value_error":  # our own validators already state the fix
        return f"{source}: {field}: {msg}" if field else f"{source}: {msg}"
    got = err.get("input")
    got_txt = f" (got {got!r})" if not isinstance(got, dict) and got is not None else ""
    return f"{source}: {field}: {msg}{got_txt}; {_fix_for(err)}"


def set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    """`tree["ppo"]["num_envs"] = value` from "ppo.num_envs"; replaces whole sections too.

    Args:
      tree: nested dicts, changed in place; missing sections are created.
      dotted: the key path, e.g. "ppo.num_envs".
      value: the value to set.
    """
    keys = dotted.split(".")
    node = tree
    for k in keys[:-1]:
        node = node.setdefault(k, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {dotted}: {k} is not a section; check the key")
    node[keys[-1]] = value


def read_yaml(path: str | Path) -> dict[str, Any]:
    """A YAML config file's top-level mapping (an empty file gives {}).

    Args:
      path: the file.

    Returns:
      The mapping.
    """
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {p} does not exist; pass an existing YAML file (see configs/)")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {p} is not valid YAML ({exc.__class__.__name__}); fix its syntax") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {p} must hold a mapping at top level; see configs/ppo/breakout.yaml")
    return data


def default_config_path(env: str) -> Path:
    """The published settings of `env`: configs/ppo/ENV.yaml, or configs/a2c/ENV.yaml for
    Optim4RL's small tasks (Catch, the gridworlds).

    Args:
      env: a name of ENV_NAMES (anything else raises ConfigError).

    Returns:
      The path.
    """
    if env not in ENV_NAMES:
        raise ConfigError(f"env: unknown env {env!r}; choose one of {', '.join(ENV_NAMES)}")
    return CONFIG_DIR / ("a2c" if env in SMALL_TASK_ENVS else "ppo") / f"{env}.yaml"


# In an env's settings file, `optimizer_defaults: {NAME: {fields}}` gives an optimizer's settings on
# that task where they differ from configs/optimizers/NAME.yaml (the A2C tasks' reference runs Adam
# at 1e-3 without clipping or annealing); read when `--optimizer NAME` replaces the file's optimizer.
OPTIMIZER_DEFAULTS_KEY = "optimizer_defaults"
# An override `agent.X` sets X in the run's agent section, `a2c` or `ppo` (budgets given for any env).
AGENT_ALIAS = "agent."


def optimizer_defaults(name: str) -> dict[str, Any]:
    """configs/optimizers/NAME.yaml: an optimizer's default fields.

    Args:
      name: a name of OPTIMIZER_NAMES (anything else raises ConfigError).

    Returns:
      The fields as plain data.
    """
    if name not in OPTIMIZER_NAMES:
        raise ConfigError(f"optimizer: unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZER_NAMES)}")
    return read_yaml(CONFIG_DIR / "optimizers" / f"{name}.yaml")


def build_config(raw: dict[str, Any], source: str = "config") -> TrainConfig:
    """Plain data validated as a TrainConfig; a validation error becomes a one-line ConfigError.

    Args:
      raw: the run as plain data.
      source: where it came from, for the message.

    Returns:
      The TrainConfig.
    """
    try:
        return TrainConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source)) from None


def tuned_learning_rate(env: str, optimizer: str, tuned_file: str | Path | None = None) -> float:
    """The learning rate a baseline sweep (ray_jobs/tune_baselines.py) found best for this
    env and optimizer, from the tuned-baselines file.

    Args:
      env: an env name.
      optimizer: "adam" or "rmsprop".
      tuned_file: the tuned-baselines file; None: configs/tuned/baselines.yaml.

    Returns:
      The learning rate (raises ConfigError if the file or the entry is missing).
    """
    path = Path(tuned_file) if tuned_file is not None else TUNED_BASELINES_FILE
    fix = f"run ray_jobs/tune_baselines.py with {env} and {optimizer} in its config (see configs/tune/)"
    if not path.is_file():
        raise ConfigError(f"optimizer: {optimizer}:tuned needs the tuned-baselines file {path}, which does not exist; {fix}")
    entry = (read_yaml(path).get(env) or {}).get(optimizer)
    if not isinstance(entry, dict) or not isinstance(entry.get("learning_rate"), (int, float)):
        raise ConfigError(f"optimizer: {path} has no tuned learning rate for {optimizer} on {env}; {fix}")
    return float(entry["learning_rate"])


def load_train_config(
    *,
    env: str | None = None,
    config_file: str | Path | None = None,
    optimizer: str | None = None,
    overrides: dict[str, Any] | None = None,
    tuned_file: str | Path | None = None,
) -> TrainConfig:
    """Resolve a run: a YAML file (explicit, or the published one for `env`), then a
    different optimizer's defaults if asked (`adam:tuned` / `rmsprop:tuned`: with the
    learning rate from the tuned-baselines file), then dotted overrides; validate once.

    Args:
      env: an env name (overrides the file's); None: the file's.
      config_file: a YAML file; None: configs/ppo/ENV.yaml of `env`.
      optimizer: "adam", "rmsprop", "open", "optim4rl", "adam:tuned" or "rmsprop:tuned"; None: the
        file's.
      overrides: dotted key -> value, applied last; `agent.X` sets X in the file's agent section
        (`a2c` where the env trains A2C, else `ppo`).
      tuned_file: the tuned-baselines file for the :tuned variants; None: the shipped one.

    Returns:
      The validated TrainConfig, `published:ENV` meta-parameters resolved to the shipped file.
    """
    if config_file is None and env is None:
        raise ConfigError("env: give --env NAME or --config FILE")
    path = Path(config_file) if config_file is not None else default_config_path(env)
    raw = read_yaml(path)
    task_defaults = raw.pop(OPTIMIZER_DEFAULTS_KEY, None) or {}
    source = str(config_file) if config_file is not None else str(path.relative_to(CONFIG_DIR.parent))
    if env is not None:
        default_config_path(env)  # validates the name
        set_dotted(raw, "env.name", env)
    if optimizer is not None:
        base, _, variant = optimizer.partition(":")
        if variant and (variant != "tuned" or base not in TUNABLE_OPTIMIZERS):
            raise ConfigError(f"optimizer: unknown optimizer {optimizer!r}; the tuned variants are "
                              f"{', '.join(f'{n}:tuned' for n in TUNABLE_OPTIMIZERS)}")
        current = raw.get("optimizer") or {}
        if current.get("name") != base or variant:
            raw["optimizer"] = {**optimizer_defaults(base), **(task_defaults.get(base) or {})}
        if variant:
            env_name = (raw.get("env") or {}).get("name")
            raw["optimizer"]["learning_rate"] = tuned_learning_rate(env_name, base, tuned_file)
    agent_section = "a2c" if "a2c" in raw else "ppo"
    for key, value in (overrides or {}).items():
        if key.startswith(AGENT_ALIAS):  # agent.X: the run's own agent section (a2c or ppo)
            key = agent_section + key[len(AGENT_ALIAS) - 1:]
        set_dotted(raw, key, value)
    _resolve_published(raw.get("optimizer"))
    cfg = build_config(raw, source)
    path = getattr(cfg.optimizer, "meta_params", None)
    if path is not None and not Path(path).expanduser().is_file():
        raise ConfigError(f"{source}: optimizer.meta_params: file {path} does not exist; pass a saved .safetensors, "
                          "a published OPEN .npy or published:ENV")
    return cfg


def _resolve_published(optimizer: Any) -> None:
    """`optimizer.meta_params: published:ENV` -> the shipped file of that published OPEN."""
    if isinstance(optimizer, dict) and isinstance(optimizer.get("meta_params"), str):
        from metaopt import published

        try:
            optimizer["meta_params"] = published.resolve(optimizer["meta_params"])
        except ValueError as exc:
            raise ConfigError(f"optimizer.meta_params: {exc}") from None


def load_meta_config(path: str | Path, overrides: dict[str, Any] | None = None) -> MetaTrainConfig:
    """A meta-training config from a YAML file with dotted overrides, the config files' defaults merged
    in.

    Args:
      path: the YAML file (configs/meta/).
      overrides: dotted key -> value.

    Returns:
      The validated MetaTrainConfig.
    """
    return meta_config_at(read_yaml(path), overrides or {}, source=str(path))


def load_sweep_config(path: str | Path, model: type[_Strict], overrides: dict[str, Any] | None = None):
    """A BaselineSweepConfig, SensitivitySweepConfig or EvalPlanConfig from YAML with dotted
    overrides; a sweep's runs (or grid points) are checked against their config files too.

    Args:
      path: the YAML file.
      model: BaselineSweepConfig, SensitivitySweepConfig or EvalPlanConfig.
      overrides: dotted key -> value.

    Returns:
      The validated `model` instance.
    """
    raw = read_yaml(path)
    for key, value in (overrides or {}).items():
        set_dotted(raw, key, value)
    try:
        sweep = model.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, str(path))) from None
    if isinstance(sweep, BaselineSweepConfig):
        sweep.check_runs()
    elif isinstance(sweep, SensitivitySweepConfig):
        sweep.check_points()
    return sweep


def with_meta_defaults(raw: dict[str, Any]) -> dict[str, Any]:
    """Plain meta-training data with what the files supply: each task's published settings
    (configs/ppo/ENV.yaml) under its own `env` and `ppo` fields, and the optimizer fields not
    given from configs/optimizers/METHOD.yaml. Resolved data (a dump) comes out unchanged.

    Args:
      raw: meta-training data; not modified.

    Returns:
      A new dict.
    """
    raw = dict(raw)
    tasks = []
    for task in raw.get("tasks") or []:
        task = {"env": task} if isinstance(task, str) else task
        if isinstance(task, dict):
            env = task.get("env")
            name = env if isinstance(env, str) else env.get("name") if isinstance(env, dict) else None
            if name in ENV_NAMES:
                base = read_yaml(default_config_path(name))
                task = {**task, "env": _deep_merge(base.get("env", {}), env if isinstance(env, dict) else {}),
                        "ppo": _deep_merge(base.get("ppo", {}), task.get("ppo") or {})}
                if "a2c" in base:
                    task["a2c"] = _deep_merge(base["a2c"], task.get("a2c") or {})
        tasks.append(task)
    if "tasks" in raw:
        raw["tasks"] = tasks
    method = raw.get("method")
    given = raw.get("optimizer") or {}
    if method in LEARNED_OPTIMIZERS and isinstance(given, dict) and given.get("name", method) == method:
        raw["optimizer"] = {**optimizer_defaults(method), **given}
    return raw


def meta_config_at(raw: dict[str, Any], overrides: dict[str, Any], seed: int | None = None,
                   source: str = "config") -> MetaTrainConfig:
    """A meta-training config from plain data with dotted overrides (and a seed), the
    defaults from the config files merged in before validation.

    Args:
      raw: meta-training data; not modified.
      overrides: dotted key -> value.
      seed: the run's seed; None: the one in `raw`.
      source: where `raw` came from, for error messages.

    Returns:
      The validated MetaTrainConfig.
    """
    raw = copy.deepcopy(raw)
    for key, value in {**overrides, **({} if seed is None else {"seed": seed})}.items():
        set_dotted(raw, key, value)
    try:
        return MetaTrainConfig.model_validate(with_meta_defaults(raw))
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source)) from None

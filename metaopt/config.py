"""Typed, validated configuration: the one place that decides what a run is.

Everything that reaches compiled code has passed through these models, so bad input fails
here with a one-line message naming the field and the fix, before any JAX compilation.
YAML files in `configs/` are documents of `TrainConfig`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

MINATAR_ENVS = ("breakout", "asterix", "space_invaders", "freeway")
BRAX_ENVS = ("ant", "humanoid")
ENV_NAMES = MINATAR_ENVS + BRAX_ENVS
BRAX_BACKENDS = ("positional", "generalized", "spring", "mjx")

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"


class ConfigError(ValueError):
    """A one-line, user-facing description of a bad input and its fix."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


PositiveInt = Annotated[int, Field(gt=0)]
PositiveFloat = Annotated[float, Field(gt=0)]
UnitInterval = Annotated[float, Field(ge=0, le=1)]


class EnvConfig(_Strict):
    name: Literal[ENV_NAMES]  # type: ignore[valid-type]
    # Brax only; default picked by benchmarks/ppo_throughput.py (see benchmarks/README.md).
    backend: Literal[BRAX_BACKENDS] = "positional"  # type: ignore[valid-type]
    episode_length: PositiveInt = 1000  # time limit (truncation), MinAtar and Brax alike
    normalize_obs: bool = False
    normalize_reward: bool = False

    @property
    def is_brax(self) -> bool:
        return self.name in BRAX_ENVS


class PPOConfig(_Strict):
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
    activation: Literal["relu", "tanh"] = "relu"
    # A hidden unit is dormant when its normalised activation score is <= this (ReDo's tau).
    dormant_threshold: Annotated[float, Field(ge=0)] = 0.1

    @property
    def batch_size(self) -> int:
        return self.num_envs * self.num_steps

    @property
    def minibatch_size(self) -> int:
        return self.batch_size // self.num_minibatches

    @property
    def num_updates(self) -> int:
        return self.total_timesteps // self.batch_size

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


class _OptimizerBase(_Strict):
    # Clipping by global norm, separately for actor and critic, as in the published code.
    # None turns it off.
    max_grad_norm: PositiveFloat | None = 0.5


class AdamConfig(_OptimizerBase):
    name: Literal["adam"] = "adam"
    learning_rate: PositiveFloat = 5e-3
    anneal_lr: bool = True
    b1: Annotated[float, Field(ge=0, lt=1)] = 0.9
    b2: Annotated[float, Field(ge=0, lt=1)] = 0.999
    eps: PositiveFloat = 1e-5


class RMSPropConfig(_OptimizerBase):
    name: Literal["rmsprop"] = "rmsprop"
    learning_rate: PositiveFloat = 5e-3
    anneal_lr: bool = True
    decay: Annotated[float, Field(ge=0, lt=1)] = 0.99
    eps: PositiveFloat = 1e-5
    momentum: Annotated[float, Field(ge=0, lt=1)] = 0.0
    centered: bool = False


class _LearnedBase(_OptimizerBase):
    # Trained meta-parameters: a saved .safetensors or a published OPEN .npy. Meta-training
    # supplies its own and leaves this empty; `metaopt train` needs it.
    meta_params: str | None = None

    @field_validator("meta_params")
    @classmethod
    def _file_exists(cls, v: str | None) -> str | None:
        if v is not None and not Path(v).expanduser().is_file():
            raise ValueError(f"file {v} does not exist; pass a saved .safetensors or a published OPEN .npy")
        return v


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


LearnedOptimizerConfig = Annotated[Union[OpenConfig, Optim4RLConfig], Field(discriminator="name")]
OptimizerConfig = Annotated[
    Union[AdamConfig, RMSPropConfig, OpenConfig, Optim4RLConfig], Field(discriminator="name")
]
OPTIMIZER_NAMES = ("adam", "rmsprop", "open", "optim4rl")
LEARNED_OPTIMIZERS = ("open", "optim4rl")


class TrainConfig(_Strict):
    env: EnvConfig
    ppo: PPOConfig = PPOConfig()
    optimizer: OptimizerConfig = AdamConfig()
    seed: Annotated[int, Field(ge=0)] = 0
    num_seeds: PositiveInt = 1


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


class TaskConfig(_Strict):
    """One env of meta-training with its PPO settings. In YAML `env: breakout` starts from
    configs/ppo/breakout.yaml; `ppo:` and `env:` mappings given next to it override fields."""

    env: EnvConfig
    ppo: PPOConfig
    reference_return: PositiveFloat | None = None  # None: REFERENCE_RETURNS[env]

    @model_validator(mode="before")
    @classmethod
    def _from_published(cls, data: Any) -> Any:
        if isinstance(data, str):
            data = {"env": data}
        if not isinstance(data, dict):
            return data
        env = data.get("env")
        name = env if isinstance(env, str) else env.get("name") if isinstance(env, dict) else None
        if name not in ENV_NAMES:
            return data  # the field validator reports it
        base = read_yaml(default_config_path(name))
        env_over = env if isinstance(env, dict) else {}
        return {
            **data,
            "env": _deep_merge(base.get("env", {}), env_over),
            "ppo": _deep_merge(base.get("ppo", {}), data.get("ppo") or {}),
        }

    @property
    def reference(self) -> float | None:
        return self.reference_return if self.reference_return is not None else REFERENCE_RETURNS.get(self.env.name)

    def train_config(self, optimizer, seed: int = 0) -> TrainConfig:
        return TrainConfig(env=self.env, ppo=self.ppo, optimizer=optimizer, seed=seed)


class ESConfig(_Strict):
    """evosax OpenES, settings as published for OPEN (OPEN.md)."""

    population_size: PositiveInt = 64
    # Members per compiled evaluation call. Fixed, so a population evaluated in shards
    # (locally in sequence, or on Ray workers) gives bit-identical fitnesses.
    members_per_shard: PositiveInt | None = None  # None: the whole population in one call
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
        return self.members_per_shard or self.population_size

    @model_validator(mode="after")
    def _check_population(self) -> ESConfig:
        if self.antithetic and self.population_size % 2:
            raise ValueError(f"population_size={self.population_size} must be even with antithetic sampling; use {self.population_size + 1}")
        if self.population_size % self.shard_size:
            raise ValueError(
                f"members_per_shard={self.members_per_shard} does not divide population_size={self.population_size}; pick a divisor"
            )
        return self


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
    meta_grad_clip_value: PositiveFloat = 0.5
    l2: Annotated[float, Field(ge=0)] = 0.0  # weight of ||meta-parameters||^2 in the meta-loss
    # Recompute each inner PPO update in the backward pass instead of storing it:
    # memory of one update instead of `inner_updates`, for about one more forward pass.
    rematerialize: bool = False

    @property
    def group_size(self) -> int:
        return self.agents_per_group or self.width

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


class TrackingConfig(_Strict):
    """MLflow. Does not change the numbers."""

    uri: str | None = None  # None: $MLFLOW_TRACKING_URI, else sqlite:///<project>/mlruns.db
    experiment: str = "metaopt"
    model_name: str | None = None  # registered model; None: METHOD-ENV (METHOD-multitask)
    # The champion alias moves to a new version only if it beats the current champion when
    # both train fresh agents on the same seeds.
    eval_seeds: PositiveInt = 2
    eval_total_timesteps: PositiveInt | None = None  # None: each task's own budget
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
    seed: Annotated[int, Field(ge=0)] = 0

    @model_validator(mode="before")
    @classmethod
    def _default_optimizer(cls, data: Any) -> Any:
        """Fields not given in `optimizer` come from configs/optimizers/METHOD.yaml."""
        if isinstance(data, dict) and data.get("method") in LEARNED_OPTIMIZERS:
            given = data.get("optimizer") or {}
            if isinstance(given, dict) and given.get("name", data["method"]) == data["method"]:
                data = {**data, "optimizer": {**optimizer_defaults(data["method"]), **given}}
        return data

    @model_validator(mode="after")
    def _check(self) -> MetaTrainConfig:
        if self.optimizer.name != self.method:
            raise ValueError(f"optimizer.name is {self.optimizer.name} but method is {self.method}; make them match")
        if self.optimizer.meta_params is not None:
            raise ValueError("optimizer.meta_params: meta-training creates the meta-parameters; remove it")
        other = "pipeline" if self.method == "open" else "es"
        if other in self.model_fields_set:
            raise ValueError(f"{other}: not used by method {self.method}; remove the section")
        if len(self.tasks) > 1:
            missing = [t.env.name for t in self.tasks if t.reference is None]
            if missing:
                raise ValueError(f"tasks: no reference return for {missing[0]}; set tasks[].reference_return for multi-task fitness")
            names = [t.env.name for t in self.tasks]
            if len(set(names)) != len(names):
                raise ValueError(f"tasks: {names} repeats an env; list each env once")
        return self

    @property
    def env_names(self) -> list[str]:
        return [t.env.name for t in self.tasks]

    @property
    def model_name(self) -> str:
        if self.tracking.model_name:
            return self.tracking.model_name
        return f"{self.method}-{self.env_names[0] if len(self.tasks) == 1 else 'multitask'}".replace("_", "-")

    def dump(self) -> dict[str, Any]:
        """The resolved config as plain data that validates again (the other method's
        section left out)."""
        return self.model_dump(mode="json", exclude={"pipeline" if self.method == "open" else "es"})


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
    """One line: the first offending field, what is wrong, and the fix."""
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
    """`tree["ppo"]["num_envs"] = value` from "ppo.num_envs"; replaces whole sections too."""
    keys = dotted.split(".")
    node = tree
    for k in keys[:-1]:
        node = node.setdefault(k, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {dotted}: {k} is not a section; check the key")
    node[keys[-1]] = value


def read_yaml(path: str | Path) -> dict[str, Any]:
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
    if env not in ENV_NAMES:
        raise ConfigError(f"env: unknown env {env!r}; choose one of {', '.join(ENV_NAMES)}")
    return CONFIG_DIR / "ppo" / f"{env}.yaml"


def optimizer_defaults(name: str) -> dict[str, Any]:
    if name not in OPTIMIZER_NAMES:
        raise ConfigError(f"optimizer: unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZER_NAMES)}")
    return read_yaml(CONFIG_DIR / "optimizers" / f"{name}.yaml")


def build_config(raw: dict[str, Any], source: str = "config") -> TrainConfig:
    try:
        return TrainConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source)) from None


def load_train_config(
    *,
    env: str | None = None,
    config_file: str | Path | None = None,
    optimizer: str | None = None,
    overrides: dict[str, Any] | None = None,
) -> TrainConfig:
    """Resolve a run: a YAML file (explicit, or the published one for `env`), then a
    different optimizer's defaults if asked, then dotted overrides; validate once."""
    if config_file is None and env is None:
        raise ConfigError("env: give --env NAME or --config FILE")
    raw = read_yaml(config_file if config_file is not None else default_config_path(env))
    source = str(config_file) if config_file is not None else f"configs/ppo/{env}.yaml"
    if env is not None:
        default_config_path(env)  # validates the name
        set_dotted(raw, "env.name", env)
    if optimizer is not None:
        current = raw.get("optimizer") or {}
        if current.get("name") != optimizer:
            raw["optimizer"] = optimizer_defaults(optimizer)
    for key, value in (overrides or {}).items():
        set_dotted(raw, key, value)
    return build_config(raw, source)


def load_meta_config(path: str | Path, overrides: dict[str, Any] | None = None) -> MetaTrainConfig:
    raw = read_yaml(path)
    for key, value in (overrides or {}).items():
        set_dotted(raw, key, value)
    try:
        return MetaTrainConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, str(path))) from None

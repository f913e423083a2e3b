"""What one training run is: its env, agent (PPO or A2C), optimizer, seeds (TrainConfig).
Schemas only: validation reads no files."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, model_serializer, model_validator

from metaopt.config.base import (
    BRAX_BACKENDS,
    BRAX_ENVS,
    CONFIG_DIR,
    ENV_NAMES,
    GRIDWORLDS,
    PositiveFloat,
    PositiveInt,
    UnitInterval,
    _Strict,
)


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


def _check_agent(env: EnvConfig, a2c: A2CConfig | None) -> None:
    """A2C's constraints, shared by TrainConfig and TaskConfig."""
    if a2c is None:
        return
    if env.is_brax:
        raise ValueError(f"a2c: {env.name} has continuous actions and A2C here is for discrete ones; remove a2c to run PPO")
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
        _check_agent(self.env, self.a2c)
        return self

__all__ = [
    "EnvConfig",
    "_AgentBase",
    "PPOConfig",
    "A2CConfig",
    "_OptimizerBase",
    "AdamConfig",
    "RMSPropConfig",
    "_LearnedBase",
    "OpenConfig",
    "Optim4RLConfig",
    "LearnedOptimizerConfig",
    "OptimizerConfig",
    "TUNED_BASELINES_FILE",
    "_MaybeA2C",
    "_check_agent",
    "TrainConfig",
]

"""Evaluation plans: optimizers x envs, each cell fresh agents on the plan's seeds. Schema only."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from metaopt.config.base import (
    ENV_NAMES,
    LEARNED_OPTIMIZERS,
    OPTIMIZER_NAMES,
    SMALL_TASK_ENVS,
    PositiveFloat,
    PositiveInt,
    _Strict,
)
from metaopt.config.meta import TrackingConfig
from metaopt.config.sweeps import EnvList, FolderName


def per_env(value: Any) -> bool:
    """Whether a `set` value is one per env: a mapping whose keys are all env names."""
    return isinstance(value, dict) and bool(value) and all(k in ENV_NAMES for k in value)


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
    # Optimizer fields to override, e.g. {learning_rate: 3e-4}; a value may be one per env,
    # {learning_rate: {breakout: 1e-3, asterix: 3e-3, ...}} (each env's rate chosen on tuning seeds).
    set: dict[str, Any] = {}

    def settings_for(self, env: str) -> dict[str, Any]:
        """`set` as it applies to `env` (per-env values resolved)."""
        return {k: (v[env] if per_env(v) else v) for k, v in self.set.items()}

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
    # A CPU cell keeps to cpus_per_cell cores of its own (whole CPUs only), claimed on its node,
    # so cells side by side do not spread XLA's threads over each other's cores
    # (metaopt/distributed/cores.py). Off: the OS places the threads.
    pin_cpus: bool = True


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
    # Pairs [A, B] of labels the report also compares directly: A against B on the envs both ran
    # (e.g. one learned optimizer against another, where each is otherwise only set against Adam).
    head_to_head: list[tuple[str, str]] = []
    # What a reader needs to read this plan's numbers (a setting outside an optimizer's training,
    # where a probe is); printed under the plan's heading in the report. No numbers: they go stale.
    note: str | None = None
    # Other plans' results folders: a finished cell there with the same config (hash) is copied
    # here instead of being trained again (the same run; its cell.json says where it came from).
    reuse_from: list[str] = []
    # Results folders of this plan run on other seeds (`--set seed=S --set seeds=N --out FOLDER`):
    # their finished cells' runs join this plan's cells of the same config in the statistics (a cell
    # grows; no finished seed runs again).
    more_seeds: list[str] = []
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
        for entry in self.optimizers:
            for key, value in entry.set.items():
                missing = [env for env in self.envs if per_env(value) and env not in value]
                if missing:
                    raise ValueError(f"optimizers: {entry.name}: set.{key} has no value for {missing[0]}; "
                                     "give every env of the plan one, or one value for all")
        for pair in self.head_to_head:
            unknown = [name for name in pair if name not in self.labels]
            if unknown or pair[0] == pair[1]:
                raise ValueError(f"head_to_head: {list(pair)} must name two different labels of optimizers "
                                 f"({', '.join(self.labels)})")
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

__all__ = [
    "PlanOptimizer",
    "EvalResources",
    "EvalPlanConfig",
]

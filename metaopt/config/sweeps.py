"""Ray Tune sweeps: the baselines' learning-rate sweep and the meta-hyperparameter sensitivity
grid. Schemas only: what they resolve to (runs, grid points) is built by metaopt.config.loading."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, field_validator, model_validator

from metaopt.config.base import ENV_NAMES, SMALL_TASK_ENVS, PositiveFloat, PositiveInt, _Strict
from metaopt.config.meta import TrackingConfig
from metaopt.config.run import TUNED_BASELINES_FILE

# ---------------------------------------------------------------------------- sweeps (Ray Tune)


class SweepResources(_Strict):
    """What each trial asks Ray for: one GPU per trial on a GPU cluster, a CPU share locally."""

    cpus_per_trial: PositiveFloat = 1.0
    gpus_per_trial: Annotated[float, Field(ge=0)] = 0.0
    max_concurrent_trials: PositiveInt | None = None  # None: as many as the resources allow
    max_failures: Annotated[int, Field(ge=0)] = 2  # a crashed trial runs again (from its checkpoint)
    # A CPU trial keeps to cpus_per_trial cores of its own (whole CPUs only), claimed on its node,
    # so trials side by side do not spread XLA's threads over each other's cores
    # (metaopt/distributed/cores.py). Off: the OS places the threads.
    pin_cpus: bool = True


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

__all__ = [
    "SweepResources",
    "EarlyStoppingConfig",
    "LogGrid",
    "_check_sweep_name",
    "_check_env_list",
    "STORAGE_SCHEMES",
    "_check_storage",
    "FolderName",
    "StorageLocation",
    "EnvList",
    "BaselineSweepConfig",
    "SensitivitySweepConfig",
]

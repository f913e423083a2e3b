"""Loading configs: the one module that reads files. YAML from `configs/`, the published and
optimizer defaults merged in, dotted overrides, the files a config names checked, then validation
(the schemas themselves read nothing); what sweeps resolve to (each trial's run, each grid point's
meta-training config)."""

from __future__ import annotations

import copy
import itertools
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from metaopt import published
from metaopt.config.base import (
    CONFIG_DIR,
    ENV_NAMES,
    LEARNED_OPTIMIZERS,
    OPTIMIZER_NAMES,
    SMALL_TASK_ENVS,
    TUNABLE_OPTIMIZERS,
    ConfigError,
    _Strict,
    format_validation_error,
    set_dotted,
)
from metaopt.config.meta import MetaTrainConfig, _deep_merge
from metaopt.config.run import TUNED_BASELINES_FILE, TrainConfig
from metaopt.config.sweeps import BaselineSweepConfig, SensitivitySweepConfig


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
        check_baseline_runs(sweep)
    elif isinstance(sweep, SensitivitySweepConfig):
        check_sensitivity_points(sweep)
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


def baseline_train_config(sweep: BaselineSweepConfig, env: str, optimizer: str, learning_rate: float) -> TrainConfig:
    """The run of one baseline-sweep trial.

    Args:
      sweep: the baseline sweep.
      env: an env name of `sweep.envs`.
      optimizer: "adam" or "rmsprop".
      learning_rate: the trial's learning rate.

    Returns:
      A TrainConfig with the sweep's seeds and agent overrides (reads configs/ppo|a2c/ENV.yaml).
    """
    overrides = sweep.agent_overrides(env)
    overrides.update({"optimizer.learning_rate": learning_rate, "seed": sweep.seed, "num_seeds": sweep.seeds})
    return load_train_config(env=env, optimizer=optimizer, overrides=overrides)


def check_baseline_runs(sweep: BaselineSweepConfig) -> None:
    """Every trial's run validates (reads the envs' config files); the loader calls it."""
    for env in sweep.envs:
        for optimizer in sweep.optimizers:
            baseline_train_config(sweep, env, optimizer, sweep.learning_rates.low)


def sensitivity_base_config(sweep: SensitivitySweepConfig) -> dict[str, Any]:
    """The sweep's `base` with its `overrides`, as plain data: what trials start from (they read
    no files, so they run on any node of a cluster).

    Returns:
      The resolved config's `dump()`.
    """
    return load_meta_config(sweep.base, sweep.overrides).dump()


def sensitivity_meta_config(sweep: SensitivitySweepConfig, point: dict[str, Any], seed: int,
                            base: dict[str, Any] | None = None) -> MetaTrainConfig:
    """The meta-training config of one grid point and seed.

    Args:
      sweep: the sensitivity sweep.
      point: dotted key -> value, one value per grid axis.
      seed: the meta-training seed.
      base: `sensitivity_base_config(sweep)` if already at hand; None: computed here (reads files).

    Returns:
      The validated MetaTrainConfig.
    """
    return meta_config_at(sensitivity_base_config(sweep) if base is None else base, point, seed, source=sweep.base)


def check_sensitivity_points(sweep: SensitivitySweepConfig) -> None:
    """`base` and `baselines_csv` exist and every grid point gives a valid meta-training config
    (reads files); the loader calls it.

    Raises:
      ConfigError: one line naming the field or the grid point.
    """
    for name in ("base", "baselines_csv"):
        path = getattr(sweep, name)
        if path is not None and not Path(path).is_file():
            raise ConfigError(f"{name}: file {path} does not exist; give an existing file (configs/meta/ for base)")
    base = sensitivity_base_config(sweep)
    for values in itertools.product(*sweep.grid.values()):
        point = dict(zip(sweep.grid, values))
        try:
            sensitivity_meta_config(sweep, point, seed=0, base=base)
        except ConfigError as exc:
            shown = ", ".join(f"{k}={v}" for k, v in point.items())
            raise ConfigError(f"grid point {shown}: {exc}") from None

__all__ = [
    "read_yaml",
    "default_config_path",
    "OPTIMIZER_DEFAULTS_KEY",
    "AGENT_ALIAS",
    "optimizer_defaults",
    "build_config",
    "tuned_learning_rate",
    "load_train_config",
    "_resolve_published",
    "load_meta_config",
    "load_sweep_config",
    "with_meta_defaults",
    "meta_config_at",
    "baseline_train_config",
    "check_baseline_runs",
    "sensitivity_base_config",
    "sensitivity_meta_config",
    "check_sensitivity_points",
]

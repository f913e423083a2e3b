"""Typed, validated configuration: the one place that decides what a run is.

Everything that reaches compiled code has passed through these models, so bad input fails
here with a one-line message naming the field and the fix, before any JAX compilation.

- `base`: env names, the strict base model, ConfigError and the one-line messages;
- `run`: one training run (env, PPO or A2C, optimizer): TrainConfig;
- `meta`: meta-training (tasks, ES or pipeline, workers, tracking): MetaTrainConfig;
- `sweeps` and `plans`: Ray Tune sweeps and evaluation plans;
- `loading`: the only module that reads files: YAML in `configs/`, defaults merged in, dotted
  overrides, the files a config names checked, then validation.

Schemas read no files; a resolved config's dump validates again anywhere (a Ray worker on
another node). Everything is importable from `metaopt.config`.
"""

from metaopt.config.base import *  # noqa: F401,F403
from metaopt.config.base import __all__ as _base_all
from metaopt.config.loading import *  # noqa: F401,F403
from metaopt.config.loading import __all__ as _loading_all
from metaopt.config.meta import *  # noqa: F401,F403
from metaopt.config.meta import __all__ as _meta_all
from metaopt.config.plans import *  # noqa: F401,F403
from metaopt.config.plans import __all__ as _plans_all
from metaopt.config.run import *  # noqa: F401,F403
from metaopt.config.run import __all__ as _run_all
from metaopt.config.sweeps import *  # noqa: F401,F403
from metaopt.config.sweeps import __all__ as _sweeps_all

__all__ = [*_base_all, *_run_all, *_meta_all, *_sweeps_all, *_plans_all, *_loading_all]

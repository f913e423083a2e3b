"""The configuration's foundations: env names, the strict base model, the one-line error
(ConfigError) and how a pydantic error becomes one, dotted overrides."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

MINATAR_ENVS = ("breakout", "asterix", "space_invaders", "freeway")
BRAX_ENVS = ("ant", "humanoid")
# Optim4RL's own small tasks (OPTIM4RL_SMALL_TASKS.md), trained with A2C as its reference does.
GRIDWORLDS = ("small_dense_long", "small_dense_short", "big_sparse_short", "big_dense_short", "big_sparse_long",
              "big_dense_long")
SMALL_TASK_ENVS = ("catch",) + GRIDWORLDS
ENV_NAMES = MINATAR_ENVS + BRAX_ENVS + SMALL_TASK_ENVS
BRAX_BACKENDS = ("positional", "generalized", "spring", "mjx")
OPTIMIZER_NAMES = ("adam", "rmsprop", "open", "optim4rl")
LEARNED_OPTIMIZERS = ("open", "optim4rl")
TUNABLE_OPTIMIZERS = ("adam", "rmsprop")  # `adam:tuned`: the learning rate a sweep found best

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"  # package data; ./configs in a checkout links here


class ConfigError(ValueError):
    """A one-line, user-facing description of a bad input and its fix."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


PositiveInt = Annotated[int, Field(gt=0)]
PositiveFloat = Annotated[float, Field(gt=0)]
UnitInterval = Annotated[float, Field(ge=0, le=1)]


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

__all__ = [
    "MINATAR_ENVS",
    "BRAX_ENVS",
    "GRIDWORLDS",
    "SMALL_TASK_ENVS",
    "ENV_NAMES",
    "BRAX_BACKENDS",
    "OPTIMIZER_NAMES",
    "LEARNED_OPTIMIZERS",
    "TUNABLE_OPTIMIZERS",
    "CONFIG_DIR",
    "ConfigError",
    "_Strict",
    "PositiveInt",
    "PositiveFloat",
    "UnitInterval",
    "_fix_for",
    "format_validation_error",
    "set_dotted",
]

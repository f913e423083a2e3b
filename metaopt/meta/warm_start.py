"""Warm start: meta-training that begins from an existing optimizer.

`MetaTrainConfig.init_from` names the source: a registered model (`models:/NAME@ALIAS` or
`models:/NAME/VERSION`), a shipped published OPEN (`published:breakout`), a saved
`.safetensors`, or a published OPEN `.npy`. It is loaded
and checked here, on the driver, before anything compiles; the engines only see the tree.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from metaopt import published, registry
from metaopt.config import ConfigError, MetaTrainConfig
from metaopt.optimizers.learned import load_meta_params, size_of


@dataclass(frozen=True)
class WarmStart:
    """Meta-parameters to start meta-training from, with where they came from."""

    source: str  # as given in the config
    resolved: str  # what it pointed at when loaded: models:/NAME/VERSION or the file path
    meta_params: dict  # numpy leaves, the method's tree

    @property
    def tags(self) -> dict[str, str]:
        """Lineage for the MLflow run and the registered version."""
        return {"init_from": self.source, "init_resolved": self.resolved}


def expected_size(cfg: MetaTrainConfig) -> str:
    """The network size meta-training builds, in `learned.size_of`'s terms.

    Args:
      cfg: the meta-training config.

    Returns:
      "small" or "larger" for OPEN, the hidden size for Optim4RL.
    """
    opt = cfg.optimizer
    if cfg.method == "open":
        return "larger" if opt.larger else "small"
    return str(opt.hidden) if opt.inputs == "raw" else f"{opt.hidden}-log"


def load_warm_start(cfg: MetaTrainConfig) -> WarmStart | None:
    """Load `cfg.init_from` (None when it is not set).

    Args:
      cfg: the meta-training config.

    Returns:
      The meta-parameters with their source and resolved version.

    Raises:
      ConfigError: a missing file or model, another method's file, or another network size;
        one line naming `init_from` and the fix.
    """
    if cfg.init_from is None:
        return None
    source = cfg.init_from
    if source.startswith("models:/"):
        path, _, _ = registry.fetch(source, cfg.tracking)
        version = registry.model_version(source, cfg.tracking)
        resolved = f"models:/{version.name}/{version.version}"
    else:
        try:
            path = Path(published.resolve(source)).expanduser()
        except ValueError as exc:
            raise ConfigError(f"init_from: {exc}") from None
        if not path.is_file():
            raise ConfigError(f"init_from: file {source} does not exist; give models:/NAME@ALIAS, a saved "
                              ".safetensors or a published OPEN .npy")
        resolved = str(path.resolve())
    try:
        method, meta_params = load_meta_params(path)
    except (ValueError, OSError) as exc:
        raise ConfigError(f"init_from: {exc}") from None
    if method != cfg.method:
        raise ConfigError(f"init_from: {source} holds {method} meta-parameters; meta-training {cfg.method} "
                          f"needs {cfg.method} ones")
    size, want = size_of(method, meta_params), expected_size(cfg)
    if size != want:
        field = "optimizer.larger" if method == "open" else "optimizer.hidden and optimizer.inputs"
        hidden, _, inputs = size.partition("-")
        fix = f"larger: {str(size == 'larger').lower()}" if method == "open" else f"hidden: {hidden}, inputs: {inputs or 'raw'}"
        raise ConfigError(f"init_from: {source} is a {size} network but the config builds {want}; set {field} "
                          f"to match ({fix})")
    return WarmStart(source, resolved, meta_params)

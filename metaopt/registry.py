"""Trained optimizers from the MLflow model registry, by `models:/NAME@ALIAS` or
`models:/NAME/VERSION`.

    optimizer = metaopt.registry.load("models:/open-breakout@champion")   # optax, ready

A model version's artifact is one `meta_params.safetensors` (no pickle; method and size in
its metadata) and its tags hold the optimizer's settings (e.g. Optim4RL's learning rate),
so `load` rebuilds exactly the optimizer that was meta-trained. `latest` is MLflow's own
alias for the newest version (MLflow 3 reserves the name), so every registration moves it;
`champion` moves only when an evaluation says so (`promote_if_better`).
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter

from metaopt.config import ConfigError, LearnedOptimizerConfig, PPOConfig, TrackingConfig, optimizer_defaults

URI = re.compile(r"^models:/(?P<name>[A-Za-z0-9._-]+)(?:@(?P<alias>[A-Za-z0-9_-]+)|/(?P<version>\d+))$")
CACHE = Path.home() / ".cache" / "metaopt" / "models"
META_FILE = "meta_params.safetensors"
CHAMPION = "champion"


class RegistryError(ConfigError):
    """A bad URI, a missing model/alias/version or a broken artifact, in one line."""


class RegistryUnavailable(RuntimeError):
    """The tracking store or server cannot be reached or read (not a bad input: the CLI exits
    with its own code, 3)."""


def parse_uri(uri: str) -> tuple[str, str | None, str | None]:
    """The parts of a model URI; a RegistryError if it is not one.

    Args:
      uri: models:/NAME@ALIAS or models:/NAME/VERSION.

    Returns:
      (name, alias or None, version or None).
    """
    m = URI.match(uri)
    if not m:
        raise RegistryError(f"{uri!r} is not a model URI; use models:/NAME@ALIAS (e.g. models:/open-breakout@champion) "
                            "or models:/NAME/VERSION")
    return m.group("name"), m.group("alias"), m.group("version")


def _client(tracking: TrackingConfig | None):
    from metaopt.tracking.mlflow_run import client_for

    return client_for(tracking or TrackingConfig())


def model_version(uri: str, tracking: TrackingConfig | None = None):
    """The MLflow ModelVersion a URI names (RegistryError if missing, RegistryUnavailable if the store
    cannot be read).

    Args:
      uri: models:/NAME@ALIAS or models:/NAME/VERSION.
      tracking: the store; None: $MLFLOW_TRACKING_URI or the local default.

    Returns:
      The ModelVersion.
    """
    from mlflow.exceptions import MlflowException

    name, alias, version = parse_uri(uri)
    client = _client(tracking)
    try:
        if version is not None:
            return client.get_model_version(name, version)
        return client.get_model_version_by_alias(name, alias)
    except MlflowException as exc:
        if exc.error_code not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            first = str(exc).splitlines()[0] if str(exc) else exc.error_code
            raise RegistryUnavailable(f"{uri}: the registry at {_where(tracking)} cannot be read ({first[:300]}); "
                                      "check the tracking URI and that the server runs (`metaopt doctor`)") from None
        what = f"version {version}" if version else f"alias {alias!r}"
        raise RegistryError(f"{uri}: no {what} of model {name!r} in the registry at {_where(tracking)} "
                            f"({exc.error_code}); check the name and alias") from None


def _where(tracking: TrackingConfig | None) -> str:
    from metaopt.tracking.mlflow_run import tracking_uri

    return tracking_uri(tracking or TrackingConfig())


def fetch(uri: str, tracking: TrackingConfig | None = None) -> tuple[Path, str, dict[str, Any]]:
    """Download a version's meta-parameters (cached per tracking store, name and version) and
    check them.

    Args:
      uri: models:/NAME@ALIAS or models:/NAME/VERSION.
      tracking: the store; None: $MLFLOW_TRACKING_URI or the local default.

    Returns:
      (the local file, the method, the optimizer settings it was registered with).

    Raises:
      RegistryError: a bad URI, a missing model/alias/version or a broken artifact (exit 2).
      RegistryUnavailable: the store cannot be reached or read (exit 3).
    """
    import mlflow

    from metaopt.optimizers.learned import load_meta_params

    version = model_version(uri, tracking)
    store = hashlib.sha256(_where(tracking).encode()).hexdigest()[:12]  # same name and version, other store
    path = CACHE / store / version.name / f"{version.name}-v{version.version}.safetensors"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        mlflow.set_tracking_uri(_where(tracking))
        with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
            try:
                local = Path(mlflow.artifacts.download_artifacts(artifact_uri=version.source, dst_path=tmp))
            except Exception as exc:  # noqa: BLE001 - any store error, reported in one line
                raise RegistryError(f"{uri}: cannot download {version.source} ({type(exc).__name__}: {exc})") from None
            found = local if local.is_file() else local / META_FILE
            if not found.is_file():
                raise RegistryError(f"{uri}: the version's artifact {version.source} holds no {META_FILE}")
            found.replace(path)
    try:
        method, _ = load_meta_params(path)
    except (ValueError, FileNotFoundError) as exc:
        path.unlink(missing_ok=True)  # never keep a broken file in the cache
        raise RegistryError(f"{uri}: {exc}") from None
    settings = json.loads(version.tags.get("optimizer_config", "{}"))
    return path, method, {**optimizer_defaults(method), **settings, "name": method}


def load_meta_params(uri: str, tracking: TrackingConfig | None = None) -> tuple[str, dict]:
    """A registered version's meta-parameters (downloaded and checked by `fetch`).

    Args:
      uri: models:/NAME@ALIAS or models:/NAME/VERSION.
      tracking: the store; None: $MLFLOW_TRACKING_URI or the local default.

    Returns:
      (method, meta-parameters as numpy arrays).
    """
    from metaopt.optimizers.learned import load_meta_params as load_file

    path, method, _ = fetch(uri, tracking)
    return load_file(path, method)


def load(uri: str, tracking: TrackingConfig | None = None, ppo=None):
    """The registered optimizer, ready for an optax loop.

    Args:
      uri: models:/NAME@ALIAS or models:/NAME/VERSION.
      tracking: the store; None: $MLFLOW_TRACKING_URI or the local default.
      ppo: the PPO config it will run under (Adam-style schedules); None: the defaults.

    Returns:
      An optax transformation with its registered settings (e.g. gradient clipping).
    """
    from metaopt.optimizers import build_optimizer

    path, method, settings = fetch(uri, tracking)
    cfg = TypeAdapter(LearnedOptimizerConfig).validate_python({**settings, "meta_params": str(path)})
    return build_optimizer(cfg, ppo or PPOConfig())


def pull(uri: str, out: str | Path, tracking: TrackingConfig | None = None) -> Path:
    """Copy a registered version's meta-parameter file to `out`.

    Args:
      uri: models:/NAME@ALIAS or models:/NAME/VERSION.
      out: the file to write (its folder is created).
      tracking: the store; None: $MLFLOW_TRACKING_URI or the local default.

    Returns:
      `out` as a Path.
    """
    path, _, _ = fetch(uri, tracking)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(path, out)
    return out


def register(name: str, source: str, run_id: str | None, tags: dict[str, str], tracking: TrackingConfig | None = None):
    """A new version of `name` (created if needed); `@latest` follows automatically.

    Args:
      name: the registered model's name.
      source: the artifact URI of the version's optimizer folder.
      run_id: the MLflow run that made it (None: none).
      tags: version tags (values made strings).
      tracking: the store; None: $MLFLOW_TRACKING_URI or the local default.

    Returns:
      The new MLflow ModelVersion.
    """
    from mlflow.exceptions import MlflowException

    client = _client(tracking)
    try:
        client.create_registered_model(name, description="a learned optimizer trained by metaopt")
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    return client.create_model_version(name, source=source, run_id=run_id, tags={k: str(v) for k, v in tags.items()})


def promote_if_better(name: str, version: str, score: Callable[[str], float],
                      tracking: TrackingConfig | None = None) -> tuple[bool, float, float | None]:
    """Score the new version and the current champion (same seeds, inside `score`); move
    the champion alias if the new one is better or there is none.

    Args:
      name: the registered model.
      version: the new version.
      score: models:/NAME/VERSION -> score, higher is better.
      tracking: the store; None: $MLFLOW_TRACKING_URI or the local default.

    Returns:
      (promoted, the new version's score, the champion's score or None without a champion).
    """
    client = _client(tracking)
    new_score = score(f"models:/{name}/{version}")
    client.set_model_version_tag(name, version, "eval_score", f"{new_score:.6g}")
    # The model's aliases say whether a champion exists; a store that fails raises here and the
    # promotion stops with its cause (never read as "no champion yet").
    champion = client.get_registered_model(name).aliases.get(CHAMPION)
    old_score = None if champion is None else score(f"models:/{name}/{champion}")
    if old_score is None or new_score > old_score:
        client.set_registered_model_alias(name, CHAMPION, version)
        return True, new_score, old_score
    return False, new_score, old_score


def import_open(file: str | Path, name: str, tracking: TrackingConfig | None = None):
    """Register a published OPEN weight file (.npy) as a model version.

    Args:
      file: the published `.npy`.
      name: the registered model to add a version to.
      tracking: the store; None: $MLFLOW_TRACKING_URI or the local default.

    Returns:
      The new MLflow ModelVersion (through an import run that holds the artifact).
    """
    from metaopt.optimizers import open as open_opt
    from metaopt.optimizers.learned import save_meta_params, size_of
    from metaopt.tracking.mlflow_run import OPTIMIZER_DIR, code_version, experiment_id

    file = Path(file)
    try:
        meta_params = open_opt.load_published(file)
    except (ValueError, OSError) as exc:
        raise RegistryError(f"{file}: {exc}") from None
    tracking = tracking or TrackingConfig()
    client = _client(tracking)
    size = size_of("open", meta_params)
    run = client.create_run(experiment_id(client, tracking),
                            tags={"mlflow.runName": f"import-{file.stem}", "method": "open", "imported_from": file.name})
    with tempfile.TemporaryDirectory() as tmp:
        path = save_meta_params(Path(tmp) / META_FILE, "open", meta_params, source=file.name)
        client.log_artifact(run.info.run_id, str(path), OPTIMIZER_DIR)
    client.set_terminated(run.info.run_id)
    source = f"{run.info.artifact_uri}/{OPTIMIZER_DIR}"
    settings = {k: v for k, v in optimizer_defaults("open").items() if k != "meta_params"}
    return register(name, source, run.info.run_id, {"method": "open", "size": size, "imported_from": file.name,
                                                     "optimizer_config": json.dumps(settings),
                                                     "code_version": code_version()}, tracking)


"""`metaopt doctor`: what this machine and its services give metaopt, on one screen.

Each check returns (name, ok, detail, needed); the command exits 1 when a needed one fails:
JAX must import and compute, a Ray address that was given must answer, the MLflow tracking
store must be readable. A GPU is needed only with --require-gpu; CPU kernels never are (the
JAX path replaces them).
"""

from __future__ import annotations

import importlib.metadata as metadata
import os
import platform
import sys
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class Check:
    """One doctor line: the check's name, whether it passed, what was found, and whether metaopt needs
    it."""

    name: str
    ok: bool
    detail: str
    needed: bool = True


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def check_python() -> Check:
    """Python 3.11 or newer, with the interpreter's path and metaopt's version.

    Returns:
      The python Check.
    """
    from metaopt import __version__

    return Check("python", sys.version_info[:2] >= (3, 11),
                 f"{platform.python_version()} at {sys.executable}; metaopt {__version__}")


def check_jax(require_gpu: bool) -> list[Check]:
    """JAX imports and computes, and which devices it sees; whether a GPU is in use.

    Args:
      require_gpu: make the "gpu" check needed.

    Returns:
      [jax Check, gpu Check], or [a failed jax Check] when JAX cannot compute.
    """
    try:
        import jax
        import jax.numpy as jnp

        value = float(jax.jit(lambda x: (x * 2.0).sum())(jnp.ones(4)))
        devices = jax.devices()
    except Exception as exc:  # noqa: BLE001 - any failure is the answer
        return [Check("jax", False, f"{type(exc).__name__}: {exc}")]
    kinds = sorted({f"{d.platform}:{d.device_kind}" for d in devices})
    plugin = _version("jax-cuda12-plugin")
    checks = [Check("jax", value == 8.0, f"{jax.__version__}, backend {jax.default_backend()}, "
                    f"{len(devices)} device(s): {', '.join(kinds)}"),
              Check("gpu", jax.default_backend() == "gpu",
                    "in use" if jax.default_backend() == "gpu" else
                    ("CUDA plugin " + plugin + " installed but no GPU visible (driver? CUDA_VISIBLE_DEVICES?)"
                     if plugin else "none (CPU install; `make install-gpu` on GPU nodes)"), needed=require_gpu)]
    return checks


def check_kernels() -> Check:
    """Whether the compiled CPU kernels build here (never needed; not used off CPU).

    Returns:
      The "cpu kernels" Check.
    """
    import jax

    if jax.default_backend() != "cpu":
        return Check("cpu kernels", True, "not used: the learned optimizers run as JAX on the accelerator", needed=False)
    from metaopt.optimizers import kernels

    try:
        path = kernels.build()
    except Exception as exc:  # noqa: BLE001
        return Check("cpu kernels", False, f"cannot build ({exc}); learned optimizers run as slower pure JAX",
                     needed=False)
    return Check("cpu kernels", True, f"built: {path}", needed=False)


def check_ray(address: str | None) -> Check:
    """Whether the Ray cluster at `address` answers, and its nodes, CPUs and GPUs.

    Args:
      address: a Ray address; None: $RAY_ADDRESS, else the check is skipped (not needed).

    Returns:
      The ray Check.
    """
    address = address or os.environ.get("RAY_ADDRESS")
    if not address:
        return Check("ray", True, f"no address: jobs start an embedded local Ray ({os.cpu_count()} CPUs); "
                     "pass --ray-address or set RAY_ADDRESS to check a cluster", needed=False)
    import ray

    try:
        ray.init(address=address, log_to_driver=False, logging_level="ERROR")
        resources = ray.cluster_resources()
        nodes = [n for n in ray.nodes() if n.get("Alive")]
    except Exception as exc:  # noqa: BLE001
        return Check("ray", False, f"{address}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
    finally:
        if ray.is_initialized():
            ray.shutdown()
    return Check("ray", True, f"{address}: {len(nodes)} node(s), {resources.get('CPU', 0):g} CPUs, "
                 f"{resources.get('GPU', 0):g} GPUs")


def check_mlflow(uri: str | None) -> list[Check]:
    """Whether the MLflow tracking store and its model registry can be read.

    Args:
      uri: the tracking URI; None: $MLFLOW_TRACKING_URI or the default store.

    Returns:
      [mlflow Check], plus a registry Check when the store answers.
    """
    from metaopt.config import TrackingConfig
    from metaopt.tracking.mlflow_run import client_for, tracking_uri

    tracking = TrackingConfig(uri=uri)
    where = tracking_uri(tracking)
    # An unreachable server should fail in seconds, not after MLflow's minutes of retries.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    try:
        client = client_for(tracking)
        experiments = client.search_experiments(max_results=100)
    except Exception as exc:  # noqa: BLE001
        return [Check("mlflow", False, f"{where}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")]
    checks = [Check("mlflow", True, f"{where}: {len(experiments)} experiment(s)")]
    try:
        models = client.search_registered_models(max_results=100)
        names = ", ".join(m.name for m in models[:5]) + (" ..." if len(models) > 5 else "")
        checks.append(Check("registry", True, f"{len(models)} model(s){': ' + names if models else ''}"))
    except Exception as exc:  # noqa: BLE001
        checks.append(Check("registry", False, f"{type(exc).__name__}: {exc}"))
    return checks


def run_checks(ray_address: str | None = None, tracking_uri: str | None = None, require_gpu: bool = False,
               report: Callable[[Check], None] | None = None) -> list[Check]:
    """All checks in order; `report` sees each as soon as it is done.

    Args:
      ray_address: passed to `check_ray`.
      tracking_uri: passed to `check_mlflow`.
      require_gpu: make the GPU check needed.
      report: called with each Check as it is done; None: silent.

    Returns:
      Every Check in order (the kernel check only where JAX works).
    """
    checks: list[Check] = []

    def add(found: Check | list[Check]) -> None:
        for check in found if isinstance(found, list) else [found]:
            checks.append(check)
            if report is not None:
                report(check)

    add(check_python())
    add(check_jax(require_gpu))
    if checks[-1].ok or checks[-1].name == "gpu":
        add(check_kernels())
    add(check_ray(ray_address))
    add(check_mlflow(tracking_uri))
    return checks

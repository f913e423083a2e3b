"""How Ray processes use accelerators: each worker's JAX memory settings follow the GPU share
Ray gave it, and the driver (ES ask/tell, pipeline resets, statistics) stays on the CPU."""

from __future__ import annotations

import logging

# Of a GPU's memory, the part the processes sharing it may preallocate together.
SHARED_GPU_MEMORY = 0.9


def jax_memory_env(gpus: float) -> dict[str, str]:
    """XLA client settings for a process holding `gpus` GPUs.

    Args:
      gpus: the process's Ray GPU resource (0, a fraction, or whole GPUs).

    Returns:
      Environment variables: none for no GPU or whole GPUs (JAX's default preallocation); for
      a fraction f, preallocate f of SHARED_GPU_MEMORY, so the processes sharing a GPU fit.
    """
    if gpus <= 0 or gpus >= 1:
        return {}
    return {"XLA_PYTHON_CLIENT_PREALLOCATE": "true", "XLA_PYTHON_CLIENT_MEM_FRACTION": f"{SHARED_GPU_MEMORY * gpus:.3f}"}


def ray_options(cpus: float, gpus: float) -> dict:
    """Ray task or actor options for that share, with the matching JAX memory settings.

    Args:
      cpus: CPUs per task or actor.
      gpus: GPUs per task or actor (a fraction shares a GPU).

    Returns:
      Keyword arguments for `.options(...)`: num_cpus, num_gpus and, for a GPU fraction, a runtime_env.
    """
    options: dict = {"num_cpus": cpus, "num_gpus": gpus}
    env = jax_memory_env(gpus)
    if env:
        options["runtime_env"] = {"env_vars": env}
    return options


def keep_driver_on_cpu() -> bool:
    """Make JAX in this process (a Ray driver) use the CPU only, so it never takes GPU memory
    its workers need. Returns False where JAX has already started its backends (then nothing
    changes: in-process tests, notebooks).

    Returns:
      True when JAX was switched to the CPU.
    """
    import jax
    from jax._src import xla_bridge

    if xla_bridge.backends_are_initialized():
        logging.getLogger(__name__).info("JAX backends already started; the driver keeps them")
        return False
    jax.config.update("jax_platforms", "cpu")
    return True

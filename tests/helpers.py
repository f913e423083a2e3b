"""Constants and assertions shared by test files (test modules import this, never each other)."""

from __future__ import annotations

import socket
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

PROJECT = Path(__file__).resolve().parents[1]

# Small but real PPO: 8192 env steps per update as published would take too long on 2 CPU cores.
TINY = {
    "ppo.num_envs": 8,
    "ppo.num_steps": 16,
    "ppo.num_minibatches": 2,
    "ppo.update_epochs": 2,
    "ppo.total_timesteps": 8 * 16 * 3,
}

# Wall-clock and Ray bookkeeping: differ between equal runs.
TIMING = ("seconds", "env_steps_per_second", "ray_wall_seconds", "ray_slowest_worker_seconds",
          "ray_overhead_share", "worker_restarts")


def _raw(x):
    return jax.random.key_data(x) if jnp.issubdtype(x.dtype, jax.dtypes.prng_key) else x


def assert_same_state(full, resumed) -> None:
    """Every leaf of the two runs' final states (keys included) agrees bit for bit."""
    for a, b in zip(jax.tree.leaves(full.state), jax.tree.leaves(resumed.state), strict=True):
        np.testing.assert_array_equal(np.asarray(_raw(a)), np.asarray(_raw(b)))


def metrics_only(rows):
    return [{k: v for k, v in r.items() if k not in TIMING} for r in rows]


def assert_same_run(full, resumed) -> None:
    """The same final state and every metric of every iteration (wall times aside)."""
    assert_same_state(full, resumed)
    assert metrics_only(full.history) == metrics_only(resumed.history)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    return free_ports(1)[0]


def free_ports(n: int) -> list[int]:
    """n different TCP ports that nothing listens on right now (held open together while
    chosen, so no two are the same, as separate free_port() calls may give)."""
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


# The published OPEN weights, shipped inside the package (metaopt/published/).
from metaopt.published import published_path  # noqa: E402

WEIGHTS = published_path("breakout").parent

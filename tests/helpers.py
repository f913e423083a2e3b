"""Assertions shared by test files."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

TIMING = ("seconds", "env_steps_per_second")


def _raw(x):
    return jax.random.key_data(x) if jnp.issubdtype(x.dtype, jax.dtypes.prng_key) else x


def assert_same_run(full, resumed) -> None:
    """Two meta-training results agree bit for bit: every leaf of the final state (keys
    included) and every metric of every iteration (wall times aside)."""
    for a, b in zip(jax.tree.leaves(full.state), jax.tree.leaves(resumed.state), strict=True):
        np.testing.assert_array_equal(np.asarray(_raw(a)), np.asarray(_raw(b)))

    def strip(rows):
        return [{k: v for k, v in r.items() if k not in TIMING} for r in rows]

    assert strip(full.history) == strip(resumed.history)

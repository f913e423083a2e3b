"""FlatLayout: per-network flat vectors (padded), their round trip and the agent-wide noise."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metaopt.optimizers.flat import LANES, FlatLayout, standard_normal


def agent():
    k = jax.random.split(jax.random.key(0), 3)
    return {
        "actor": {
            "dense_0": {"kernel": jax.random.normal(k[0], (5, 3)), "bias": jnp.arange(3.0)},
            "dense_1": {"kernel": jax.random.normal(k[1], (3, 2)), "bias": jnp.array([0.5, -1.0])},
        },
        "critic": {"dense_0": {"kernel": jax.random.normal(k[2], (5, 1)).astype(jnp.bfloat16), "bias": jnp.ones(1)}},
    }


def test_networks_split_the_agent_in_flat_order_with_padded_widths():
    layout = FlatLayout(agent())
    actor, critic = layout.networks()
    assert (actor.size, critic.size) == (3 + 15 + 2 + 6, 1 + 5) and layout.size == actor.size + critic.size
    assert (actor.start, critic.start) == (0, actor.size)
    for part in (actor, critic):
        assert part.width % LANES == 0 and part.size <= part.width < part.size + LANES
    assert {leaf.network for leaf in actor.leaves} == {"actor"} and {leaf.network for leaf in critic.leaves} == {"critic"}
    assert actor.layers("actor") == ["dense_0", "dense_1"]
    generic = FlatLayout({"w": jnp.ones((2, 3)), "b": jnp.zeros(3)})
    (only,) = generic.networks()
    assert only.size == 9 and only.start == 0


def test_ravel_pads_with_zeros_and_unravel_networks_restores_the_tree():
    params = agent()
    layout = FlatLayout(params)
    flats = [part.ravel(params) for part in layout.networks()]
    for part, flat in zip(layout.networks(), flats):
        assert flat.shape == (part.width,) and flat.dtype == jnp.float32
        assert np.all(np.asarray(flat[part.size :]) == 0)
    back = layout.unravel_networks(flats)
    assert jax.tree.structure(back) == jax.tree.structure(params)
    for got, want in zip(jax.tree.leaves(back), jax.tree.leaves(params)):
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(np.asarray(got, np.float32), np.asarray(want, np.float32))
    whole = layout.ravel(params)
    np.testing.assert_array_equal(np.concatenate([f[: p.size] for p, f in zip(layout.networks(), flats)]), whole[: layout.size])
    actor = layout.networks()[0]  # total() leaves the padding out, whatever it holds
    assert float(actor.total(flats[0] + 1.0)) == pytest.approx(float(flats[0][: actor.size].sum()) + actor.size, rel=1e-6)


def test_noise_is_one_agent_wide_draw_on_the_actor_only():
    """Element i of the agent gets jax.random.normal(key, (N,))[i], whichever network
    vector it sits in; the critic gets none (not even a zero draw to add)."""
    layout = FlatLayout(agent())
    key = jax.random.key(42)
    actor, critic = layout.networks()
    assert critic.noise(key, "actor") is None
    want = np.asarray(jax.random.normal(key, (layout.size,)))
    np.testing.assert_array_equal(np.asarray(actor.noise(key, "actor"))[: actor.size], want[: actor.size])
    np.testing.assert_array_equal(np.asarray(standard_normal(key, critic.size, critic.start)), want[actor.size :])
    # A whole-agent layout masks the critic's part out of the same draw.
    whole = np.asarray(layout.noise(key, "actor"))
    np.testing.assert_array_equal(whole[: actor.size], want[: actor.size])
    assert np.all(whole[actor.size : layout.size] == 0)

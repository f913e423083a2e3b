"""FlatLayout: per-network flat vectors (padded), their round trip, the agent-wide noise, and A2C's
shared torso (layer depth, masks, dormancy statistics, one clip)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from metaopt.agents.a2c import network_forward
from metaopt.optimizers import clip_by_global_norm_per_network
from metaopt.optimizers.flat import LANES, FlatLayout, standard_normal
from metaopt.optimizers.open import dormancy_score


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


def a2c_agent():
    """A2C's tree: a shared torso (conv, dense) and one-layer heads whose leaves sit under their names."""
    k = jax.random.split(jax.random.key(1), 4)
    return {
        "torso": {"conv": {"kernel": jax.random.normal(k[0], (2, 2, 3, 4)), "bias": jnp.zeros(4)},
                  "dense": {"kernel": jax.random.normal(k[1], (8, 5)), "bias": jnp.zeros(5)}},
        "actor": {"kernel": jax.random.normal(k[2], (5, 3)), "bias": jnp.zeros(3)},
        "critic": {"kernel": jax.random.normal(k[3], (5, 1)), "bias": jnp.zeros(1)},
    }


def test_a_shared_torso_lies_on_both_paths_its_layers_first():
    """The torso's layers get depth 0 and 1/2 of a three-layer path, each head 1 (the last layer
    of its path, as the output layer of a PPO network gets); the actor's mask (OPEN's noise)
    covers its head and the torso, not the critic's head; each head is one layer."""
    layout = FlatLayout(a2c_agent())
    assert layout.is_agent and layout.torso_depth == 2
    actor, critic, torso = layout.networks()
    assert actor.layers("actor") == ["actor"] and torso.layers("torso") == ["conv", "dense"]
    prop = layout.layer_proportion()
    for part, want in ((actor, {1.0}), (critic, {1.0}), (torso, {0.0, 0.5})):
        assert set(np.unique(part.layer_proportion()[: part.size])) == want
        np.testing.assert_array_equal(part.layer_proportion()[: part.size], prop[part.start : part.start + part.size])
    conv = 4 + 2 * 2 * 3 * 4
    np.testing.assert_array_equal(torso.layer_proportion()[:conv], 0.0)
    mask = layout.mask("actor")
    assert mask[actor.start : actor.start + actor.size].all() and mask[torso.start : torso.start + torso.size].all()
    assert not mask[critic.start : critic.start + critic.size].any()
    assert critic.noise(jax.random.key(0), "actor") is None and torso.noise(jax.random.key(0), "actor") is not None


def test_a2c_dormancy_reaches_every_layer_and_a_torso_is_clipped_as_one_network():
    """The statistics A2C hands the optimizer are keyed as its params tree, so every leaf with
    units gets its unit's score (not the default 1); one global-norm clip for a shared torso."""
    params = a2c_agent()
    params["torso"]["conv"]["kernel"] = params["torso"]["conv"]["kernel"][:, :, :, :4]
    obs = jax.random.normal(jax.random.key(2), (7, 2 * 2 * 3))
    # a conv torso on (C=2, rows=2, cols=3) observations: 2 * 2 * 4 = 16 conv outputs; dense takes them
    params["torso"]["dense"]["kernel"] = jax.random.normal(jax.random.key(3), (16, 5))
    logits, values, stats = network_forward(params, obs, (2, 2, 3))
    assert logits.shape == (7, 3) and values.shape == (7,)
    assert {k: v.shape for k, v in stats["torso"].items()} == {"conv": (4,), "dense": (5,)}
    assert stats["actor"]["actor"].shape == (3,) and stats["critic"]["critic"].shape == (1,)
    layout = FlatLayout(params)
    scores = layout.unit_scores(stats, dormancy_score)
    dense = next(leaf for leaf in layout.leaves if leaf.network == "torso" and leaf.layer == "dense" and len(leaf.shape) == 2)
    want = np.asarray(dormancy_score(stats["torso"]["dense"]))
    np.testing.assert_allclose(np.asarray(scores[dense.offset : dense.offset + dense.size]).reshape(16, 5)[0], want, rtol=1e-6)
    assert not np.allclose(want, 1.0)
    grads = jax.tree.map(jnp.ones_like, params)
    clipped, _ = clip_by_global_norm_per_network(0.5).update(grads, None)
    assert float(optax.tree.norm(clipped)) == pytest.approx(0.5, rel=1e-5)


def test_a_continuous_actors_log_std_is_its_own_last_layer():
    """PPO's Gaussian actor: log_std sits right under "actor" beside the dense layers; it stays a
    layer of its own (sorted last: proportion 1), as the published OPEN reads it on Brax."""
    tree = agent()
    tree["actor"]["log_std"] = jnp.zeros(2)
    layout = FlatLayout(tree)
    assert [(leaf.network, leaf.layer) for leaf in layout.leaves if leaf.network == "actor"] == [
        ("actor", "dense_0"), ("actor", "dense_0"), ("actor", "dense_1"), ("actor", "dense_1"), ("actor", "log_std")]
    actor = layout.networks()[0]
    np.testing.assert_array_equal(actor.layer_proportion()[: actor.size], [0.0] * 18 + [0.5] * 8 + [1.0] * 2)

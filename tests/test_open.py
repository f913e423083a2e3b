"""OPEN: published weights, the network against flax itself, features by hand, the update."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from metaopt.optimizers import open as op
from metaopt.optimizers.flat import FlatLayout
from tests.helpers import WEIGHTS

PUBLISHED = ["ant", "asterix", "breakout", "freeway", "gridworld", "spaceinvaders", "multi"]


@pytest.mark.parametrize("name", PUBLISHED)
def test_all_published_files_load(name):
    mp = op.load_published(WEIGHTS / f"{name}_OPEN.npy")
    assert op.is_larger(mp) == (name == "multi")
    flat = np.load(WEIGHTS / f"{name}_OPEN.npy")
    np.testing.assert_array_equal(np.asarray(op.ravel(mp)), flat)


def test_published_offsets_by_hand():
    flat = np.load(WEIGHTS / "breakout_OPEN.npy")
    mp = jax.tree.map(np.asarray, op.load_published(WEIGHTS / "breakout_OPEN.npy"))
    gru, mlp = mp["gru_params"], mp["params"]
    np.testing.assert_array_equal(gru["hn"]["bias"], flat[0:8])
    np.testing.assert_array_equal(gru["hn"]["kernel"], flat[8:72].reshape(8, 8))
    np.testing.assert_array_equal(gru["in"]["kernel"], flat[208:360].reshape(19, 8))
    np.testing.assert_array_equal(gru["iz"]["kernel"], flat[528:680].reshape(19, 8))
    np.testing.assert_array_equal(mlp["layers_0"]["kernel"], flat[696:824].reshape(8, 16))
    np.testing.assert_array_equal(mlp["layers_1"]["scale"], flat[840:856])
    np.testing.assert_array_equal(mlp["layers_6"]["bias"], flat[1160:1163])
    np.testing.assert_array_equal(mlp["layers_6"]["kernel"], flat[1163:1211].reshape(16, 3))
    assert op.num_meta_params(False) == 1211 and op.num_meta_params(True) == 3571


@pytest.mark.parametrize(
    "array, message",
    [
        (np.zeros(1000, np.float32), "1000 values match no OPEN network"),
        (np.zeros(1211, np.float64), "float32"),
        (np.zeros((1211, 1), np.float32), "1-D"),
        (np.full(1211, np.nan, np.float32), "NaN"),
        (np.array([{"a": 1}], dtype=object), "not a plain .npy"),
    ],
)
def test_load_published_rejects_bad_files(tmp_path, array, message):
    path = tmp_path / "bad.npy"
    np.save(path, array, allow_pickle=True)  # writing a pickled file on purpose: the loader must refuse it
    with pytest.raises(ValueError, match=message):
        op.load_published(path)


def test_load_published_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="do not exist"):
        op.load_published(tmp_path / "none.npy")


@pytest.mark.parametrize("larger", [False, True])
def test_network_equals_flax_modules(larger):
    """Our feature-major network == flax GRUCell -> Dense/LayerNorm/relu MLP, the modules the
    published code uses, on the same parameter tree."""
    mp = op.init_meta_params(jax.random.key(3), larger)
    mp["params"]["layers_1"]["bias"] = jnp.linspace(-0.5, 0.5, mp["params"]["layers_1"]["bias"].size)
    gru, hidden = op.SIZES[larger]
    x = jax.random.normal(jax.random.key(1), (4, 5, 19))
    h = jax.random.normal(jax.random.key(2), (4, 5, gru))
    ref_h, _ = nn.GRUCell(gru).apply({"params": mp["gru_params"]}, h, x)
    mlp = nn.Sequential([nn.Dense(hidden), nn.LayerNorm(), nn.relu, nn.Dense(hidden), nn.LayerNorm(), nn.relu, nn.Dense(3)])
    ref_out = mlp.apply({"params": mp["params"]}, ref_h)
    new_h, out = op.network_apply(mp, h, x)
    np.testing.assert_allclose(new_h, ref_h, atol=2e-6)
    np.testing.assert_allclose(out, ref_out, atol=2e-5)


# ------------------------------------------------------------------ features by hand


def small_agent():
    k = jax.random.split(jax.random.key(0), 4)
    return {
        "actor": {
            "dense_0": {"kernel": jax.random.normal(k[0], (3, 2)), "bias": jnp.array([0.5, -1.0])},
            "dense_1": {"kernel": jax.random.normal(k[1], (2, 1)), "bias": jnp.array([0.25])},
        },
        "critic": {"dense_0": {"kernel": jax.random.normal(k[2], (3, 1)), "bias": jnp.array([2.0])}},
    }


GRADS = [jax.tree.map(lambda p, s=s: jnp.sin(p * (s + 1)) + 0.1 * s, small_agent()) for s in range(3)]


def test_momenta_after_three_steps_and_features_by_hand():
    params = small_agent()
    opt = op.open_optimizer(op.zeros_meta_params())
    state = opt.init(params)
    acts = {"actor": {"dense_0": jnp.array([0.0, 2.0]), "dense_1": jnp.array([1.5])},
            "critic": {"dense_0": jnp.array([0.7])}}
    for g in GRADS:
        upd, state = opt.update(g, state, params, training_progress=0.25, epoch_progress=1 / 3, activations=acts)
        assert all(float(jnp.abs(u).max()) == 0.0 for u in jax.tree.leaves(upd))  # zero network: no-op
    actor, critic = FlatLayout(params).networks()
    # Hand computation, leaf by leaf, for one tensor: the actor's first kernel.
    kernel = lambda tree: np.asarray(tree["actor"]["dense_0"]["kernel"])  # noqa: E731
    m = np.zeros((6, 3, 2), np.float32)
    for g in GRADS:
        for i, beta in enumerate(np.float32(op.BETAS)):
            m[i] = beta * m[i] + (np.float32(1) - beta) * kernel(g)
    got_m = np.asarray(state.momenta[0])[:, 2:8].reshape(6, 3, 2)  # actor first; bias (2) then kernel
    np.testing.assert_allclose(got_m, m, rtol=1e-6)

    def features(part, momenta):
        return np.asarray(op.compute_features(part, momenta, part.ravel(params), part.ravel(GRADS[-1]), 0.25, 1 / 3, acts))

    feats = features(actor, state.momenta[0])
    k = feats[:, 2:8].reshape(19, 3, 2)
    norm = lambda x: x / np.sqrt(1e-5 + np.mean(x**2))  # noqa: E731
    p, g = kernel(params), kernel(GRADS[-1])
    np.testing.assert_allclose(k[0], norm(p), rtol=1e-5)
    for i in range(6):
        np.testing.assert_allclose(k[1 + i], norm(np.sign(m[i])), rtol=1e-5)
        np.testing.assert_allclose(k[7 + i], norm(np.log(np.abs(m[i]) + 1e-13)), rtol=1e-5)
    np.testing.assert_allclose(k[13], norm(np.sign(g)), rtol=1e-5)
    np.testing.assert_allclose(k[14], norm(np.log(np.abs(g) + 1e-13)), rtol=1e-5)
    assert np.all(k[15] == np.float32(0.25)) and np.allclose(k[17], 1 / 3)
    # Layer proportion: actor dense_0 -> 0, dense_1 -> 1; the critic has one layer -> 0.
    critic_feats = features(critic, state.momenta[1])
    assert np.all(feats[16, :8] == 0) and np.all(feats[16, 8:11] == 1) and np.all(critic_feats[16, : critic.size] == 0)
    # Dormancy: unit 0 of actor dense_0 is dead; kernel column and bias entry share the score.
    np.testing.assert_allclose(k[18], np.array([[0.0, 2.0]] * 3), rtol=1e-6)
    np.testing.assert_allclose(feats[18, 0:2], [0.0, 2.0], rtol=1e-6)
    np.testing.assert_allclose(feats[18, 8:11], 1.0, rtol=1e-6)  # single-unit layers score 1
    np.testing.assert_allclose(critic_feats[18, : critic.size], 1.0, rtol=1e-6)


def test_features_normalised_per_tensor_not_globally():
    params = small_agent()
    params["critic"]["dense_0"]["kernel"] = params["critic"]["dense_0"]["kernel"] * 100.0
    layout = FlatLayout(params)
    flat = layout.ravel(params)
    feats = np.asarray(op.compute_features(layout, jnp.ones((6, layout.width)), flat, flat, 0.0, 0.0, None))
    for leaf in layout.leaves:  # every tensor's feature 0 has unit mean square
        seg = feats[0, leaf.offset : leaf.offset + leaf.size]
        assert np.mean(seg**2) == pytest.approx(1.0, rel=1e-3)


# ------------------------------------------------------------------ the update


@pytest.fixture(scope="module")
def random_open():
    mp = op.init_meta_params(jax.random.key(7))
    mp["params"]["layers_6"]["bias"] = jnp.array([0.3, 0.2, 5.0])  # sizeable noise output
    return mp


def one_update(mp, key, params=None):
    params = params if params is not None else small_agent()
    opt = op.open_optimizer(mp)
    upd, _ = jax.jit(lambda s, k: opt.update(GRADS[0], s, params, training_progress=0.5, epoch_progress=0.0, key=k))(
        opt.init(params), key
    )
    return upd


def test_update_is_zero_mean_over_actor_and_critic(random_open):
    upd = one_update(random_open, jax.random.key(1))
    flat = np.concatenate([np.ravel(u) for u in jax.tree.leaves(upd)])
    assert np.abs(flat).max() > 1e-5
    assert abs(flat.mean()) < 1e-6 * np.abs(flat).max() * flat.size
    actor = np.concatenate([np.ravel(u) for u in jax.tree.leaves(upd["actor"])])
    assert abs(actor.mean()) > 1e-7  # zero mean is over both networks, not each


def test_noise_only_on_actor_and_same_key_same_update(random_open):
    a = one_update(random_open, jax.random.key(1))
    b = one_update(random_open, jax.random.key(2))
    again = one_update(random_open, jax.random.key(1))
    jax.tree.map(np.testing.assert_array_equal, a, again)
    diff = jax.tree.map(lambda x, y: np.asarray(x - y), a, b)
    actor = np.concatenate([d.ravel() for d in jax.tree.leaves(diff["actor"])])
    critic = np.concatenate([d.ravel() for d in jax.tree.leaves(diff["critic"])])
    assert np.abs(actor).min() > 0  # every actor element gets its own noise
    # The critic differs only by the shared mean shift: constant across its elements.
    assert np.ptp(critic) < 1e-7 and np.abs(actor).max() > 100 * np.ptp(critic)


def test_zero_meta_params_give_zero_update():
    upd = one_update(op.zeros_meta_params(), jax.random.key(0))
    assert all(float(jnp.abs(u).max()) == 0.0 for u in jax.tree.leaves(upd))


def test_works_in_a_plain_optax_loop_on_a_generic_tree():
    """Not an agent tree: one network, top-level keys as layers; extra args optional."""
    params = {"w": jnp.ones((4, 3)), "b": jnp.zeros(3)}
    opt = optax.chain(optax.clip_by_global_norm(0.5), op.open_optimizer(op.init_meta_params(jax.random.key(0))))
    state = opt.init(params)
    for _ in range(3):
        grads = jax.tree.map(lambda p: p * 0.1 + 0.01, params)
        upd, state = opt.update(grads, state, params)
        params = optax.apply_updates(params, upd)
    assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(params))
    assert float(jnp.abs(params["w"] - 1).max()) > 0

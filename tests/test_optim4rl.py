"""Optim4RL: the formula against flax modules, the sign rule, and meta-gradients."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from metaopt.optimizers import optim4rl as o4

LR = 1e-3


@pytest.fixture(scope="module")
def meta():
    mp = o4.init_meta_params(jax.random.key(0))
    mp["rnn_v"]["out"]["bias"] = jnp.array([0.7])  # v away from 1: the formula is tested, not luck
    return mp


def params_and_grads():
    k1, k2 = jax.random.split(jax.random.key(1))
    params = {"actor": {"dense_0": {"kernel": jax.random.normal(k1, (4, 3)), "bias": jnp.zeros(3)}},
              "critic": {"dense_0": {"kernel": jnp.ones((4, 1)), "bias": jnp.zeros(1)}}}
    grads = jax.tree.map(lambda p: 0.3 * jnp.sin(7 * p + jnp.arange(p.size).reshape(p.shape)), params)
    return params, grads


def reference_step(mp, carry_m, carry_v, g):
    """Independent: flax GRUCell + Dense on g and g^2, then the published formula."""
    outs, carries = [], []
    for name, x, h in (("rnn_m", g, carry_m), ("rnn_v", g * g, carry_v)):
        h, y = nn.GRUCell(8).apply({"params": mp[name]["gru"]}, h, x[:, None])
        outs.append(nn.Dense(1).apply({"params": mp[name]["out"]}, y)[:, 0])
        carries.append(h)
    m, v = jnp.sign(g) * jnp.exp(outs[0]), jnp.exp(outs[1])
    return -LR * m / jnp.sqrt(v + 1e-8), carries


def test_update_matches_formula_over_steps(meta):
    params, grads = params_and_grads()
    opt = o4.optim4rl_optimizer(meta, LR)
    state = opt.init(params)
    flat_g = jnp.concatenate([jnp.ravel(x) for x in jax.tree.leaves(grads)])
    cm = cv = jnp.zeros((flat_g.size, 8))
    for step in range(3):  # hidden states carry over steps
        g = grads if step == 0 else jax.tree.map(lambda x, s=step: x * (s + 1), grads)
        upd, state = opt.update(g, state, params)
        want, (cm, cv) = reference_step(meta, cm, cv, flat_g * (step + 1))
        got = jnp.concatenate([jnp.ravel(x) for x in jax.tree.leaves(upd)])
        np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-9)


def test_step_follows_the_sign_of_the_gradient(meta):
    params, grads = params_and_grads()
    opt = o4.optim4rl_optimizer(o4.init_meta_params(jax.random.key(5)), LR)
    upd, _ = opt.update(grads, opt.init(params), params)
    for u, g in zip(jax.tree.leaves(upd), jax.tree.leaves(grads)):
        u, g = np.asarray(u), np.asarray(g)
        assert np.all(np.sign(u) == -np.sign(g))


def test_meta_gradient_through_ten_inner_steps(meta):
    """d(loss after 10 inner steps)/d(meta-parameters): finite and non-zero (pipeline
    training backpropagates through exactly this)."""
    target = jnp.linspace(-1.0, 1.0, 6)

    def inner_loss(w):
        return jnp.sum((w["w"] - target) ** 2)

    def meta_loss(mp):
        opt = optax.chain(optax.clip(1.0), o4.optim4rl_optimizer(mp, 0.05))
        w = {"w": jnp.zeros(6)}
        state = opt.init(w)

        def step(carry, _):
            w, state = carry
            upd, state = opt.update(jax.grad(inner_loss)(w), state, w)
            return (optax.apply_updates(w, upd), state), None

        (w, _), _ = jax.lax.scan(step, (w, state), None, length=10)
        return inner_loss(w)

    grads = jax.jit(jax.grad(meta_loss))(meta)
    leaves = [np.asarray(x) for x in jax.tree.leaves(grads)]
    assert all(np.isfinite(x).all() for x in leaves)
    assert optax.tree.norm(grads) > 1e-6
    for rnn in o4.RNNS:  # both networks receive meta-gradient
        assert float(optax.tree.norm(grads[rnn])) > 0
    assert meta_loss(meta) < inner_loss({"w": jnp.zeros(6)})  # and the inner loop does descend


def test_log_inputs_match_flax_modules_fed_the_2023_features():
    """inputs="log": rnn_m reads [sign(g), log(|g| + 1e-18)], rnn_v reads 2 log(|g| + 1e-18)
    (flax GRUCells and Dense heads as the reference's modules), the same update formula."""
    mp = o4.init_meta_params(jax.random.key(3), inputs="log")
    assert o4.inputs_of(mp) == "log" and o4.num_meta_params(inputs="log") == o4.num_meta_params() + 3 * 8
    g = jnp.array([3e-4, -2e-2, 0.0, 1.5, -7e-6])
    log_g = jnp.log(jnp.abs(g) + 1e-18)
    outs = []
    for name, x in (("rnn_m", jnp.stack([jnp.sign(g), log_g], 1)), ("rnn_v", 2 * log_g[:, None])):
        h, y = nn.GRUCell(8).apply({"params": mp[name]["gru"]}, jnp.zeros((5, 8)), x)
        outs.append(nn.Dense(1).apply({"params": mp[name]["out"]}, y)[:, 0])
    want = jnp.sign(g) * jnp.exp(outs[0]) / jnp.sqrt(jnp.exp(outs[1]) + 1e-8)
    _, got = o4.direction(mp, jnp.zeros((2, 8, 5)), g)
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-12)


def test_log_inputs_see_the_gradient_scale_where_raw_inputs_do_not(tmp_path):
    """The diagnostic behind sign descent: at initialisation |update| / lr is 1 at every small
    gradient scale with raw inputs, and changes with the scale with log inputs. Files keep which."""
    from metaopt.optimizers.learned import load_meta_params, save_meta_params

    def step_sizes(mp):
        out = []
        for scale in (1e-4, 1e-3, 1e-2):
            carry, d = jnp.zeros((2, 8, 256)), None
            g = scale * jax.random.normal(jax.random.key(0), (256,))
            for _ in range(8):
                carry, d = o4.direction(mp, carry, g)
            out.append(float(jnp.median(jnp.abs(d))))
        return np.array(out)

    raw = step_sizes(o4.init_meta_params(jax.random.key(0)))
    np.testing.assert_allclose(raw, 1.0, atol=2e-3)
    log_mp = o4.init_meta_params(jax.random.key(0), inputs="log")
    logs = step_sizes(log_mp)
    assert np.ptp(logs) > 0.05, logs
    _, back = load_meta_params(save_meta_params(tmp_path / "log.safetensors", "optim4rl", log_mp), "optim4rl")
    assert o4.inputs_of(back) == "log"

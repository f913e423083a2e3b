"""The compiled CPU kernels (optimizers/kernels/) against the pure-JAX networks they replace,
and how they are built, cached and kept off other platforms."""

from __future__ import annotations

import platform
import shutil
import stat

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from metaopt.agents import networks
from metaopt.optimizers import kernels
from metaopt.optimizers import open as op
from metaopt.optimizers import optim4rl as o4

can_build = shutil.which("g++") is not None and platform.machine().lower() in ("x86_64", "amd64")


def test_kernels_build_where_a_compiler_exists():
    """Where they can be built they must be: a broken kernel source would otherwise leave
    every other test here silently on the JAX path."""
    assert kernels.available() == can_build
    assert kernels.wanted() == can_build  # this suite computes on CPU


# ------------------------------------------------------------------ building and caching


def fake_compiler(tmp_path, exit_code=0):
    """A stand-in for g++ that records each call and writes the -o file."""
    log = tmp_path / "calls.log"
    script = tmp_path / "fake-g++"
    script.write_text(
        "#!/bin/sh\n"
        f'echo "$@" >> {log}\n'
        f'[ {exit_code} -ne 0 ] && {{ echo "fake: broken source" >&2; exit {exit_code}; }}\n'
        'while [ $# -gt 1 ]; do [ "$1" = "-o" ] && touch "$2"; shift; done\n'
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return str(script), log


@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"), reason="kernels are x86-64 only")
def test_build_compiles_once_per_source_and_cpu(tmp_path, monkeypatch):
    monkeypatch.setenv("METAOPT_KERNEL_CACHE", str(tmp_path / "cache"))
    compiler, log = fake_compiler(tmp_path)
    first = kernels.build(compiler)
    again = kernels.build(compiler)
    compiles = log.read_text().splitlines()
    assert first == again and first.is_file() and len(compiles) == 1
    assert "-march=native" in compiles[0] and str(tmp_path / "cache") in str(first)
    monkeypatch.setattr(kernels, "_cpu_signature", lambda: "another cpu")
    assert kernels.build(compiler) != first  # a different machine gets its own library


@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"), reason="kernels are x86-64 only")
def test_build_failure_names_the_compiler_error(tmp_path, monkeypatch):
    monkeypatch.setenv("METAOPT_KERNEL_CACHE", str(tmp_path / "cache"))
    compiler, _ = fake_compiler(tmp_path, exit_code=1)
    with pytest.raises(RuntimeError, match="fake: broken source"):
        kernels.build(compiler)
    assert not list((tmp_path / "cache").glob("*.so"))


# ------------------------------------------------------------------ Optim4RL

needs_kernels = pytest.mark.skipif(not can_build, reason="no C++ compiler or not x86-64")


def random_optim4rl(hidden, seed=0):
    return jax.tree.map(lambda a: 2.0 * a, o4.init_meta_params(jax.random.key(seed), hidden))


@needs_kernels
@pytest.mark.parametrize("hidden", [sizes[0] for sizes in kernels.INSTANCES["optim4rl"]])
def test_optim4rl_kernel_matches_jax(hidden):
    n = 4096 + 48
    g = jax.random.normal(jax.random.key(1), (n,)) * 0.3
    g = g.at[::7].set(0.0)  # sign(0) = 0: no step
    g = g.at[10].set(jnp.nan).at[11].set(jnp.inf)  # NaN stays NaN (assert_allclose: same places)
    carry = jax.random.normal(jax.random.key(2), (2, hidden, n)) * 0.5
    meta = random_optim4rl(hidden)
    want_carry, want = jax.jit(o4.direction)(meta, carry, g)
    got_carry, got = jax.jit(o4._fast_direction)(meta, carry, g)
    np.testing.assert_allclose(got, want, rtol=3e-6, atol=1e-7)
    np.testing.assert_allclose(got_carry, want_carry, atol=2e-6)
    assert np.all(np.asarray(got)[::7] == 0) and np.isnan(got[10])
    # A population of meta-parameters (ES vmaps over them): each member its own weights.
    metas = jax.tree.map(lambda a: jnp.stack([a, -0.5 * a]), meta)
    batched = jax.jit(jax.vmap(o4._fast_direction, (0, None, None)))(metas, carry, g)[1]
    for i in range(2):
        member = jax.tree.map(lambda a: a[i], metas)
        np.testing.assert_allclose(batched[i], o4.direction(member, carry, g)[1], rtol=3e-6, atol=1e-7)


@needs_kernels
def test_optim4rl_meta_gradient_through_the_kernel_is_jaxs():
    """Pipeline training differentiates through inner steps: gradients come from the JAX
    network, so they agree with the pure-JAX optimizer's to float32 rounding."""
    params = {"w": jnp.linspace(-1.0, 1.0, 40).reshape(8, 5), "b": jnp.zeros(5)}
    x = jnp.linspace(0.0, 1.0, 8)

    def meta_loss(meta, cpu_kernel):
        opt = o4.optim4rl_optimizer(meta, 0.05, cpu_kernel)
        p, state = params, opt.init(params)
        for _ in range(4):
            grads = jax.grad(lambda q: jnp.sum((x @ q["w"] + q["b"] - 1.0) ** 2))(p)
            upd, state = opt.update(grads, state, p)
            p = optax.apply_updates(p, upd)
        return jnp.sum((x @ p["w"] + p["b"] - 1.0) ** 2)

    meta = random_optim4rl(8, seed=3)
    fast = jax.jit(jax.grad(lambda m: meta_loss(m, True)))(meta)
    ref = jax.jit(jax.grad(lambda m: meta_loss(m, False)))(meta)
    scale = max(float(jnp.abs(x).max()) for x in jax.tree.leaves(ref))
    assert scale > 0
    for a, b in zip(jax.tree.leaves(fast), jax.tree.leaves(ref)):
        np.testing.assert_allclose(a, b, atol=1e-4 * scale)


# ------------------------------------------------------------------ OPEN


def odd_agent():
    """Leaves of sizes that are not multiples of 16, so blocks straddle leaves and padding."""
    return networks.init_actor_critic(jax.random.key(0), 37, 5, True, (24, 24), (24, 24))


def run_open(meta, cpu_kernel, steps=5):
    params = odd_agent()
    opt = op.open_optimizer(meta, cpu_kernel)
    acts = {"actor": {"dense_0": jnp.linspace(0.0, 2.0, 24).at[3].set(0.0)}}  # a dead unit

    def body(carry, i):
        params, state = carry
        grads = jax.tree.map(lambda p: jax.random.normal(jax.random.fold_in(jax.random.key(1), i), p.shape) * 0.02, params)
        grads = jax.tree.map(lambda g: g.at[..., 0].set(0.0), grads)
        upd, state = opt.update(grads, state, params, training_progress=i / steps, epoch_progress=0.5,
                                activations=acts, key=jax.random.key(i))
        return (optax.apply_updates(params, upd), state), upd

    return jax.lax.scan(body, (params, opt.init(params)), jnp.arange(steps))


@needs_kernels
@pytest.mark.parametrize("larger", [False, True])
@pytest.mark.slow
def test_open_kernel_matches_jax(larger):
    meta = jax.tree.map(lambda a: 3.0 * a, op.init_meta_params(jax.random.key(5), larger))
    meta["params"]["layers_6"]["bias"] = jnp.array([0.3, 0.2, 5.0])  # sizeable noise
    (p_fast, s_fast), u_fast = jax.jit(lambda m: run_open(m, True))(meta)
    (p_ref, s_ref), u_ref = jax.jit(lambda m: run_open(m, False))(meta)
    for got, want in zip(jax.tree.leaves(u_fast), jax.tree.leaves(u_ref)):
        np.testing.assert_allclose(got, want, atol=2e-5 * float(jnp.abs(want).max()))
    # The GRU carry of these tripled meta-parameters amplifies float32 rounding over the steps:
    # the JAX reference alone moves by up to ~3e-5 (scaled as below) between XLA's optimisation levels 0 and 3.
    for got, want in zip(s_fast.carry + s_fast.momenta, s_ref.carry + s_ref.momenta):
        np.testing.assert_allclose(got, want, atol=5e-5 * max(float(jnp.abs(want).max()), 1.0))
    assert float(jnp.abs(u_ref["actor"]["dense_0"]["kernel"]).max()) > 1e-4  # a real update


@needs_kernels
@pytest.mark.slow
def test_open_kernel_per_member_of_a_population():
    meta = op.init_meta_params(jax.random.key(6))
    metas = jax.tree.map(lambda a: jnp.stack([a, 2.0 * a, jnp.zeros_like(a)]), meta)
    batched = jax.jit(jax.vmap(lambda m: run_open(m, True, steps=2)[1]))(metas)
    want = jax.jit(jax.vmap(lambda m: run_open(m, False, steps=2)[1]))(metas)
    for got, ref in zip(jax.tree.leaves(batched), jax.tree.leaves(want)):
        for i in range(3):
            np.testing.assert_allclose(got[i], ref[i], atol=2e-5 * max(float(jnp.abs(ref[i]).max()), 1e-6))
    assert all(float(jnp.abs(x[2]).max()) == 0 for x in jax.tree.leaves(batched))  # zero network


@needs_kernels
@pytest.mark.slow
def test_open_kernel_keeps_a_nan_gradient_nan():
    """A diverged run must stay visibly diverged (ES ranks non-finite fitness last)."""
    meta = op.init_meta_params(jax.random.key(5))
    params = odd_agent()
    grads = jax.tree.map(lambda p: 0.01 * jnp.ones_like(p), params)
    grads["critic"]["dense_1"]["bias"] = grads["critic"]["dense_1"]["bias"].at[0].set(jnp.nan)

    def update(cpu_kernel):
        opt = op.open_optimizer(meta, cpu_kernel)
        return jax.jit(lambda g: opt.update(g, opt.init(params), params)[0])(grads)

    fast, ref = update(True), update(False)
    for got, want in zip(jax.tree.leaves(fast), jax.tree.leaves(ref)):
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    assert np.isnan(np.asarray(fast["critic"]["dense_1"]["bias"])).all()


# ------------------------------------------------------------------ platforms


@needs_kernels
def test_kernels_are_lowered_for_cpu_only():
    meta = op.init_meta_params(jax.random.key(0))
    update = jax.jit(lambda m: run_open(m, True, steps=1)[1])
    assert kernels.handler("open", (8, 16)) in update.lower(meta).as_text()
    assert "metaopt_" not in jax.jit(lambda m: run_open(m, False, steps=1)[1]).lower(meta).as_text()
    # A GPU lowering of the same function takes the JAX branch (no GPU needed to lower).
    exported = jax.export.export(update, platforms=["cuda"])(meta)
    assert "metaopt_" not in exported.mlir_module()


def test_cpu_kernel_off_in_config_uses_jax():
    from metaopt.config import load_train_config
    from metaopt.optimizers import build_optimizer

    cfg = load_train_config(env="breakout", optimizer="optim4rl", overrides={"optimizer.cpu_kernel": False})
    assert cfg.optimizer.cpu_kernel is False
    opt = build_optimizer(cfg.optimizer, cfg.ppo, o4.init_meta_params(jax.random.key(0)))
    params = {"w": jnp.ones((4, 4))}
    text = jax.jit(lambda p: opt.update(p, opt.init(p), p)[0]).lower(params).as_text()
    assert "metaopt_" not in text


def test_handler_names_come_from_one_table():
    """The names XLA looks up are made by `kernels.handler` from INSTANCES, which the build also
    passes to the C++ sources: every compiled symbol is there, under that name."""
    assert kernels.handler("open", (8, 16)) == "metaopt_open_8_16"
    assert kernels.handler("open", (4, 4)) is None and kernels.handler("optim4rl", (32,)) is None
    assert len(set(kernels.HANDLERS)) == sum(len(v) for v in kernels.INSTANCES.values())
    if can_build:
        import ctypes

        lib = ctypes.cdll.LoadLibrary(str(kernels.build()))
        assert all(hasattr(lib, name) for name in kernels.HANDLERS)

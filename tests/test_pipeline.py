"""Optim4RL pipeline training: staggered resets, real meta-gradients, L2, NaN stop, exact resume."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from metaopt.config import CONFIG_DIR, PipelineConfig, load_meta_config
from metaopt.meta.pipeline import (
    MetaTrainingDiverged,
    l2_penalty,
    meta_optimizer,
    pipeline_engine,
    reset_offsets,
)
from metaopt.meta.run import meta_train
from metaopt.optimizers import optim4rl
from metaopt.tracking.checkpoints import latest_checkpoint, load_checkpoint
from tests.helpers import assert_same_run

SMOKE = CONFIG_DIR / "meta" / "optim4rl_breakout_smoke.yaml"


def test_reset_offsets_spread_evenly():
    np.testing.assert_array_equal(reset_offsets(4, 64), [0, 21, 42, 63])
    np.testing.assert_array_equal(reset_offsets(8, 8), np.arange(8))
    offsets = reset_offsets(5, 32)
    assert offsets[0] == 0 and offsets[-1] == 31
    assert np.ptp(np.diff(offsets)) <= 1  # even gaps


@pytest.fixture(scope="session")
def smoke():
    cfg = load_meta_config(SMOKE)
    engine = pipeline_engine(cfg)
    return cfg, engine, engine.init(jax.random.key(cfg.seed))


@pytest.fixture(scope="session")
def full_run(smoke, tmp_path_factory):
    cfg, engine, _ = smoke
    return meta_train(cfg, tmp_path_factory.mktemp("full"), engine=engine)


@pytest.mark.slow
def test_agents_sit_at_staggered_stages(smoke, full_run):
    cfg, _, _ = smoke
    result = full_run
    p = cfg.pipeline
    it = cfg.iterations - 1  # the last iteration, counted from 0
    offsets = reset_offsets(p.width, p.reset_interval)
    # After iteration `it`, agent i has run (stage + 1) * inner_updates PPO updates since
    # its last reset, stage = (it - offset_i) mod reset_interval.
    expected = ((it - offsets) % p.reset_interval + 1) * p.inner_updates
    np.testing.assert_array_equal(np.asarray(result.state.agents[0].update_idx), expected)
    assert len(set(expected.tolist())) == p.width  # all at different stages


def test_meta_gradient_is_finite_and_nonzero(smoke):
    cfg, engine, state = smoke
    agents = jax.tree.map(lambda x: x[:cfg.pipeline.group_size], state.agents[0])
    grads, loss, _, metrics = engine.group_gradient(0, state.meta_params, agents)
    leaves = [np.asarray(g) for g in jax.tree.leaves(grads)]
    assert all(np.isfinite(g).all() for g in leaves) and np.isfinite(float(loss))
    assert sum(float(np.abs(g).sum()) for g in leaves) > 0
    # Both RNNs get gradient: m's and v's outputs both shape the step.
    assert float(np.abs(grads["rnn_m"]["out"]["kernel"]).sum()) > 0
    assert float(np.abs(grads["rnn_v"]["out"]["kernel"]).sum()) > 0


def test_l2_adds_its_gradient_exactly(smoke):
    cfg, engine, state = smoke
    grad_sums = tuple(jax.tree.map(jnp.ones_like, state.meta_params) for _ in engine.groups())  # one per group
    with_l2 = pipeline_engine(load_meta_config(SMOKE, {"pipeline.l2": 0.25}))
    base = engine.meta_gradient(state.meta_params, grad_sums)
    reg = with_l2.meta_gradient(state.meta_params, grad_sums)
    for b, r, m in zip(jax.tree.leaves(base), jax.tree.leaves(reg), jax.tree.leaves(state.meta_params)):
        np.testing.assert_allclose(np.asarray(r - b), 2 * 0.25 * np.asarray(m), rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(np.asarray(b), len(engine.groups()) / engine.num_agents)
    assert float(l2_penalty(state.meta_params, 0.25)) == pytest.approx(
        0.25 * sum(float(jnp.sum(x ** 2)) for x in jax.tree.leaves(state.meta_params)), rel=1e-5)


@pytest.mark.slow
def test_meta_steps_lower_the_meta_loss_on_a_toy_task():
    """Inner task: 10 Optim4RL steps on a quadratic; meta-loss: the loss after them."""
    target = jnp.linspace(-1.0, 1.0, 16)

    def meta_loss(meta_params):
        opt = optim4rl.optim4rl_optimizer(meta_params, learning_rate=0.05)
        params = {"w": jnp.zeros(16)}
        state = opt.init(params)
        for _ in range(10):
            g = jax.grad(lambda p: jnp.sum((p["w"] - target) ** 2))(params)
            updates, state = opt.update(g, state, params)
            params = optax.apply_updates(params, updates)
        return jnp.sum((params["w"] - target) ** 2)

    meta = optim4rl.init_meta_params(jax.random.key(0))
    opt = meta_optimizer(PipelineConfig(meta_learning_rate=0.01))
    opt_state = opt.init(meta)
    step = jax.jit(jax.value_and_grad(meta_loss))
    first, _ = step(meta)
    for _ in range(20):
        loss, g = step(meta)
        updates, opt_state = opt.update(g, opt_state, meta)
        meta = optax.apply_updates(meta, updates)
    assert float(step(meta)[0]) < 0.5 * float(first)


def test_nan_meta_gradient_stops_and_keeps_the_last_good_state(smoke, tmp_path):
    cfg, engine, _ = smoke

    class PoisonedAt:
        """The real engine, with its meta-parameters turned NaN before iteration 2."""

        def __getattr__(self, name):
            return getattr(engine, name)

        def step(self, state):
            if int(state.iteration) == 2:
                bad = jax.tree.map(lambda x: x * jnp.nan, state.meta_params)
                return engine.step(state._replace(meta_params=bad))
            return engine.step(state)

    with pytest.raises(MetaTrainingDiverged, match="NaN or inf at iteration 2"):
        meta_train(cfg, tmp_path, engine=PoisonedAt())
    saved, iteration = load_checkpoint(latest_checkpoint(tmp_path / "checkpoints"), engine.init(jax.random.key(0)))
    assert iteration == 2
    assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(saved.meta_params))


@pytest.mark.slow
def test_resume_from_a_checkpoint_equals_the_uninterrupted_run(smoke, full_run, tmp_path):
    cfg, engine, _ = smoke
    full = full_run
    meta_train(cfg, tmp_path / "cut", engine=engine, stop_after=3)
    resumed = meta_train(cfg, tmp_path / "cut", engine=engine)
    assert resumed.resumed_from == 3
    assert_same_run(full, resumed)

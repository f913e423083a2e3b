"""Real gymnax and brax environments behind the one factory."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metaopt.config import EnvConfig, load_train_config
from metaopt.envs import make_env, resolve_env
from metaopt.envs.minatar import GYMNAX_IDS


@pytest.mark.parametrize("name, obs_dim, actions", [
    ("breakout", 400, 3), ("asterix", 400, 5), ("space_invaders", 600, 4), ("freeway", 700, 3),
])
def test_minatar_shapes(name, obs_dim, actions):
    env = make_env(EnvConfig(name=name), num_envs=3)
    assert (env.obs_dim, env.action_dim, env.discrete) == (obs_dim, actions, True)
    obs, _ = env.reset(jax.random.key(0))
    assert obs.shape == (3, obs_dim) and obs.dtype == jnp.float32


@pytest.mark.parametrize("name", ["breakout", "asterix", "space_invaders", "freeway"])
@pytest.mark.slow
def test_minatar_time_limit_is_gymnax_default(name):
    """With no episode_length set, a random policy's first episode ends at gymnax's own limit
    for the game (Freeway: 2500 steps, truncated) or earlier by termination; never at 1000
    when gymnax allows more. An explicit episode_length still overrides."""
    import gymnax

    limit = int(gymnax.make(GYMNAX_IDS[name])[1].max_steps_in_episode)
    assert resolve_env(EnvConfig(name=name)).episode_length == limit
    assert resolve_env(EnvConfig(name=name, episode_length=7)).episode_length == 7
    env = make_env(EnvConfig(name=name), num_envs=2)
    obs, state = env.reset(jax.random.key(0))

    def step(state, key):
        k_act, k_env = jax.random.split(key)
        action = jax.random.randint(k_act, (2,), 0, env.action_dim)
        state, out = env.step(k_env, state, action)
        return state, (out.terminated, out.truncated)

    _, (term, trunc) = jax.jit(lambda s: jax.lax.scan(step, s, jax.random.split(jax.random.key(1), limit + 1)))(state)
    term, trunc = np.asarray(term), np.asarray(trunc)
    for e in range(2):
        first = int(np.argmax(term[:, e] | trunc[:, e]))  # index t: the episode lasted t+1 steps
        assert (term[:, e] | trunc[:, e]).any(), f"{name}: no episode ended within {limit + 1} steps"
        if trunc[first, e]:
            assert first + 1 == limit and not term[first, e]
        else:
            assert term[first, e] and first + 1 < limit
    if name == "freeway":  # Freeway never terminates: its score grows until the time limit
        assert limit > 1000 and trunc[limit - 1].all() and not term.any()


def test_brax_time_limit_default():
    assert resolve_env(EnvConfig(name="ant")).episode_length == 1000


@pytest.mark.slow
def test_minatar_truncation_keeps_final_obs_and_return():
    """At the time limit: truncated (not terminated), the pre-reset observation is kept
    for bootstrapping, and the raw episode return is reported once."""
    steps = 5
    env = make_env(EnvConfig(name="freeway", episode_length=steps), num_envs=4)
    step = jax.jit(env.step)
    obs, state = env.reset(jax.random.key(0))
    total = np.zeros(4)
    for t in range(steps):
        state, out = step(jax.random.key(t + 1), state, jnp.full((4,), 1))  # freeway: "up"
        total += np.asarray(out.reward)
        if t < steps - 1:
            assert not np.asarray(out.truncated | out.terminated).any()
            np.testing.assert_array_equal(out.obs, out.final_obs)
    assert np.asarray(out.truncated).all() and not np.asarray(out.terminated).any()
    assert not np.array_equal(np.asarray(out.obs), np.asarray(out.final_obs))  # reset happened
    np.testing.assert_allclose(np.asarray(out.episode_return), total)


def test_minatar_termination_is_not_truncation():
    env = make_env(EnvConfig(name="breakout"), num_envs=16)
    step = jax.jit(env.step)
    _, state = env.reset(jax.random.key(0))
    key = jax.random.key(1)
    seen_terminal = False
    for _ in range(200):  # a random breakout policy loses the ball within ~15 steps
        key, k_a, k_s = jax.random.split(key, 3)
        state, out = step(k_s, state, jax.random.randint(k_a, (16,), 0, 3))
        term = np.asarray(out.terminated)
        assert not (term & np.asarray(out.truncated)).any()
        seen_terminal |= term.any()
    assert seen_terminal


@pytest.fixture(scope="module")
def ant_run():
    from metaopt.agents import make_ppo
    from metaopt.optimizers import build_optimizer

    cfg = load_train_config(env="ant", overrides={
        "ppo.num_envs": 8, "ppo.num_steps": 8, "ppo.num_minibatches": 2, "ppo.update_epochs": 1,
        "ppo.total_timesteps": 8 * 8 * 3,
    })
    ppo = make_ppo(cfg, build_optimizer(cfg.optimizer, cfg.ppo))
    state0 = ppo.init(jax.random.key(0))
    final, metrics = jax.jit(ppo.train)(jax.random.key(0))
    return ppo, state0, final, metrics


@pytest.mark.slow
def test_brax_ant_ppo_runs_without_nan(ant_run):
    ppo, _, final, metrics = ant_run
    assert (ppo.env.obs_dim, ppo.env.action_dim, ppo.env.discrete) == (27, 8, False)
    for name, values in metrics.items():
        assert np.isfinite(np.asarray(values)).all() or name == "episode_return", name
    assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(final.params))
    assert "log_std" in final.params["actor"]


@pytest.mark.slow
def test_brax_normalisation_statistics_move(ant_run):
    _, state0, final, _ = ant_run
    norm0, norm1 = state0.env_state, final.env_state
    assert float(norm1.obs_moments.count) > float(norm0.obs_moments.count) + 8 * 8 * 3 - 1
    assert not np.allclose(np.asarray(norm1.obs_moments.mean), np.asarray(norm0.obs_moments.mean))
    assert float(norm1.return_moments.count) > float(norm0.return_moments.count)
    assert not np.isclose(float(norm1.return_moments.var), float(norm0.return_moments.var))

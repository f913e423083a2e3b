"""GAE bootstraps through truncation (from the final observation) and not through termination."""

import jax.numpy as jnp
import numpy as np

from metaopt.agents import gae
from metaopt.agents.ppo import last_episode_returns


def test_gae_truncation_vs_termination_by_hand():
    # One env, 4 steps. t=1 terminates, t=2 is truncated (time limit), t=3 runs on.
    gamma, lam = 0.5, 0.5
    r = jnp.array([1.0, 2.0, 3.0, 4.0])[:, None]
    v = jnp.array([10.0, 20.0, 30.0, 40.0])[:, None]
    # V of the observation each step ended in: t=1 ended in a terminal state (its value must
    # be ignored), t=2 in the pre-reset state of a truncated episode (must be used).
    v_next = jnp.array([20.0, 999.0, 7.0, 50.0])[:, None]
    terminated = jnp.array([0.0, 1.0, 0.0, 0.0])[:, None]
    done = jnp.array([0.0, 1.0, 1.0, 0.0])[:, None]
    adv, ret = gae(r, v, v_next, terminated, done, gamma, lam)

    d3 = 4 + 0.5 * 50 - 40  # -11
    d2 = 3 + 0.5 * 7 - 30  # -23.5: bootstraps from the truncated episode's final state
    d1 = 2 - 20  # -18: no bootstrap through termination
    d0 = 1 + 0.5 * 20 - 10  # 1
    a3 = d3
    a2 = d2  # trace cut at the episode end: no d3 leak into the old episode
    a1 = d1
    a0 = d0 + gamma * lam * a1
    np.testing.assert_allclose(np.asarray(adv[:, 0]), [a0, a1, a2, a3], rtol=1e-6)
    np.testing.assert_allclose(np.asarray(ret), np.asarray(adv + v), rtol=1e-6)


def test_gae_matches_discounted_return_when_lambda_is_one():
    T = 6
    r = jnp.arange(1.0, T + 1)[:, None]
    v = jnp.zeros((T, 1))
    zeros = jnp.zeros((T, 1))
    adv, _ = gae(r, v, zeros, zeros, zeros, 0.9, 1.0)
    expected = [sum(0.9**k * float(r[t + k, 0]) for k in range(T - t)) for t in range(T)]
    np.testing.assert_allclose(np.asarray(adv[:, 0]), expected, rtol=1e-5)


def test_last_episode_returns_keeps_the_latest_end_per_env():
    # 3 steps x 3 envs: env 0 ends at t=0 and t=2, env 1 at t=1, env 2 never.
    done = jnp.array([[1, 0, 0], [0, 1, 0], [1, 0, 0]], jnp.float32)
    episode_return = jnp.array([[4.0, 0, 0], [0, 7.0, 0], [9.0, 0, 0]])
    previous = jnp.array([1.0, 2.0, jnp.nan])
    got = last_episode_returns(previous, done, episode_return)
    np.testing.assert_array_equal(np.asarray(got), [9.0, 7.0, np.nan])

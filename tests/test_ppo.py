"""PPO on real MinAtar: it learns, and the chunked runner computes exactly `train`."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metaopt.agents import make_ppo
from metaopt.config import EnvConfig, load_train_config
from metaopt.envs import make_env
from metaopt.optimizers import build_optimizer
from metaopt.training.runs import PartialRunMismatch, chunk_size, run_training
from tests.helpers import TINY

LEARN_STEPS = 200_000  # 24 updates of the published 64x128 batch: ~10 s a seed on 2 cores
LEARN_SEEDS = 3
# Measured (benchmarks/README.md): Adam reaches 5-8 at this budget where a uniform random
# policy scores about 0.2-0.4; every seed must clear random by this margin.
MARGIN = 3.0


def random_policy_return(env_name: str, num_envs: int = 64, steps: int = 1500) -> float:
    env = make_env(EnvConfig(name=env_name), num_envs)

    def body(carry, key):
        state = carry
        k_a, k_s = jax.random.split(key)
        state, out = env.step(k_s, state, jax.random.randint(k_a, (num_envs,), 0, env.action_dim))
        done = (out.terminated | out.truncated).astype(jnp.float32)
        return state, (out.episode_return.sum(), done.sum())

    _, state = env.reset(jax.random.key(42))
    _, (ret, n) = jax.jit(lambda s: jax.lax.scan(body, s, jax.random.split(jax.random.key(7), steps)))(state)
    return float(ret.sum() / n.sum())


@pytest.fixture(scope="module")
def breakout_adam():
    cfg = load_train_config(env="breakout", overrides={"ppo.total_timesteps": LEARN_STEPS, "num_seeds": LEARN_SEEDS})
    return run_training(cfg)


@pytest.mark.slow
def test_adam_learns_breakout(breakout_adam):
    random_return = random_policy_return("breakout")
    final = breakout_adam.final_returns()
    print(f"random {random_return:.3f}, adam final per seed {final}")
    assert 0.0 < random_return < 1.5
    assert final.shape == (LEARN_SEEDS,)
    assert (final > random_return + MARGIN).all(), (final, random_return)


def test_metrics_are_per_update_summaries(breakout_adam):
    n = breakout_adam.config.ppo.num_updates
    for name, values in breakout_adam.metrics.items():
        assert values.shape == (LEARN_SEEDS, n), name  # no per-step buffers, whatever the budget
    m = breakout_adam.metrics
    assert np.isfinite(m["policy_loss"]).all() and np.isfinite(m["value_loss"]).all()
    assert (m["entropy"] > 0).all() and (m["entropy"] <= np.log(3) + 1e-5).all()
    assert ((m["dormant_actor"] >= 0) & (m["dormant_actor"] <= 1)).all()
    assert (m["episodes_finished"] > 0).all()


@pytest.mark.slow
def test_chunked_runner_equals_train(tiny_breakout_cfg):
    """Same numbers up to float32 rounding: the two compiled programs fuse differently."""
    cfg = tiny_breakout_cfg
    ppo = make_ppo(cfg, build_optimizer(cfg.optimizer, cfg.ppo))
    keys = jax.random.split(jax.random.key(cfg.seed), cfg.num_seeds)
    _, whole = jax.jit(jax.vmap(ppo.train))(keys)
    chunked = run_training(cfg).metrics
    for name in whole:
        np.testing.assert_allclose(np.asarray(whole[name]), chunked[name], rtol=1e-4, atol=1e-8, err_msg=name)


def test_chunk_size_divides():
    for n in (1, 7, 24, 1220, 1221):
        k = chunk_size(n)
        assert n % k == 0
    assert chunk_size(1220) == 61


@pytest.mark.parametrize("shared", [False, True])
def test_actor_and_critic_init_keys(tiny_breakout_cfg, shared):
    """Independent keys by default; `ppo.shared_init_key` reproduces the published code's
    one key, whose same-shaped hidden layers start equal (heads differ in shape and scale)."""
    cfg = tiny_breakout_cfg.model_copy(
        update={"ppo": tiny_breakout_cfg.ppo.model_copy(update={"shared_init_key": shared})}
    )
    state = make_ppo(cfg, build_optimizer(cfg.optimizer, cfg.ppo)).init(jax.random.key(0))
    actor, critic = state.params["actor"], state.params["critic"]
    for layer in ("dense_0", "dense_1"):
        same = np.array_equal(actor[layer]["kernel"], critic[layer]["kernel"])
        assert same == shared
    assert actor["dense_2"]["kernel"].shape != critic["dense_2"]["kernel"].shape


@pytest.mark.parametrize("optimizer", ["adam", "open"])
def test_run_resumed_from_a_partial_run_equals_one_that_never_stopped(optimizer):
    """A run saved after a chunk and resumed in a new call (as a plan cell after its driver or
    worker stopped) computes bit for bit the numbers of the uninterrupted run; OPEN's state
    carries GRU hidden states and the PRNG keys of its noise."""
    extra = {"optimizer.meta_params": "published:breakout"} if optimizer == "open" else {}
    cfg = load_train_config(env="breakout", optimizer=optimizer,
                            overrides={**TINY, "ppo.total_timesteps": 8 * 16 * 6, **extra})
    saved: dict[int, bytes] = {}
    whole = run_training(cfg, checkpoint=lambda p: saved.setdefault(p.updates_done, p.to_bytes({"note": "x"})))
    n, k = cfg.ppo.num_updates, chunk_size(cfg.ppo.num_updates)
    assert n == 6 and sorted(saved) == list(range(k, n, k))  # after every chunk but the last
    resumed = run_training(cfg, resume=saved[4])
    assert resumed.resumed_at == 4 and whole.resumed_at == 0
    for name in whole.metrics:
        np.testing.assert_array_equal(resumed.metrics[name], whole.metrics[name], err_msg=name)
    assert resumed.run_seconds > 0 and resumed.env_steps == whole.env_steps


def test_a_partial_run_of_another_config_is_refused(tiny_breakout_cfg):
    saved: list[bytes] = []
    run_training(tiny_breakout_cfg, checkpoint=lambda p: saved.append(p.to_bytes()))
    other = tiny_breakout_cfg.model_copy(update={"seed": tiny_breakout_cfg.seed + 1})
    with pytest.raises(PartialRunMismatch, match="is not of this run"):
        run_training(other, resume=saved[0])
    with pytest.raises(PartialRunMismatch, match="not readable safetensors|not a safetensors header"):
        run_training(tiny_breakout_cfg, resume=b"\x08\x00\x00\x00\x00\x00\x00\x00{broken}")

"""The optimizer seam: any GradientTransformationExtraArgs, fed what learned optimizers need."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from metaopt.agents import make_ppo
from metaopt.config import load_train_config
from metaopt.optimizers import build_optimizer, clip_by_global_norm_per_network, ppo_lr_schedule
from tests.helpers import TINY


class Seen(NamedTuple):
    steps: jax.Array
    training_progress: jax.Array
    epoch_progress: jax.Array
    activations: dict
    key_sum: jax.Array


def recording_sgd() -> optax.GradientTransformationExtraArgs:
    """Plain SGD that records the extra args it was given."""

    def init(params):
        acts = {"actor": {f"dense_{i}": jnp.zeros(n) for i, n in enumerate((64, 64, 3))},
                "critic": {f"dense_{i}": jnp.zeros(n) for i, n in enumerate((64, 64, 1))}}
        return Seen(jnp.zeros((), jnp.int32), jnp.full((), -1.0), jnp.zeros(()), acts, jnp.zeros(()))

    def update(grads, state, params=None, *, training_progress, epoch_progress, activations, key, **_):
        seen = Seen(state.steps + 1, training_progress, epoch_progress, activations,
                    state.key_sum + jax.random.uniform(key))
        return jax.tree.map(lambda g: -1e-3 * g, grads), seen

    return optax.GradientTransformationExtraArgs(init, update)


@pytest.fixture(scope="module")
def recorded():
    cfg = load_train_config(env="breakout", overrides=TINY)
    ppo = make_ppo(cfg, recording_sgd())
    return cfg, jax.jit(ppo.train)(jax.random.key(0))


@pytest.mark.slow
def test_extra_args_reach_the_optimizer(recorded):
    cfg, (final, _) = recorded
    seen: Seen = final.opt_state
    p = cfg.ppo
    assert int(seen.steps) == p.num_updates * p.update_epochs * p.num_minibatches
    assert float(seen.training_progress) == pytest.approx(1.0)  # last update: (n-1)/(n-1)
    assert float(seen.epoch_progress) == pytest.approx(1.0)  # last epoch
    for net, sizes in (("actor", (64, 64, 3)), ("critic", (64, 64, 1))):
        for i, n in enumerate(sizes):
            a = np.asarray(seen.activations[net][f"dense_{i}"])
            assert a.shape == (n,) and (a >= 0).all() and a.sum() > 0
    assert 0 < float(seen.key_sum) < int(seen.steps)  # a key arrived every step


@pytest.mark.slow
def test_training_progress_runs_from_zero_to_one():
    """Chunked updates see update/(updates-1): 0, 0.5, 1 for three updates."""
    cfg = load_train_config(env="breakout", overrides=TINY)
    ppo = make_ppo(cfg, recording_sgd())
    state = ppo.init(jax.random.key(1))
    upd = jax.jit(ppo.update)
    progress = []
    for _ in range(ppo.num_updates):
        state, _ = upd(state)
        progress.append(float(state.opt_state.training_progress))
    assert progress == pytest.approx([0.0, 0.5, 1.0])


def test_clipping_is_per_network():
    grads = {"actor": {"w": jnp.full((4,), 3.0)}, "critic": {"w": jnp.full((4,), 0.1)}}
    clip = clip_by_global_norm_per_network(0.5)
    out, _ = clip.update(grads, clip.init(grads), None, key=jax.random.key(0))
    assert float(optax.tree.norm(out["actor"])) == pytest.approx(0.5, rel=1e-5)
    np.testing.assert_allclose(np.asarray(out["critic"]["w"]), 0.1)  # under the limit: untouched


def test_baselines_ignore_extra_args_and_anneal():
    cfg = load_train_config(env="breakout", overrides=TINY)
    params = {"actor": {"w": jnp.ones(3)}, "critic": {"w": jnp.ones(2)}}
    for name in ("adam", "rmsprop"):
        c = load_train_config(env="breakout", optimizer=name, overrides=TINY)
        tx = build_optimizer(c.optimizer, c.ppo)
        up, _ = tx.update(params, tx.init(params), params, training_progress=0.3, epoch_progress=0.0,
                          activations={}, key=jax.random.key(0))
        assert all(float(jnp.abs(x).max()) > 0 for x in jax.tree.leaves(up))
    sched = ppo_lr_schedule(1.0, True, cfg.ppo)
    per_update = cfg.ppo.update_epochs * cfg.ppo.num_minibatches
    assert float(sched(0)) == 1.0 and float(sched(per_update - 1)) == 1.0
    assert float(sched(per_update)) == pytest.approx(1 - 1 / cfg.ppo.num_updates)


def test_decoupled_weight_decay_is_adamw_for_adam_and_shrinks_a_learned_update_by_lr_times_rate():
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax

    from metaopt.config import AdamConfig, Optim4RLConfig, load_train_config
    from metaopt.optimizers import build_optimizer
    from metaopt.optimizers.optim4rl import init_meta_params

    ppo = load_train_config(env="breakout", optimizer="adam").ppo
    params = {"actor": {"w": jnp.linspace(-1.0, 1.0, 6)}, "critic": {"w": jnp.linspace(2.0, 3.0, 4)}}
    grads = jax.tree.map(lambda p: 0.1 * jnp.sin(7 * p), params)
    ours = build_optimizer(AdamConfig(learning_rate=1e-2, anneal_lr=False, max_grad_norm=None, eps=1e-8, weight_decay=0.1),
                           ppo)
    reference = optax.adamw(1e-2, eps=1e-8, weight_decay=0.1)
    s1, s2, p1, p2 = ours.init(params), reference.init(params), params, params
    for _ in range(3):
        u1, s1 = ours.update(grads, s1, p1)
        u2, s2 = reference.update(grads, s2, p2)
        p1, p2 = optax.apply_updates(p1, u1), optax.apply_updates(p2, u2)
    for a, b in zip(jax.tree.leaves(p1), jax.tree.leaves(p2)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)

    meta = init_meta_params(jax.random.key(0))
    plain = build_optimizer(Optim4RLConfig(learning_rate=1e-3, cpu_kernel=False), ppo, meta)
    decayed = build_optimizer(Optim4RLConfig(learning_rate=1e-3, cpu_kernel=False, weight_decay=0.5), ppo, meta)
    u_plain, _ = plain.update(grads, plain.init(params), params)
    u_decayed, _ = decayed.update(grads, decayed.init(params), params)
    for a, b, p in zip(jax.tree.leaves(u_decayed), jax.tree.leaves(u_plain), jax.tree.leaves(params)):
        np.testing.assert_allclose(a, b - 1e-3 * 0.5 * p, rtol=1e-6, atol=1e-9)
    # without decay the config dumps (and hashes) as before the option existed
    assert "weight_decay" not in AdamConfig().model_dump() and Optim4RLConfig(weight_decay=0.5).weight_decay == 0.5

"""The study's configs are faithful: Optim4RL's Brax settings, evaluation apart from
meta-training, generalisation splits, multi-task Optim4RL; and the pieces they need work."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metaopt.agents import networks as nets
from metaopt.config import CONFIG_DIR, MINATAR_ENVS, EnvConfig, load_meta_config, load_train_config
from metaopt.envs import make_env
from metaopt.optimizers.common import gradient_clipping

META = CONFIG_DIR / "meta"


@pytest.mark.parametrize("name", ["optim4rl_ant", "optim4rl_humanoid"])
def test_optim4rl_brax_is_as_published(name):
    cfg = load_meta_config(META / f"{name}.yaml")
    task = cfg.tasks[0]
    ppo, env, opt = task.ppo, task.env, cfg.optimizer
    assert ppo.actor_layers == (32,) * 4 and ppo.critic_layers == (64,) * 5 and ppo.activation == "swish"
    # brax: batch 1024 unrolls x 8 minibatches x 5 steps per update
    assert (ppo.num_envs, ppo.batch_size, ppo.num_minibatches, ppo.update_epochs) == (2048, 1024 * 8 * 5, 8, 4)
    assert (ppo.clip_eps, ppo.ent_coef, ppo.gamma, ppo.gae_lambda, ppo.total_timesteps) == (0.3, 0.01, 0.97, 0.95, 10**8)
    assert env.normalize_obs and not env.normalize_reward and env.reward_scale == 10 and env.episode_length == 1000
    assert (opt.learning_rate, opt.clip_elementwise, opt.max_grad_norm) == (3e-4, 1.0, None)
    # evaluation: 4096 envs, batch 2048 x 32 minibatches x 5 steps, 1e8 steps, apart from meta-training
    ev = task.eval_ppo(cfg.tracking)
    assert (ev.num_envs, ev.batch_size, ev.num_minibatches, ev.total_timesteps) == (4096, 2048 * 32 * 5, 32, 10**8)
    assert ev.actor_layers == ppo.actor_layers and ev.clip_eps == 0.3


def test_humanoid_ppo_config_uses_optim4rl_brax_settings():
    cfg = load_train_config(env="humanoid")
    p, o = cfg.ppo, cfg.optimizer
    assert (p.num_envs, p.batch_size, p.num_minibatches, p.actor_layers, p.critic_layers) == (
        4096, 2048 * 32 * 5, 32, (32,) * 4, (64,) * 5)
    assert (o.name, o.learning_rate, o.clip_elementwise, o.anneal_lr) == ("adam", 3e-4, 1.0, False)
    assert "OPEN never published humanoid" in (CONFIG_DIR / "ppo" / "humanoid.yaml").read_text()


def test_generalisation_splits_hold_out_each_game():
    for method in ("open", "optim4rl"):
        for held in MINATAR_ENVS:
            cfg = load_meta_config(META / f"{method}_holdout_{held}.yaml")
            assert sorted(cfg.env_names) == sorted(set(MINATAR_ENVS) - {held}), (method, held)
            assert held.replace("_", "-") in cfg.model_name
        assert load_meta_config(META / f"{method}_minatar.yaml").env_names == list(MINATAR_ENVS)
        assert load_meta_config(META / f"{method}_ant.yaml").env_names == ["ant"]  # ant -> MinAtar


def test_multitask_optim4rl_has_per_task_step_sizes_and_normalised_losses():
    from metaopt.meta.pipeline import pipeline_engine

    for name in ("optim4rl_multitask", "optim4rl_multitask_smoke"):
        engine = pipeline_engine(load_meta_config(META / f"{name}.yaml"))
        lrs = {t.env.name: engine.task_optimizer(i).learning_rate for i, t in enumerate(engine.tasks)}
        assert lrs["breakout"] == 1e-3 and lrs["ant"] == 3e-4 and engine.normalize_meta_loss
    single = pipeline_engine(load_meta_config(META / "optim4rl_breakout.yaml"))
    assert not single.normalize_meta_loss and single.task_optimizer(0) is single.optimizer


def test_smoke_versions_validate():
    for name in ("open_ant_smoke", "optim4rl_ant_smoke", "open_multitask_smoke", "optim4rl_multitask_smoke"):
        cfg = load_meta_config(META / f"{name}.yaml")
        assert cfg.iterations <= 2 and all(t.ppo.num_envs <= 16 for t in cfg.tasks)
        assert "ant" in cfg.env_names


@pytest.mark.slow
def test_normalised_meta_loss_scales_the_gradient_by_the_loss():
    from metaopt.meta.pipeline import META_LOSS_FLOOR, pipeline_engine

    grads = {}
    for flag in (False, True):
        cfg = load_meta_config(META / "optim4rl_breakout_smoke.yaml", {"pipeline.normalize_meta_loss": flag})
        engine = pipeline_engine(cfg)
        state = engine.init(jax.random.key(0))
        agent = jax.tree.map(lambda x: x[0], state.agents[0])
        fn = jax.jit(jax.value_and_grad(lambda m: engine.agent_meta_loss(0, m, agent)[0]))
        grads[flag] = fn(state.meta_params)
    (loss, plain), (_, normalised) = grads[False], grads[True]
    scale = 1.0 / (abs(float(loss)) + META_LOSS_FLOOR)
    for a, b in zip(jax.tree.leaves(plain), jax.tree.leaves(normalised)):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a) * scale, rtol=1e-4, atol=1e-9)


@pytest.mark.slow
def test_per_network_hidden_sizes_and_swish():
    params = nets.init_actor_critic(jax.random.key(0), 27, 8, False, (32,) * 4, (64,) * 5)
    assert [params["actor"][f"dense_{i}"]["kernel"].shape for i in range(5)] == [(27, 32)] + [(32, 32)] * 3 + [(32, 8)]
    assert params["critic"]["dense_5"]["kernel"].shape == (64, 1)
    out, stats = nets.actor_apply(params["actor"], jnp.ones((3, 27)), "swish")
    assert out.shape == (3, 8) and set(stats) == {f"dense_{i}" for i in range(5)} | {"log_std"}


def test_reward_scale_scales_training_rewards_not_returns():
    plain = make_env(EnvConfig(name="breakout"), num_envs=4)
    scaled = make_env(EnvConfig(name="breakout", reward_scale=10.0), num_envs=4)
    s1, s2 = plain.reset(jax.random.key(0))[1], scaled.reset(jax.random.key(0))[1]
    rewards, returns = [], []
    for t in range(300):
        key, action = jax.random.key(t + 1), jnp.full((4,), t % 3)
        s1, a = plain.step(key, s1, action)
        s2, b = scaled.step(key, s2, action)
        np.testing.assert_allclose(np.asarray(b.reward), 10.0 * np.asarray(a.reward))
        np.testing.assert_allclose(np.asarray(b.episode_return), np.asarray(a.episode_return))
        rewards.append(float(a.reward.sum()))
        returns.append(float(a.episode_return.sum()))
    assert sum(rewards) > 0 and sum(returns) > 0  # the check saw rewards and finished episodes


def test_elementwise_clipping_follows_the_global_norm_clip():
    clip = gradient_clipping(None, 0.5)
    grads = {"actor": {"w": jnp.array([3.0, -0.2, -7.0])}, "critic": {"w": jnp.array([0.1])}}
    out, _ = clip.update(grads, clip.init(grads))
    np.testing.assert_allclose(out["actor"]["w"], [0.5, -0.2, -0.5])
    both = gradient_clipping(1.0, 0.5)
    out, _ = both.update(grads, both.init(grads))
    np.testing.assert_allclose(out["actor"]["w"], np.clip(np.array([3.0, -0.2, -7.0]) / np.sqrt(9 + 0.04 + 49), -0.5, 0.5),
                               rtol=1e-5)

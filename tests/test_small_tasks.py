"""Optim4RL's own ground: Catch and the six gridworlds, A2C as its reference runs it, and
pipeline training on them (OPTIM4RL_SMALL_TASKS.md)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import scipy.stats

from metaopt.agents.a2c import a2c_loss, init_network, make_a2c, network_apply, td_lambda_advantages
from metaopt.config import (
    CONFIG_DIR,
    GRIDWORLDS,
    A2CConfig,
    ConfigError,
    EnvConfig,
    load_meta_config,
    load_train_config,
)
from metaopt.envs import make_env
from metaopt.envs.gridworld import GRIDWORLD_SPECS, GridState, free_cells, make_single
from metaopt.meta.pipeline import pipeline_engine
from metaopt.optimizers import build_optimizer
from metaopt.training.runs import run_training

CATCH_META = CONFIG_DIR / "meta" / "optim4rl_catch.yaml"


# ------------------------------------------------------------------ Catch


def test_catch_episodes_are_nine_steps_with_one_reward_of_plus_or_minus_one():
    env = make_env(EnvConfig(name="catch"), 16)
    assert (env.obs_dim, env.action_dim, env.obs_shape) == (50, 3, (10, 5))
    obs, state = env.reset(jax.random.key(0))
    assert np.all(np.asarray(obs).sum(1) == 2)  # ball and paddle
    np.testing.assert_array_equal(np.asarray(obs).reshape(16, 10, 5)[:, 9, 2], 1.0)  # paddle at row 9, column 2
    rewards, ends = [], []
    for t in range(27):
        state, s = env.step(jax.random.key(t + 1), state, jax.random.randint(jax.random.key(100 + t), (16,), 0, 3))
        rewards.append(np.asarray(s.reward))
        ends.append(np.asarray(s.terminated))
    rewards, ends = np.array(rewards), np.array(ends)
    assert ends[[8, 17, 26]].all() and ends.sum() == 3 * 16  # every episode ends at its ninth step
    assert set(np.unique(rewards[ends])) <= {-1.0, 1.0} and np.all(rewards[~ends] == 0)


# ------------------------------------------------------------------ gridworlds


@pytest.mark.parametrize("name", GRIDWORLDS)
def test_gridworld_shapes_and_reset(name):
    spec = GRIDWORLD_SPECS[name]
    env = make_env(EnvConfig(name=name), 8)
    assert env.obs_shape == (len(spec.objects) + 1, spec.rows, spec.cols) and env.action_dim == 9
    obs, _ = env.reset(jax.random.key(1))
    grid = np.asarray(obs).reshape(8, *env.obs_shape)
    assert np.all(grid.sum((2, 3)) == 1)  # every object present and the agent, one cell each
    occupied = grid.sum(1)
    assert occupied.max() == 1, "reset places agent and objects on distinct cells"
    assert grid[:, :, [0, -1], :].sum() == 0 and grid[:, :, :, [0, -1]].sum() == 0  # never on the walls


def test_gridworld_reset_draws_every_ordered_choice_of_distinct_cells_equally_often():
    """Agent and objects land on distinct free cells, every ordered choice equally likely (the
    reset draws k cells without a permutation of all of them)."""
    spec = GRIDWORLD_SPECS["small_dense_short"]  # 24 free cells; agent, A, B
    reset, _, _ = make_single(spec)
    states = jax.vmap(reset)(jax.random.split(jax.random.key(3), 200_000))
    free = free_cells(spec)
    cells = np.concatenate([np.asarray(states.agent)[:, None], np.asarray(states.objects)], 1)
    flat = (cells[..., 0] - 1) * (spec.cols - 2) + (cells[..., 1] - 1)  # row-major index of each interior cell
    assert np.all(np.sort(flat, 1)[:, 1:] != np.sort(flat, 1)[:, :-1])  # three distinct cells every time
    # Each of agent, A and B on every cell equally often (chi-square per position: a 10% excess on
    # one cell gives p below 1e-9), and every ordered triple of distinct cells, 24 x 23 x 22,
    # equally often (chi-square on the joint counts: a sampler that ties the objects to the agent).
    for position in range(3):
        assert scipy.stats.chisquare(np.bincount(flat[:, position], minlength=len(free))).pvalue > 1e-4
    triples = np.bincount((flat[:, 0] * len(free) + flat[:, 1]) * len(free) + flat[:, 2], minlength=len(free) ** 3)
    distinct = (np.arange(len(free))[:, None, None] != np.arange(len(free))[None, :, None]) \
        & (np.arange(len(free))[:, None, None] != np.arange(len(free))[None, None, :]) \
        & (np.arange(len(free))[None, :, None] != np.arange(len(free))[None, None, :])
    assert triples[~distinct.ravel()].sum() == 0
    assert scipy.stats.chisquare(triples[distinct.ravel()]).pvalue > 1e-4


def _state(agent, objects, time=0):
    return GridState(jnp.array(agent, jnp.int32), jnp.array(objects, jnp.int32), jnp.array(time, jnp.int32))


def test_gridworld_moves_stop_at_walls():
    spec = GRIDWORLD_SPECS["small_dense_short"]  # 6 x 8, interior rows 1-4, columns 1-6
    _, step, _ = make_single(spec)
    far = [[4, 6], [4, 5]]  # objects out of the way (absent objects would respawn at random)
    moved = {a: step(jax.random.key(a), _state([1, 1], far), a)[0].agent.tolist() for a in range(9)}
    assert moved[0] == [1, 1] and moved[1] == [1, 1] and moved[4] == [1, 1] and moved[8] == [1, 1]  # into walls
    assert moved[2] == [1, 2] and moved[3] == [2, 1] and moved[6] == [2, 2]


def test_gridworld_collecting_rewards_removes_respawns_and_terminates_by_probability():
    spec = GRIDWORLD_SPECS["small_dense_short"]  # A (+1, never ends), B (-1, ends w.p. 0.5), respawn 0.5
    _, step, observe = make_single(spec)
    keys = jax.random.split(jax.random.key(0), 4000)
    step_all = jax.vmap(step, (0, None, None))
    on_a = _state([2, 2], [[2, 3], [4, 6]])  # moving right (action 2) collects A
    states, reward, done = step_all(keys, on_a, 2)
    assert np.all(np.asarray(reward) == 1.0) and not np.asarray(done).any()
    respawned = np.asarray(states.objects[:, 0, 0] >= 0)
    assert abs(respawned.mean() - 0.5) < 0.04  # p_respawn 0.5, anywhere free
    assert np.all(np.asarray(states.objects[~respawned, 0]) == -1)
    obs = jax.vmap(observe)(states)
    assert np.all(np.asarray(obs[~respawned, 0]).sum((1, 2)) == 0)  # an absent object is not drawn
    on_b = _state([2, 2], [[4, 6], [2, 3]])
    _, reward, done = step_all(keys, on_b, 2)
    assert np.all(np.asarray(reward) == -1.0)
    assert abs(np.asarray(done).mean() - 0.5) < 0.04  # p_terminate 0.5


def test_gridworld_time_limit_ends_and_resets_the_episode():
    spec = GRIDWORLD_SPECS["small_dense_short"]  # 50 steps
    _, step, _ = make_single(spec)
    state, _, done = step(jax.random.key(0), _state([2, 2], [[4, 6], [4, 5]], time=48), 0)
    assert not bool(done) and int(state.time) == 49
    state, _, done = step(jax.random.key(1), state, 0)
    assert bool(done) and int(state.time) == 0
    env = make_env(EnvConfig(name="small_dense_short"), 4)
    obs, st = env.reset(jax.random.key(0))
    for t in range(50):
        st, s = env.step(jax.random.key(t), st, jnp.zeros(4, jnp.int32))
    assert np.asarray(s.terminated).all() and not np.asarray(s.truncated).any()  # timeouts are terminal, as published


def test_gridworld_free_cells_are_the_interior():
    for name, spec in GRIDWORLD_SPECS.items():
        cells = free_cells(spec)
        assert len(cells) == (spec.rows - 2) * (spec.cols - 2), name
    assert len(free_cells(GRIDWORLD_SPECS["big_sparse_short"])) == 120
    assert len(free_cells(GRIDWORLD_SPECS["big_dense_long"])) == 117


# ------------------------------------------------------------------ A2C


def test_network_parameter_counts_match_the_reference():
    """The reference's counts (OPTIM4RL_SMALL_TASKS.md section 3), which fix the big grids' conv
    axis quirk: the 2x2 kernel takes the W columns as input features."""
    expected = {"catch": 14_084, "small_dense_short": 4_970, "big_sparse_short": 31_994, "big_sparse_long": 36_986,
                "big_dense_short": 29_498, "big_dense_long": 39_482}
    for name, count in expected.items():
        cfg = load_train_config(env=name)
        env = make_env(cfg.env, 2)
        params = init_network(jax.random.key(0), cfg.a2c, env.obs_shape, env.action_dim)
        assert sum(x.size for x in jax.tree.leaves(params)) == count, name
        logits, values = network_apply(params, jnp.zeros((3, 5, env.obs_dim)), env.obs_shape)
        assert logits.shape == (3, 5, env.action_dim) and values.shape == (3, 5)


def _lambda_returns_by_hand(r, v, bootstrap, done, gamma, lam):
    out, g = np.zeros_like(r), bootstrap
    for t in reversed(range(len(r))):
        d = gamma * (1 - done[t])
        v_next = v[t + 1] if t + 1 < len(r) else bootstrap
        g = r[t] + d * ((1 - lam) * v_next + lam * g)
        out[t] = g
    return out


def test_td_lambda_advantages_match_the_recursion():
    rng = np.random.default_rng(0)
    r, v, done = rng.normal(size=7), rng.normal(size=7), np.array([0, 0, 1, 0, 0, 0, 0], float)
    adv = td_lambda_advantages(jnp.asarray(r), jnp.asarray(v), jnp.asarray(1.5), jnp.asarray(done), 0.995, 0.95)
    np.testing.assert_allclose(adv, _lambda_returns_by_hand(r, v, 1.5, done, 0.995, 0.95) - v, rtol=1e-5)
    # lambda = 1, no ends: the discounted return bootstrapped from V(s_T)
    adv1 = td_lambda_advantages(jnp.ones(3), jnp.zeros(3), jnp.asarray(2.0), jnp.zeros(3), 0.5, 1.0)
    np.testing.assert_allclose(adv1, [1 + 0.5 + 0.25 + 0.125 * 2, 1 + 0.5 + 0.25 * 2, 1 + 0.5 * 2], rtol=1e-6)


def test_a2c_loss_gradient_has_the_reference_terms():
    """Critic: vf_coef * mean(td^2) with the targets stopped; actor: the advantage stopped."""
    cfg = load_train_config(env="catch")
    a2c = cfg.a2c
    params = init_network(jax.random.key(0), a2c, (10, 5), 3)
    rng = np.random.default_rng(1)
    obs = jnp.asarray(rng.integers(0, 2, (20, 4, 50)), jnp.float32)
    last = jnp.asarray(rng.integers(0, 2, (4, 50)), jnp.float32)
    action, reward = jnp.asarray(rng.integers(0, 3, (20, 4))), jnp.asarray(rng.normal(size=(20, 4)), jnp.float32)
    done = jnp.zeros((20, 4))
    total, parts = a2c_loss(params, obs, last, action, reward, done, a2c, (10, 5))
    assert total == pytest.approx(float(parts["policy_loss"] + 0.5 * parts["value_loss"] - 0.01 * parts["entropy"]), rel=1e-5)
    # The critic head's gradient is that of 0.5 * mean((G - V)^2) with G a constant.
    g = jax.grad(lambda p: a2c_loss(p, obs, last, action, reward, done, a2c, (10, 5))[0])(params)
    _, values = network_apply(params, jnp.concatenate([obs, last[None]]), (10, 5))
    adv = td_lambda_advantages(reward, values[:-1], values[-1], done, a2c.gamma, a2c.gae_lambda)
    returns = adv + values[:-1]

    def critic_only(bias):
        p = {**params, "critic": {**params["critic"], "bias": bias}}
        return 0.5 * jnp.mean((returns - network_apply(p, obs, (10, 5))[1]) ** 2)

    np.testing.assert_allclose(g["critic"]["bias"], jax.grad(critic_only)(params["critic"]["bias"]), rtol=1e-4)


@pytest.fixture(scope="module")
def catch_adam():
    cfg = load_train_config(env="catch", overrides={"num_seeds": 2, "seed": 11, "agent.total_timesteps": 256_000})
    return run_training(cfg)


def test_a2c_with_adam_learns_catch(catch_adam):
    """Random play scores about -0.6 on Catch; the reference's Adam reaches ~1 by 5e5 steps."""
    r = catch_adam.metrics["episode_return"]
    assert np.nanmean(r[:, :10]) < -0.3
    assert np.all(catch_adam.final_returns() > 0.6), catch_adam.final_returns()


def test_a2c_final_return_is_the_mean_of_the_last_20_logged_iterations(catch_adam):
    r = catch_adam.metrics["episode_return"]
    for seed in range(2):
        logged = r[seed][~np.isnan(r[seed])]
        assert catch_adam.final_returns()[seed] == pytest.approx(float(logged[-20:].mean()))


# ------------------------------------------------------------------ configuration


def test_small_task_configs_pick_a2c_and_the_reference_optimizers():
    cfg = load_train_config(env="catch", optimizer="rmsprop")
    assert cfg.a2c is not None and cfg.agent is cfg.a2c and cfg.agent.num_updates == 390
    assert (cfg.optimizer.learning_rate, cfg.optimizer.anneal_lr, cfg.optimizer.decay, cfg.optimizer.max_grad_norm) == (
        1e-3, False, 0.9, None)
    grid = load_train_config(env="big_dense_long", optimizer="optim4rl", overrides={"agent.total_timesteps": 20480})
    assert grid.a2c.torso == "conv2x2" and grid.a2c.total_timesteps == 20480 and grid.optimizer.clip_elementwise == 1.0
    assert load_train_config(env="breakout", overrides={"agent.total_timesteps": 8192}).ppo.total_timesteps == 8192


def test_a2c_refuses_what_it_cannot_run_in_one_line():
    with pytest.raises(ConfigError, match="a2c.torso: conv2x2 is the big gridworlds"):
        load_train_config(env="catch", overrides={"a2c.torso": "conv2x2"})
    with pytest.raises(ConfigError, match="a2c: total_timesteps=100 is below one rollout"):
        load_train_config(env="catch", overrides={"a2c.total_timesteps": 100})


def test_a_trained_open_runs_under_a2c_and_reads_its_dormancy():
    """OPEN's published gridworld weights on a big gridworld (the conv torso): the run is finite,
    moves every layer, and the activation statistics reach the optimizer (without them, dormancy
    1 everywhere, the same seeds end elsewhere)."""
    cfg = load_train_config(env="big_dense_short", optimizer="open",
                            overrides={"optimizer.meta_params": "published:gridworld", "num_seeds": 1, "seed": 3,
                                       "agent.num_envs": 8, "agent.total_timesteps": 8 * 20 * 6})
    agent = make_a2c(cfg, build_optimizer(cfg.optimizer, cfg.a2c))
    start = agent.init(jax.random.key(3))
    state, metrics = jax.jit(agent.update)(start)
    moved = jax.tree.map(lambda a, b: float(jnp.abs(a - b).max()), state.params, start.params)
    assert all(np.isfinite(v) and v > 0 for v in jax.tree.leaves(moved)), moved
    assert np.isfinite(float(metrics["grad_norm"]))

    def without_activations(opt):
        return optax.GradientTransformationExtraArgs(
            opt.init, lambda g, s, p=None, **extra: opt.update(g, s, p, **{**extra, "activations": None}))

    blind = make_a2c(cfg, without_activations(build_optimizer(cfg.optimizer, cfg.a2c)))
    blind_state, _ = jax.jit(blind.update)(blind.init(jax.random.key(3)))
    assert not np.allclose(np.asarray(blind_state.params["torso"]["dense"]["kernel"]),
                           np.asarray(state.params["torso"]["dense"]["kernel"]))


# ------------------------------------------------------------------ pipeline training on Catch


@pytest.fixture(scope="module")
def catch_engine():
    cfg = load_meta_config(CATCH_META, {"pipeline.width": 4, "pipeline.agents_per_group": 2,
                                        "pipeline.reset_interval": 4})
    engine = pipeline_engine(cfg)
    return cfg, engine, engine.init(jax.random.key(0))


def test_catch_pipeline_agents_have_one_env_each_and_a_real_meta_gradient(catch_engine):
    cfg, engine, state = catch_engine
    assert engine.env_steps_per_iteration == 4 * 1 * 20 * 5  # agents x envs x steps x (4 inner + meta-loss)
    assert state.agents[0].obs.shape == (4, 1, 50)
    state = engine.begin_iteration(state)
    grads, _, _, metrics = engine.group_gradient(0, state.meta_params, jax.tree.map(lambda x: x[:2], state.agents[0]))
    norm = float(optax.tree.norm(grads))
    assert np.isfinite(norm) and norm > 0 and np.isfinite(float(metrics["meta_loss"]))


def test_task_gradient_rescale_sets_each_tasks_norm_exactly(catch_engine):
    cfg, engine, state = catch_engine
    rescaled = pipeline_engine(cfg.model_copy(update={"pipeline": cfg.pipeline.model_copy(
        update={"task_grad_rescale": 0.5})}))
    sums = tuple(jax.tree.map(lambda x, k=k: k * jnp.ones_like(x), state.meta_params) for k in (1.0, 3.0))
    plain = engine.meta_gradient(state.meta_params, sums)
    n = sum(x.size for x in jax.tree.leaves(state.meta_params))
    assert float(optax.tree.norm(plain)) == pytest.approx((1 + 3) / 4 * math.sqrt(n), rel=1e-5)  # mean over 4 agents
    assert float(optax.tree.norm(rescaled.meta_gradient(state.meta_params, sums))) == pytest.approx(0.5, rel=1e-5)


def test_an_agent_keeps_its_four_updates_and_the_meta_loss_rollout_is_not_an_update(catch_engine):
    """After a meta-iteration an agent holds theta_4 (4 inner updates) and the env state after the
    5th, fresh rollout, which updated nothing (the reference's MetaA2C)."""
    cfg, engine, state = catch_engine
    state = engine.begin_iteration(state)
    group = jax.tree.map(lambda x: x[:2], state.agents[0])
    _, _, after, _ = engine.group_gradient(0, state.meta_params, group)
    np.testing.assert_array_equal(np.asarray(after.update_idx), np.asarray(group.update_idx) + 4)
    learner = engine.agent(0, state.meta_params)
    one = jax.tree.map(lambda x: x[0], group)
    for _ in range(4):
        one, _ = learner.update(one)
    _, (one, _) = learner.fresh_loss(one)
    for a, b in zip(jax.tree.leaves(one.params), jax.tree.leaves(jax.tree.map(lambda x: x[0], after.params))):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(one.obs), np.asarray(after.obs[0]))


def test_a2c_config_for_an_env_with_continuous_actions_is_refused():
    with pytest.raises(ValueError, match="continuous actions"):
        from metaopt.config import TrainConfig

        TrainConfig(env=EnvConfig(name="ant"), a2c=A2CConfig())


def test_sweeps_and_plans_take_the_small_tasks():
    """A baseline sweep and an evaluation plan resolve A2C runs for Catch and the gridworlds; their
    `a2c:` overrides apply to A2C envs and `ppo:` ones to PPO envs."""
    from metaopt.config import BaselineSweepConfig, baseline_train_config, load_sweep_config
    from metaopt.evaluation.plan import load_plan, resolve_cells

    sweep = load_sweep_config(CONFIG_DIR / "tune" / "baselines_gridworlds.yaml", BaselineSweepConfig,
                              {"a2c": {"total_timesteps": 20480}})
    cfg = baseline_train_config(sweep, "big_sparse_long", "rmsprop", 3e-3)
    assert cfg.a2c.total_timesteps == 20480 and cfg.a2c.torso == "conv2x2" and cfg.optimizer.learning_rate == 3e-3
    assert len(sweep.learning_rates.values) == 6
    plan = load_plan(CONFIG_DIR / "eval" / "tiny.yaml", {"envs": ["catch", "small_dense_long", "breakout"],
                                                          "optimizers": ["adam", "rmsprop"], "total_timesteps": 25600,
                                                          "a2c": {"num_envs": 4}})
    cells = {(c.env, c.label): c.config for c in resolve_cells(plan)}
    for env in ("catch", "small_dense_long"):
        assert cells[env, "adam"].a2c.total_timesteps == 25600 and cells[env, "adam"].a2c.num_envs == 4
    assert cells["breakout", "adam"].a2c is None and cells["breakout", "adam"].ppo.num_envs == 8  # the plan's ppo:


def test_the_conv_torso_equals_flax_conv_on_channels_first_observations():
    """The big grids' torso: flax's Conv(16, 2x2, SAME) applied to (B, C, H, W) as the reference does
    (W read as the input features), computed as shifted matmuls."""
    import flax.linen as nn

    from metaopt.agents.a2c import conv2x2_same

    x = jax.random.normal(jax.random.key(0), (3, 5, 12, 14))
    conv = nn.Conv(16, (2, 2), padding="SAME")
    variables = conv.init(jax.random.key(1), x)
    want = conv.apply(variables, x)
    got = conv2x2_same(x, variables["params"]["kernel"]) + variables["params"]["bias"]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)

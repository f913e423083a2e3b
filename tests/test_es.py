"""OPEN's ES engine: it optimises, ranks failures worst, normalises tasks, resumes exactly."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metaopt.cli import main
from metaopt.config import CONFIG_DIR, ConfigError, ESConfig, load_meta_config, meta_config_at
from metaopt.meta.es import combine_fitness, make_es_engine, members_per_vmap, open_es_engine
from metaopt.meta.run import meta_train
from metaopt.optimizers.learned import load_meta_params
from metaopt.tracking.checkpoints import to_keep
from tests.helpers import assert_same_run

SMOKE = CONFIG_DIR / "meta" / "open_breakout_smoke.yaml"
TARGET = jnp.linspace(-1.0, 1.0, 10)


def quadratic(members, keys):
    """Fitness = -||x - target||^2, the same for every rollout."""
    f = -jnp.sum((members - TARGET) ** 2, axis=-1)
    return jnp.broadcast_to(f[:, None, None], (members.shape[0], keys.shape[0], 1))


def test_es_improves_a_deterministic_toy_fitness():
    cfg = ESConfig(population_size=32, members_per_shard=8, rollouts_per_member=2, sigma_init=0.1, learning_rate=0.05)
    engine = make_es_engine(cfg, jnp.zeros(10), quadratic)
    state = engine.init(jax.random.key(0))
    state, first = engine.step(state)
    for _ in range(60):
        state, last = engine.step(state)
    start = float(jnp.sum(TARGET ** 2))
    end = float(jnp.sum((state.strategy.mean - TARGET) ** 2))
    assert end < 0.1 * start, (start, end)
    assert float(last["fitness_mean"]) > float(first["fitness_mean"]) + 2.0


def test_nonfinite_fitness_ranks_worst_and_is_counted():
    cfg = ESConfig(population_size=8, sigma_init=0.1)

    def poisoned(value):
        def evaluate(members, keys):
            f = quadratic(members, keys)
            return f.at[0].set(value).at[5].set(-value if value == jnp.inf else value)
        return evaluate

    results = {}
    for name, value in [("nan", jnp.nan), ("inf", jnp.inf), ("worst", -1e9)]:
        engine = make_es_engine(cfg, jnp.zeros(10), poisoned(value))
        state, metrics = engine.step(engine.init(jax.random.key(1)))
        results[name] = (np.asarray(state.strategy.mean), metrics)
    # A NaN (or +/-inf) member moves the mean exactly as the worst finite fitness would.
    np.testing.assert_array_equal(results["nan"][0], results["worst"][0])
    np.testing.assert_array_equal(results["inf"][0], results["worst"][0])
    assert int(results["nan"][1]["nonfinite_members"]) == 2
    assert int(results["inf"][1]["nonfinite_members"]) == 2
    assert int(results["worst"][1]["nonfinite_members"]) == 0
    assert np.isfinite(float(results["nan"][1]["fitness_mean"]))


def test_multitask_fitness_by_hand():
    # 2 members x 2 rollouts x 2 tasks; references 50 and 10.
    raw = jnp.array([[[50.0, 10.0], [150.0, 30.0]], [[0.0, 5.0], [100.0, jnp.nan]]])
    got = np.asarray(combine_fitness(raw, jnp.array([50.0, 10.0])))
    # member 0: task means 100 and 20 -> 2.0 and 2.0 -> 2.0; member 1: NaN in a rollout -> NaN.
    assert got[0] == pytest.approx(2.0)
    assert np.isnan(got[1])


def test_multitask_config_needs_reference_returns():
    with pytest.raises(ValueError, match="reference_return"):
        meta_config_at({"method": "open", "tasks": ["breakout", "humanoid"]}, {})
    cfg = meta_config_at({"method": "open", "tasks": ["breakout", {"env": "humanoid", "reference_return": 5000}]}, {})
    assert [t.reference for t in cfg.tasks] == [50.08, 5000]


@pytest.mark.parametrize("override, fix", [
    ({"es.population_size": 7}, "must be even"),
    ({"es.members_per_shard": 3}, "does not divide population_size"),
    ({"pipeline": {"width": 2}}, "pipeline: not used by method open"),
    ({"optimizer.meta_params": str(SMOKE)}, "meta-training creates the meta-parameters"),
    ({"tasks": []}, "tasks"),
])
def test_bad_meta_config_is_one_line(override, fix):
    with pytest.raises(ConfigError, match=fix) as err:
        load_meta_config(SMOKE, override)
    assert "\n" not in str(err.value)


@pytest.fixture(scope="session")
def smoke_engine():
    cfg = load_meta_config(SMOKE)
    return cfg, open_es_engine(cfg)


def test_members_per_vmap_defaults_by_backend():
    cfg = ESConfig(population_size=16, members_per_shard=8)
    assert members_per_vmap(cfg, "cpu") == 1
    assert members_per_vmap(cfg, "gpu") == members_per_vmap(cfg, "tpu") == 8
    assert members_per_vmap(ESConfig(population_size=16, members_per_vmap=4), "cpu") == 4
    assert members_per_vmap(ESConfig(population_size=16, members_per_shard=8, members_per_vmap=32), "gpu") == 8


@pytest.mark.slow
def test_members_in_sequence_or_in_one_vmap_give_the_same_fitness():
    # One run at a time (no batching: the CPU default) and the whole shard of 4 members in
    # one vmap (the accelerator default); 2 rollouts per member.
    fitness = []
    for per_vmap in (1, 4):
        cfg = load_meta_config(SMOKE, {"es.members_per_vmap": per_vmap, "es.rollouts_per_member": 2})
        engine = open_es_engine(cfg)
        population, keys, _ = engine.ask(engine.init(jax.random.key(0)))
        fitness.append(np.asarray(engine.evaluate_shard(population[:4], keys)))
    assert fitness[0].shape == (4, 2, 1) and np.isfinite(fitness[0]).all()
    assert len(np.unique(fitness[0])) > 1  # members and rollouts differ
    np.testing.assert_allclose(fitness[1], fitness[0], rtol=1e-5)


@pytest.mark.slow
def test_real_env_generations_give_finite_fitness(smoke_engine, tmp_path):
    cfg, engine = smoke_engine
    result = meta_train(cfg, tmp_path, engine=engine, stop_after=2)
    assert len(result.history) == 2
    for row in result.history:
        assert np.isfinite(row["fitness_mean"]) and row["nonfinite_members"] == 0
        assert row["fitness_best"] >= row["fitness_mean"] >= row["fitness_min"]
    # The members differ: ranks carry information and the mean moves off zero.
    assert any(row["fitness_best"] > row["fitness_min"] for row in result.history)
    assert result.history[-1]["mean_norm"] > 0


def test_resume_from_a_checkpoint_equals_the_uninterrupted_run(smoke_engine, tmp_path):
    cfg, engine = smoke_engine
    full = meta_train(cfg, tmp_path / "full", engine=engine)
    meta_train(cfg, tmp_path / "cut", engine=engine, stop_after=2)
    resumed = meta_train(cfg, tmp_path / "cut", engine=engine)
    assert resumed.resumed_from == 2
    assert_same_run(full, resumed)
    iterations = [line.split(",")[0] for line in (tmp_path / "cut" / "metrics.csv").read_text().splitlines()[1:]]
    assert iterations == [str(i) for i in range(1, cfg.iterations + 1)]  # integers, also the rows rewritten on resume
    np.testing.assert_array_equal(np.loadtxt(tmp_path / "full" / "metrics.csv", delimiter=",", skiprows=1)[:, :-2],
                                  np.loadtxt(tmp_path / "cut" / "metrics.csv", delimiter=",", skiprows=1)[:, :-2])


def test_checkpoint_of_another_config_is_refused(smoke_engine, tmp_path):
    cfg, engine = smoke_engine
    meta_train(cfg, tmp_path, engine=engine, stop_after=2)
    other = load_meta_config(SMOKE, {"es.sigma_init": 0.25})
    with pytest.raises(ValueError, match="config_hash"):
        meta_train(other, tmp_path, engine=engine)


def test_cli_meta_train_writes_loadable_meta_params(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["meta-train", "--config", str(SMOKE), "--out", str(out), "--iterations", "1"]) == 0
    method, params = load_meta_params(out / "meta_params.safetensors", "open")
    assert method == "open" and "gru_params" in params
    for name in ("config.yaml", "metrics.csv", "summary.json", "meta_training.png", "checkpoints/ckpt_000001.safetensors"):
        assert (out / name).is_file(), name
    # The same --out with another config: a known failure, one line and exit 1, before any compute.
    capsys.readouterr()
    assert main(["meta-train", "--config", str(SMOKE), "--out", str(out), "--iterations", "1",
                 "--set", "es.sigma_init=0.25"]) == 1
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]  # after the progress line
    assert last.startswith("error: ") and "config_hash" in last and "use a new --out" in last and "Traceback" not in err


SPREAD_SCRIPT = """
import jax, jax.numpy as jnp, numpy as np
from metaopt.config import ESConfig
from metaopt.meta.es import make_es_engine
target = jnp.linspace(-1.0, 1.0, 10)
def evaluate(members, keys):
    f = -jnp.sum((members - target) ** 2, axis=-1)
    return jnp.broadcast_to(f[:, None, None], (members.shape[0], keys.shape[0], 1))
engine = make_es_engine(ESConfig(population_size=16, members_per_shard=8, sigma_init=0.1), jnp.zeros(10), evaluate)
population, keys, _ = engine.ask(engine.init(jax.random.key(0)))
shard = engine.evaluate_shard
placed = []
engine = engine.__class__(**{**engine.__dict__, "evaluate_shard": lambda m, k: placed.append(m.sharding) or shard(m, k)})
total = np.asarray(engine.evaluate(population, keys)).sum()
print(len(jax.local_devices()), len({d for s in placed for d in s.device_set}), total)
"""


@pytest.mark.slow
def test_shards_spread_over_local_devices():
    import os
    import subprocess
    import sys

    results = {}
    for devices in (1, 2):
        env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}
        out = subprocess.run([sys.executable, "-c", SPREAD_SCRIPT], env=env, capture_output=True, text=True, check=True)
        results[devices] = out.stdout.split()
    assert results[1][:2] == ["1", "1"] and results[2][:2] == ["2", "2"]  # each shard on both devices
    assert results[1][2] == results[2][2]  # same fitnesses


def test_config_hash_ignores_added_defaults_and_the_other_method():
    """A field added with a default keeps existing checkpoints resumable; a setting that
    changes the numbers changes the hash."""
    from metaopt.meta.run import config_hash

    base = load_meta_config(SMOKE)
    assert config_hash(base) == config_hash(load_meta_config(SMOKE, {"es.sigma_decay": 0.999}))  # = the default
    assert config_hash(base) == config_hash(load_meta_config(SMOKE, {"tracking.eval_seeds": 7, "iterations": 9}))
    assert config_hash(base) != config_hash(load_meta_config(SMOKE, {"es.learning_rate": 0.07}))


def test_keep_checkpoints_keeps_the_newest_and_the_best(smoke_engine, tmp_path):
    cfg, engine = smoke_engine
    kept = cfg.model_copy(update={"checkpoint_every": 1, "keep_checkpoints": 1})
    result = meta_train(kept, tmp_path, engine=engine)
    scores = {int(r["iteration"]): r["fitness_mean"] for r in result.history}
    left = sorted(int(p.stem.removeprefix("ckpt_")) for p in (tmp_path / "checkpoints").glob("ckpt_*.safetensors"))
    assert left == sorted({kept.iterations, max(scores, key=scores.get)})
    assert to_keep([2, 4, 6, 8], 2, {2: 5.0, 4: 1.0, 6: float("nan"), 8: 0.0}) == {2, 6, 8}
    assert to_keep([2, 4], 3, {}) == {2, 4}

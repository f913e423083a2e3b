"""Warm start: meta-training begins at a given optimizer (file or registered model), and a
source of the wrong method or size stops in one line before anything compiles."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from metaopt import registry
from metaopt.cli import main
from metaopt.config import CONFIG_DIR, ConfigError, TrackingConfig, load_meta_config
from metaopt.meta.run import make_engine
from metaopt.meta.warm_start import load_warm_start
from metaopt.optimizers import open as open_opt
from metaopt.optimizers import optim4rl
from metaopt.optimizers.learned import save_meta_params

OPEN_SMOKE = CONFIG_DIR / "meta" / "open_breakout_smoke.yaml"
OPTIM4RL_SMOKE = CONFIG_DIR / "meta" / "optim4rl_breakout_smoke.yaml"


@pytest.fixture()
def open_source(tmp_path):
    params = open_opt.init_meta_params(jax.random.key(3))
    return save_meta_params(tmp_path / "open_src.safetensors", "open", params), params


def _flat(tree) -> np.ndarray:
    return np.concatenate([np.ravel(x) for x in jax.tree.leaves(tree)])


def test_es_generation_zero_mean_is_the_source(open_source):
    path, params = open_source
    cfg = load_meta_config(OPEN_SMOKE, {"init_from": str(path)})
    warm = load_warm_start(cfg)
    engine = make_engine(cfg, warm.meta_params)
    state = engine.init(jax.random.key(0))
    np.testing.assert_array_equal(np.asarray(state.strategy.mean), np.asarray(open_opt.ravel(params)))
    np.testing.assert_array_equal(_flat(engine.meta_params(state)), _flat(params))
    population, _, _ = engine.ask(state)  # antithetic pairs around the source
    np.testing.assert_allclose(np.asarray(population).mean(0), np.asarray(open_opt.ravel(params)), atol=1e-6)
    cold = make_engine(cfg).init(jax.random.key(0))
    assert not np.asarray(cold.strategy.mean).any()  # without it: the zero (no-op) start


def test_published_npy_layout_is_accepted(tmp_path):
    params = open_opt.init_meta_params(jax.random.key(5))
    np.save(tmp_path / "published.npy", np.asarray(open_opt.ravel(params)))
    warm = load_warm_start(load_meta_config(OPEN_SMOKE, {"init_from": str(tmp_path / "published.npy")}))
    np.testing.assert_array_equal(_flat(warm.meta_params), _flat(params))


def test_pipeline_starts_from_the_source(tmp_path):
    params = optim4rl.init_meta_params(jax.random.key(7), hidden=8)
    path = save_meta_params(tmp_path / "o4.safetensors", "optim4rl", params)
    cfg = load_meta_config(OPTIM4RL_SMOKE, {"init_from": str(path)})
    state = make_engine(cfg, load_warm_start(cfg).meta_params).init(jax.random.key(0))
    np.testing.assert_array_equal(_flat(state.meta_params), _flat(params))


def test_registered_model_resolves_to_its_version(tmp_path, monkeypatch, open_source):
    monkeypatch.setattr(registry, "CACHE", tmp_path / "cache")
    tracking = TrackingConfig(uri=f"sqlite:///{tmp_path}/mlruns.db")
    _, params = open_source
    np.save(tmp_path / "w.npy", np.asarray(open_opt.ravel(params)))
    registry.import_open(tmp_path / "w.npy", "open-src", tracking)
    registry.import_open(tmp_path / "w.npy", "open-src", tracking)
    cfg = load_meta_config(OPEN_SMOKE, {"init_from": "models:/open-src@latest", "tracking.uri": tracking.uri})
    warm = load_warm_start(cfg)
    assert warm.tags == {"init_from": "models:/open-src@latest", "init_resolved": "models:/open-src/2"}
    np.testing.assert_array_equal(_flat(warm.meta_params), _flat(params))


@pytest.mark.parametrize("case, fix", [
    ("other_method", "holds optim4rl meta-parameters; meta-training open needs open ones"),
    ("other_size", "set optimizer.larger to match (larger: true)"),
    ("missing", "does not exist"),
    ("no_model", "no alias 'champion' of model 'nothing'"),
])
def test_bad_sources_stop_in_one_line(case, fix, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlruns.db")
    source = {
        "other_method": save_meta_params(tmp_path / "o4.safetensors", "optim4rl",
                                         optim4rl.init_meta_params(jax.random.key(0), hidden=8)),
        "other_size": save_meta_params(tmp_path / "big.safetensors", "open",
                                       open_opt.init_meta_params(jax.random.key(0), larger=True)),
        "missing": tmp_path / "nope.safetensors",
        "no_model": "models:/nothing@champion",
    }[case]
    with pytest.raises(ConfigError, match="init_from|nothing"):
        load_warm_start(load_meta_config(OPEN_SMOKE, {"init_from": str(source)}))
    rc = main(["meta-train", "--config", str(OPEN_SMOKE), "--out", str(tmp_path / "run"), "--init", str(source)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and fix in err[0], err
    assert not (tmp_path / "run" / "checkpoints").exists()  # stopped before any generation

"""Bad input: one line naming the field and the fix, exit code 2, before any compilation."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from metaopt.cli import main
from metaopt.config import (
    CONFIG_DIR,
    BaselineSweepConfig,
    ConfigError,
    TrackingConfig,
    load_meta_config,
    load_sweep_config,
    load_train_config,
    meta_config_at,
)

BAD_INPUTS = [
    (["--env", "pong"], "env", "choose one of"),
    (["--env", "breakout", "--optimizer", "sgdx"], "optimizer", "choose one of"),
    (["--env", "breakout", "--total-steps", "0"], "ppo.total_timesteps", "greater than 0"),
    (["--env", "breakout", "--total-steps", "-5"], "ppo.total_timesteps", "greater than 0"),
    (["--env", "breakout", "--total-steps", "lots"], "--total-steps", "not a number"),
    (["--env", "breakout", "--seeds", "0"], "num_seeds", "greater than 0"),
    (["--env", "breakout", "--set", "ppo.num_envs=-1"], "ppo.num_envs", "greater than 0"),
    (["--env", "breakout", "--set", "ppo.num_minibatches=7"], "num_minibatches=7", "pick a divisor of 8192"),
    (["--env", "breakout", "--total-steps", "1000"], "total_timesteps=1000", "below one batch"),
    (["--env", "breakout", "--set", "ppo.num_envz=3"], "ppo.num_envz", "remove it or fix its spelling"),
    (["--env", "breakout", "--lr", "-1"], "optimizer.learning_rate", "greater than 0"),
    (["--config", "/nonexistent/run.yaml"], "/nonexistent/run.yaml", "does not exist"),
    ([], "env", "give --env NAME or --config FILE"),
    (["--env", "breakout", "--optimizer", "open"], "optimizer.meta_params", "pass --meta-params FILE"),
    (["--env", "breakout", "--optimizer", "optim4rl", "--meta-params", "/nonexistent/m.safetensors"],
     "optimizer.meta_params", "does not exist"),
    (["--env", "breakout", "--optimizer", "open", "--lr", "0.1"], "optimizer.learning_rate", "remove it"),
]


@pytest.mark.parametrize("args, field, fix", BAD_INPUTS)
def test_bad_input_is_one_line_exit_2(args, field, fix, capsys, tmp_path):
    rc = main(["train", *args, "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.count("\n") == 1 and err.startswith("error: "), err
    assert field in err and fix in err, err


@pytest.mark.parametrize(
    "content, fix",
    [(np.zeros(999, np.float32), "999 values match no OPEN network"), (b"garbage" * 20, "not a readable safetensors")],
)
def test_bad_meta_params_file_is_one_line_exit_2(content, fix, capsys, tmp_path):
    path = tmp_path / ("m.npy" if isinstance(content, np.ndarray) else "m.safetensors")
    np.save(path, content) if isinstance(content, np.ndarray) else path.write_bytes(content)
    rc = main(["train", "--env", "breakout", "--optimizer", "open", "--meta-params", str(path), "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "optimizer.meta_params" in err and fix in err, err


def test_unknown_optimizer_in_compare(capsys, tmp_path):
    assert main(["compare", "--env", "breakout", "--optimizers", "adam", "nope", "--out", str(tmp_path)]) == 2
    assert "optimizer" in capsys.readouterr().err


def test_console_script_exits_2_without_importing_jax(tmp_path):
    """The real entry point: validation happens before JAX is even imported."""
    code = (
        "import sys; from metaopt.cli import main; "
        f"rc = main(['train', '--env', 'breakout', '--set', 'ppo.num_minibatches=7', '--out', {str(tmp_path)!r}]); "
        "assert 'jax' not in sys.modules, 'jax imported before validation'; sys.exit(rc)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().startswith("error: ") and "num_minibatches" in proc.stderr


def test_argparse_errors_are_one_line_exit_2(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["train", "--env", "breakout"])  # --out missing
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--out" in err


def test_published_configs_all_validate():
    for env in ("breakout", "asterix", "space_invaders", "freeway", "ant", "humanoid"):
        cfg = load_train_config(env=env)
        assert cfg.env.name == env
        assert cfg.ppo.batch_size % cfg.ppo.num_minibatches == 0
    ant = load_train_config(env="ant")
    assert (ant.ppo.num_envs, ant.ppo.num_steps, ant.ppo.num_minibatches, ant.ppo.activation) == (2048, 10, 32, "tanh")
    assert ant.env.normalize_obs and ant.env.normalize_reward and ant.env.episode_length == 1000
    brk = load_train_config(env="breakout")
    assert (brk.ppo.num_envs, brk.ppo.num_steps, brk.ppo.total_timesteps, brk.ppo.ent_coef) == (64, 128, 10_000_000, 0.01)


def test_switching_optimizer_takes_its_defaults():
    cfg = load_train_config(env="breakout", optimizer="rmsprop", overrides={"optimizer.learning_rate": 1e-3})
    assert cfg.optimizer.name == "rmsprop" and cfg.optimizer.learning_rate == 1e-3


def test_yaml_syntax_error_is_reported(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("env: {name: breakout\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_train_config(config_file=bad)


def test_l2_run_registers_under_its_own_name():
    base = {"method": "optim4rl", "tasks": ["breakout"]}
    assert meta_config_at(base, {}).model_name == "optim4rl-breakout"
    l2 = meta_config_at({**base, "pipeline": {"l2": 1e-4}}, {})
    assert l2.model_name == "optim4rl-breakout-l2"
    named = meta_config_at({**base, "pipeline": {"l2": 1e-4}, "tracking": {"model_name": "mine"}}, {})
    assert named.model_name == "mine"


def test_cpu_recipes_match_their_tuned_baselines():
    """The CPU recipes' inner budget is the one their tuned Adam/RMSProp were swept at, and the
    fresh-seed evaluation seeds are not the meta-training or tuning seeds."""
    sweep = load_sweep_config(CONFIG_DIR / "tune" / "baselines_breakout_cpu.yaml", BaselineSweepConfig)
    for name in ("open_breakout_cpu", "optim4rl_breakout_cpu"):
        cfg = load_meta_config(CONFIG_DIR / "meta" / f"{name}.yaml")
        ppo = cfg.tasks[0].ppo
        assert ppo.num_updates * ppo.batch_size == sweep.ppo["total_timesteps"] == ppo.total_timesteps
        assert cfg.tracking.eval_seed not in (cfg.seed, sweep.seed)
        assert cfg.distributed.workers == 2
    recipe = load_meta_config(CONFIG_DIR / "meta" / "optim4rl_breakout_cpu.yaml")
    assert recipe.pipeline.reset_interval * recipe.pipeline.inner_updates == recipe.tasks[0].ppo.num_updates


def test_default_tracking_store_is_outside_the_source_tree(tmp_path, monkeypatch):
    from metaopt.tracking.mlflow_run import tracking_uri

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert tracking_uri(TrackingConfig()) == f"sqlite:///{tmp_path}/metaopt/mlruns.db"
    assert (tmp_path / "metaopt").is_dir()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert tracking_uri(TrackingConfig()) == "http://127.0.0.1:5000"
    assert tracking_uri(TrackingConfig(uri="sqlite:///x.db")) == "sqlite:///x.db"


def test_validation_reads_no_files(monkeypatch):
    """Resolved configs validate again without any file: what a Ray worker on another node,
    holding only the dumped data, does."""
    from pathlib import Path

    import metaopt.config.loading as config_module
    from metaopt.config import EvalPlanConfig, MetaTrainConfig, SensitivitySweepConfig, TrainConfig
    from metaopt.evaluation.plan import load_plan

    train = load_train_config(env="breakout", optimizer="open", overrides={"optimizer.meta_params": "published:breakout"})
    meta = load_meta_config(CONFIG_DIR / "meta" / "optim4rl_breakout_cpu.yaml")
    plan = load_plan(CONFIG_DIR / "eval" / "minatar_1e7.yaml")
    baselines = load_sweep_config(CONFIG_DIR / "tune" / "baselines_tiny.yaml", BaselineSweepConfig)
    sensitivity = load_sweep_config(CONFIG_DIR / "tune" / "sensitivity_open_tiny.yaml", SensitivitySweepConfig)

    def no_files(*args, **kwargs):
        raise AssertionError("validation read a file")

    monkeypatch.setattr(config_module, "read_yaml", no_files)
    monkeypatch.setattr(Path, "is_file", no_files)
    monkeypatch.setattr(Path, "exists", no_files)
    assert TrainConfig.model_validate(train.model_dump(mode="json")) == train
    assert MetaTrainConfig.model_validate(meta.dump()).dump() == meta.dump()
    for model, cfg in ((EvalPlanConfig, plan), (BaselineSweepConfig, baselines), (SensitivitySweepConfig, sensitivity)):
        assert model.model_validate(cfg.model_dump(mode="json")) == cfg


@pytest.mark.parametrize("storage, fix", [
    ("http://bucket/tune", "scheme 'http' is not one pyarrow stores Tune experiments on"),
    ("s3://", "names no bucket"),
    ("hdfs://namenode/tune", "scheme 'hdfs'"),
    ("s3://b/tune?endpoint_override=127.0.0.1:9000", "set them in the environment"),
])
def test_sweep_storage_must_be_a_folder_or_an_object_store_uri(storage, fix):
    with pytest.raises(ConfigError, match=f"storage.*{fix}"):
        load_sweep_config(CONFIG_DIR / "tune" / "baselines_tiny.yaml", BaselineSweepConfig, {"storage": storage})
    ok = load_sweep_config(CONFIG_DIR / "tune" / "baselines_tiny.yaml", BaselineSweepConfig, {"storage": "s3://b/tune"})
    assert ok.storage == "s3://b/tune"

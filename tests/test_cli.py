"""`metaopt train` / `compare` end to end at a tiny size: files a person and a script read."""

from __future__ import annotations

import csv
import json

import pytest

from metaopt.cli import main
from tests.helpers import TINY

TINY_ARGS = [arg for k, v in TINY.items() if k != "ppo.total_timesteps" for arg in ("--set", f"{k}={v}")]


@pytest.mark.slow
def test_train_writes_results_curves_plot(tmp_path, capsys):
    out = tmp_path / "run"
    rc = main(["train", "--env", "breakout", "--optimizer", "adam", "--total-steps", "384",
               "--seeds", "2", "--out", str(out), *TINY_ARGS])
    assert rc == 0
    res = json.loads((out / "results.json").read_text())
    assert len(res["final_return"]) == 2 and res["env_steps_per_second"] > 0
    assert res["config"]["ppo"]["num_envs"] == 8 and res["num_updates"] == 3
    assert res["config"]["env"]["episode_length"] == 1000  # resolved from gymnax, not left empty
    rows = list(csv.DictReader((out / "curves.csv").open()))
    assert len(rows) == 3 and {"return_mean", "return_stderr", "return_seed1"} <= set(rows[0])
    assert (out / "returns.png").stat().st_size > 10_000
    assert "final return" in capsys.readouterr().out


def test_compare_of_one_optimizer_keeps_the_comparison_layout(tmp_path):
    out = tmp_path / "one"
    rc = main(["compare", "--env", "breakout", "--optimizers", "adam", "--total-steps", "384",
               "--out", str(out), *TINY_ARGS])
    assert rc == 0
    res = json.loads((out / "results.json").read_text())
    assert set(res["runs"]) == {"adam"} and (out / "adam" / "curves.csv").exists()


@pytest.mark.slow
def test_compare_writes_one_folder_per_optimizer(tmp_path):
    out = tmp_path / "cmp"
    rc = main(["compare", "--env", "breakout", "--optimizers", "adam", "rmsprop", "--total-steps", "384",
               "--out", str(out), *TINY_ARGS])
    assert rc == 0
    res = json.loads((out / "results.json").read_text())
    assert set(res["runs"]) == {"adam", "rmsprop"}
    assert (out / "adam" / "curves.csv").exists() and (out / "rmsprop" / "results.json").exists()


@pytest.mark.slow
def test_train_with_learned_optimizers(tmp_path):
    """`--optimizer open|optim4rl --meta-params FILE` through the same loop; compare takes
    NAME=FILE for each learned optimizer."""
    import jax

    from metaopt.optimizers import optim4rl
    from metaopt.optimizers.learned import save_meta_params
    o4_file = save_meta_params(tmp_path / "o4.safetensors", "optim4rl", optim4rl.init_meta_params(jax.random.key(0)))
    optimizers, meta = ["optim4rl", "open"], [f"optim4rl={o4_file}", "open=published:breakout"]
    out = tmp_path / "learned"
    rc = main(["compare", "--env", "breakout", "--optimizers", *optimizers, "--total-steps", "384",
               "--out", str(out), *[a for m in meta for a in ("--meta-params", m)], *TINY_ARGS])
    assert rc == 0
    runs = json.loads((out / "results.json").read_text())["runs"]
    assert set(runs) == {"optim4rl-o4", "open-breakout_OPEN"}
    for run in runs.values():
        assert all(isinstance(x, float) for x in run["final_return"])
        assert run["config"]["optimizer"]["meta_params"]


def test_set_optimizer_fields_apply_to_a_registered_model(tmp_path, monkeypatch, capsys):
    """`--set optimizer.*` goes on top of a models:/ optimizer's registered settings, and a
    field that optimizer lacks stops in one line (it was once dropped silently)."""
    import jax

    from metaopt import registry
    from metaopt.cli import _resolve, build_parser
    from metaopt.optimizers import optim4rl
    from metaopt.optimizers.learned import save_meta_params

    path = save_meta_params(tmp_path / "o4.safetensors", "optim4rl", optim4rl.init_meta_params(jax.random.key(0)))
    settings = {"name": "optim4rl", "learning_rate": 3e-4, "clip_elementwise": 1.0, "max_grad_norm": None, "hidden": 8}
    monkeypatch.setattr(registry, "fetch", lambda uri, tracking=None: (path, "optim4rl", settings))
    args = build_parser().parse_args(["train", "--env", "breakout", "--optimizer", "models:/o4@champion", "--out", "x",
                                      "--set", "optimizer.learning_rate=0.002"])
    cfg = _resolve(args, args.optimizer)
    assert cfg.optimizer.learning_rate == 0.002 and cfg.optimizer.clip_elementwise == 1.0
    assert cfg.optimizer.meta_params == str(path)
    rc = main(["train", "--env", "breakout", "--optimizer", "models:/o4@champion", "--out", str(tmp_path / "y"),
               "--set", "optimizer.b1=0.5"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "optimizer" in err and "b1" in err and len(err.splitlines()) == 1


def test_unreachable_registry_has_its_own_exit_code(tmp_path, monkeypatch, capsys):
    from tests.helpers import free_port

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    rc = main(["train", "--env", "breakout", "--optimizer", "models:/open-breakout@champion", "--out", str(tmp_path),
               "--tracking-uri", f"http://127.0.0.1:{free_port()}"])
    err = capsys.readouterr().err.strip()
    assert rc == 3 and "cannot be read" in err and len(err.splitlines()) == 1


@pytest.mark.slow
def test_train_and_compare_are_recorded_in_mlflow(tmp_path):
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path}/m.db"
    out = tmp_path / "cmp"
    assert main(["compare", "--env", "breakout", "--optimizers", "adam", "rmsprop", "--total-steps", "384",
                 "--seeds", "2", "--out", str(out), "--tracking-uri", uri, *TINY_ARGS]) == 0
    client = MlflowClient(tracking_uri=uri)
    (exp,) = [e for e in client.search_experiments() if e.name == "metaopt-train"]
    runs = {r.data.params["optimizer.name"]: r for r in client.search_runs([exp.experiment_id])}
    assert set(runs) == {"adam", "rmsprop"}
    results = json.loads((out / "results.json").read_text())["runs"]
    for name, run in runs.items():
        finals = sorted(client.get_metric_history(run.info.run_id, "final_return"), key=lambda m: m.step)
        assert [m.value for m in finals] == pytest.approx(results[name]["final_return"])
        curve = client.get_metric_history(run.info.run_id, "return_mean")
        assert len(curve) >= 1 and all(m.step % 128 == 0 for m in curve)  # per update, in env steps
        assert {a.path for a in client.list_artifacts(run.info.run_id)} == {"results.json", "curves.csv", "returns.png"}
        assert run.info.status == "FINISHED" and run.data.tags["metaopt.out"] == str(out.resolve())


def test_ray_jobs_evaluate_help_documents_both_modes():
    import subprocess
    import sys

    from tests.helpers import PROJECT

    out = subprocess.run([sys.executable, "ray_jobs/evaluate.py", "--help"], cwd=PROJECT, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "--plan PLAN" in out.stdout and "--optimizers OPTIMIZERS" in out.stdout and "--report" in out.stdout


@pytest.mark.parametrize("argv", [
    ["train", "--env", "catch", "--out", "runs/x"],
    ["meta-train", "--config", "configs/meta/optim4rl_catch_demo.yaml", "--out", "runs/x"],
    ["tune-baselines", "--config", "configs/tune/baselines_tiny.yaml", "--out", "runs/x"],
])
def test_every_entry_point_refuses_a_relative_out_under_ray_job_submit(argv, monkeypatch, capsys):
    monkeypatch.setenv("RAY_JOB_CONFIG_JSON_ENV_VAR", "{}")  # what Ray sets for a submitted job's driver
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "temporary copy of the repo" in err and "--out runs/x" in err

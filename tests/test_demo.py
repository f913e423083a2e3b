"""`make demo` itself (the Makefile's two steps, embedded Ray, a real MLflow store) on a tiny
budget: what a new user's first command writes, registers and compares."""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess

import pytest
import yaml
from mlflow import MlflowClient

from tests.helpers import PROJECT

pytestmark = [pytest.mark.slow, pytest.mark.ray]

TINY_PPO = "{num_envs: 8, num_steps: 16, num_minibatches: 2, update_epochs: 2, total_timesteps: 1024}"


def test_make_demo_meta_trains_registers_and_compares_on_a_tiny_budget(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlruns.db"
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | {"MLFLOW_TRACKING_URI": uri}
    meta_args = f"--iterations 2 --set es.population_size=4 --set tracking.eval_seeds=1 " \
                f"--set 'tasks=[{{env: breakout, ppo: {TINY_PPO}}}]'"
    eval_args = "--total-steps 1024 --seeds 2 --set ppo.num_envs=8 --set ppo.num_steps=16 " \
                "--set ppo.num_minibatches=2 --set ppo.update_epochs=2"
    o4r_meta_args = "--iterations 2 --set pipeline.width=4 --set pipeline.agents_per_group=2 " \
                    "--set pipeline.reset_interval=2 --set tracking.eval_seeds=1 --set tracking.eval_total_timesteps=2560"
    o4r_eval_args = "--total-steps 5120 --seeds 2"
    proc = subprocess.run(["make", "--no-print-directory", "demo", f"DEMO_OUT={tmp_path}/demo",
                           f"DEMO_META_ARGS={meta_args}", f"DEMO_EVAL_ARGS={eval_args}",
                           f"DEMO_O4R_META_ARGS={o4r_meta_args}", f"DEMO_O4R_EVAL_ARGS={o4r_eval_args}"],
                          cwd=PROJECT, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    meta, evaluation = tmp_path / "demo" / "meta", tmp_path / "demo" / "eval"

    # Meta-training: two generations, finite fitness, a curve, a registered champion whose
    # lineage names the CPU recipe's generation-10 optimizer it started from.
    with (meta / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [int(r["iteration"]) for r in rows] == [1, 2]
    assert all(math.isfinite(float(r["fitness_mean"])) and float(r["nonfinite_members"]) == 0 for r in rows)
    assert (meta / "meta_training.png").stat().st_size > 10_000
    job = json.loads((meta / "job.json").read_text())
    assert job["model"] == "open-breakout-demo" and job["version"] == 1 and job["promoted_to_champion"]
    client = MlflowClient(tracking_uri=uri)
    champion = client.get_model_version_by_alias("open-breakout-demo", "champion")
    assert str(champion.version) == "1"
    assert client.get_run(job["run_id"]).data.tags["init_from"].endswith("open_breakout_cpu_gen10.safetensors")

    # The comparison: the champion and both tuned baselines on the same seeds.
    runs = json.loads((evaluation / "results.json").read_text())["runs"]
    assert sorted(runs) == sorted(["open-breakout-demo-v1", "adam:tuned", "rmsprop:tuned"])
    tuned = yaml.safe_load((PROJECT / "configs/tuned/breakout_cpu.yaml").read_text())
    for label, run in runs.items():
        assert run["num_seeds"] == 2 and len(run["final_return"]) == 2, label
        assert all(math.isfinite(r) for r in run["final_return"]), label
        assert run["config"]["ppo"]["total_timesteps"] == 1024, label
    for name in ("adam", "rmsprop"):
        assert runs[f"{name}:tuned"]["config"]["optimizer"]["learning_rate"] == pytest.approx(
            tuned["breakout"][name]["learning_rate"])
    assert (evaluation / "returns.png").stat().st_size > 10_000

    # Optim4RL on Catch: pipeline training registered its champion, which trains A2C agents beside
    # Adam and RMSProp at the reference's settings (1e-3, no clipping) on the same seeds.
    o4r = tmp_path / "demo" / "optim4rl_meta"
    with (o4r / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [int(r["iteration"]) for r in rows] == [1, 2] and all(math.isfinite(float(r["meta_loss"])) for r in rows)
    assert json.loads((o4r / "job.json").read_text())["model"] == "optim4rl-catch-demo"
    runs = json.loads((tmp_path / "demo" / "optim4rl_eval" / "results.json").read_text())["runs"]
    assert sorted(runs) == sorted(["optim4rl-catch-demo-v1", "adam", "rmsprop"])
    for label, run in runs.items():
        assert run["config"]["a2c"]["total_timesteps"] == 5120 and run["config"]["env"]["name"] == "catch", label
        assert len(run["final_return"]) == 2 and all(math.isfinite(r) for r in run["final_return"]), label
    assert runs["adam"]["config"]["optimizer"]["learning_rate"] == pytest.approx(1e-3)
    assert runs["adam"]["config"]["optimizer"]["max_grad_norm"] is None

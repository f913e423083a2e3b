"""Ray Tune baseline sweeps as users run them: `ray_jobs/tune_baselines.py` on an embedded Ray,
a real sqlite MLflow store, tiny budgets. The sweep is interrupted with Ctrl-C (SIGINT) after
two trials and resumed: finished trials are not run again. Config errors for both sweeps."""

from __future__ import annotations

import math
import re
import signal
import subprocess
import time

import pytest
from mlflow import MlflowClient

from metaopt.cli import main
from metaopt.config import (
    BaselineSweepConfig,
    ConfigError,
    SensitivitySweepConfig,
    baseline_train_config,
    load_sweep_config,
    load_train_config,
    sensitivity_base_config,
    sensitivity_meta_config,
)
from metaopt.tracking.sweeps import SWEEP_TAG
from tests.sweep_helpers import BASELINES_TINY, PROJECT, SENSITIVITY_TINY, child_runs, finished_results, read_csv, sweep_command


@pytest.fixture(scope="module")
def baseline_sweep(tmp_path_factory):
    """The tiny baseline sweep, one trial at a time, stopped by SIGINT once two trials have
    finished, then the same command again."""
    out = tmp_path_factory.mktemp("tune_baselines")
    cmd = sweep_command("tune_baselines.py", BASELINES_TINY, out, "--set", f"tuned_file={out}/tuned.yaml",
                   "--set", "resources.max_concurrent_trials=1")
    first_log = out / "first.log"
    with first_log.open("w") as log:
        proc = subprocess.Popen(cmd, cwd=PROJECT, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 600
        while "trial 2/4" not in first_log.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, first_log.read_text()[-3000:]
            time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        first_rc = proc.wait(timeout=120)
    experiment = out / "baselines-tiny"
    before = finished_results(experiment)
    second = subprocess.run(cmd, cwd=PROJECT, capture_output=True, text=True, timeout=900)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    return {"out": out, "first_rc": first_rc, "first_log": first_log.read_text(), "before": before,
            "second": second.stdout + second.stderr, "experiment": experiment}


@pytest.mark.slow
@pytest.mark.ray
def test_interrupted_sweep_resumes_without_rerunning_finished_trials(baseline_sweep):
    s = baseline_sweep
    assert s["first_rc"] == 130 and "run the same command again to resume" in s["first_log"]
    assert 2 <= len(s["before"]) < 4  # stopped mid-sweep
    assert f"{len(s['before'])} of 4 trials already finished" in s["second"]
    after = finished_results(s["experiment"])
    assert len(after) == 4
    for trial, result in s["before"].items():
        assert after[trial] == result  # not run again: not one report more or different
    assert len(re.findall(r"^trial \d/4 final return", s["second"], re.M)) == 4 - len(s["before"])


@pytest.mark.slow
@pytest.mark.ray
def test_baseline_sweep_picks_best_and_writes_tuned_file_csv_plot_and_mlflow(baseline_sweep):
    out = baseline_sweep["out"]
    rows = read_csv(out / "trials.csv")
    assert len(rows) == 4 and {r["status"] for r in rows} == {"completed"}
    tuned = out / "tuned.yaml"
    for optimizer in ("adam", "rmsprop"):
        group = [r for r in rows if r["optimizer"] == optimizer]
        assert len({r["learning_rate"] for r in group}) == 2
        best = max(group, key=lambda r: float(r["final_return"]))
        cfg = load_train_config(env="breakout", optimizer=f"{optimizer}:tuned", tuned_file=tuned)
        assert cfg.optimizer.name == optimizer and cfg.optimizer.learning_rate == float(best["learning_rate"])
    assert (out / "lr_sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    uri = f"sqlite:///{out}/mlruns.db"
    client = MlflowClient(tracking_uri=uri)
    exp = [e.experiment_id for e in client.search_experiments()]
    parents = client.search_runs(exp, filter_string=f"tags.`{SWEEP_TAG}` = '{baseline_sweep['experiment']}'")
    assert len(parents) == 1  # the interrupted run recorded nothing; the resumed one once
    children = child_runs(uri, parents[0].info.run_id)
    assert len(children) == 4
    by_trial = {c.data.tags["metaopt.trial_id"]: c for c in children}
    for r in rows:
        child = by_trial[r["trial_id"]]
        assert math.isclose(child.data.metrics["final_return"], float(r["final_return"]), rel_tol=1e-6)
        assert float(child.data.params["learning_rate"]) == float(r["learning_rate"])
        assert len(client.get_metric_history(child.info.run_id, "episode_return")) > 1
    artifacts = {a.path for a in client.list_artifacts(parents[0].info.run_id)}
    assert {"trials.csv", "lr_sweep.png", "tuned.yaml"} <= artifacts


@pytest.mark.slow
@pytest.mark.ray
def test_report_shows_the_sweep_and_the_chosen_rate(baseline_sweep, tmp_path, capsys):
    from metaopt.evaluation.study_report import write_report

    out = baseline_sweep["out"]
    rows = read_csv(out / "trials.csv")
    text = write_report([], tmp_path, baselines=[out]).read_text()
    assert "## 1. Main comparison: OPEN, Optim4RL, Adam and RMSProp\n\nNot run." in text
    table = [line for line in text.splitlines() if line.startswith(f"| {out.name} | breakout |")]
    assert len(table) == 4
    for optimizer in ("adam", "rmsprop"):
        best = max((r for r in rows if r["optimizer"] == optimizer), key=lambda r: float(r["final_return"]))
        chosen = [line for line in table if f"| {optimizer} | **" in line]
        assert len(chosen) == 1 and f"**{float(best['learning_rate']):.3g}**" in chosen[0]
        assert f"{float(best['final_return']):.2f} ± " in chosen[0] and chosen[0].endswith("| completed |")
    assert (tmp_path / "figures" / f"baselines-{out.name}" / "lr_sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["report", str(out), "--baselines", str(tmp_path), "--out", str(tmp_path / "r")]) == 2
    assert f"--baselines: {tmp_path} holds no trials.csv" in capsys.readouterr().err


def test_trials_file_round_trip_best_and_spread(tmp_path):
    from metaopt.tuning.sensitivity import baseline_spreads
    from metaopt.tuning.trials import best_per_group, read_trials, write_trials

    def row(i, env, optimizer, lr, status, ret):
        return {"trial_id": f"t{i}", "env": env, "optimizer": optimizer, "learning_rate": lr, "status": status,
                "final_return": ret, "final_return_se": 0.5, "last_episode_return": ret, "env_steps": 1000,
                "env_steps_per_second": 10.0, "seconds": 1.0, "seed_returns": [ret - 1, ret + 1]}

    rows = [row(0, "breakout", "adam", 0.01, "completed", 8.0), row(1, "breakout", "adam", 0.001, "completed", 2.0),
            row(2, "breakout", "adam", 0.003, "stopped early", float("nan")),
            row(3, "asterix", "adam", 0.001, "completed", 4.0), row(4, "asterix", "adam", 0.01, "completed", 6.0),
            row(5, "breakout", "rmsprop", 0.001, "completed", 3.0)]
    write_trials(tmp_path / "trials.csv", rows)
    back = read_trials(tmp_path / "trials.csv")
    assert [r["learning_rate"] for r in back if r["env"] == "breakout" and r["optimizer"] == "adam"] == [0.001, 0.003, 0.01]
    assert math.isnan(next(r for r in back if r["trial_id"] == "t2")["final_return"])
    assert next(r for r in back if r["trial_id"] == "t0")["seed_returns"] == [7.0, 9.0]  # per seed, in seed order
    best = best_per_group(back)
    assert best["breakout"]["adam"]["trial_id"] == "t0" and best["breakout"]["adam"]["at_grid_edge"]
    assert best["breakout"]["rmsprop"]["final_return"] == 3.0
    # mean over envs of best / worst: breakout 8 / 2, asterix 6 / 4; RMSProp has one point, no spread
    assert baseline_spreads(tmp_path / "trials.csv", ["breakout", "asterix"]) == {"adam (learning rate)": (4.0 + 1.5) / 2}


@pytest.mark.parametrize("command, config, sets, expected", [
    ("tune-baselines", BASELINES_TINY, ["envs=[pong]"], "envs: unknown env 'pong'"),
    ("tune-baselines", BASELINES_TINY, ["learning_rates.points=0"], "learning_rates.points"),
    ("tune-baselines", BASELINES_TINY, ["ppo.num_minibatches=3"], "ppo"),
    ("tune-sensitivity", SENSITIVITY_TINY, ["grid={es.sigma_init: [0.1]}"], "grid: has 1 keys"),
    ("tune-sensitivity", SENSITIVITY_TINY, ["grid={es.sigma_init: [0.1, -1.0], es.learning_rate: [0.01]}"],
     "grid point es.sigma_init=-1.0"),
    ("tune-sensitivity", SENSITIVITY_TINY, ["base=configs/meta/missing.yaml"],
     "base: file configs/meta/missing.yaml does not exist"),
])
def test_bad_sweep_config_fails_before_compute(command, config, sets, expected, tmp_path, capsys):
    argv = [command, "--config", config, "--out", str(tmp_path)]
    assert main(argv + [x for s in sets for x in ("--set", s)]) == 2
    err = capsys.readouterr().err.strip()
    assert expected in err and len(err.splitlines()) == 1
    assert not any(tmp_path.iterdir())  # nothing started


@pytest.mark.parametrize("path", sorted((PROJECT / "configs" / "tune").glob("*.yaml")), ids=lambda p: p.stem)
def test_shipped_sweep_configs_validate(path):
    import itertools

    if path.stem.startswith("baselines"):
        sweep = load_sweep_config(path, BaselineSweepConfig)
        rates = sweep.learning_rates.values
        assert len(rates) == sweep.learning_rates.points and rates[0] == sweep.learning_rates.low
        assert rates == sorted(rates) and rates[-1] == pytest.approx(sweep.learning_rates.high, rel=1e-5)
        cfg = baseline_train_config(sweep, sweep.envs[0], sweep.optimizers[0], rates[-1])
        assert cfg.optimizer.learning_rate == rates[-1] and cfg.num_seeds == sweep.seeds
    else:
        sweep = load_sweep_config(path, SensitivitySweepConfig)
        base = sensitivity_base_config(sweep)
        points = list(itertools.product(*sweep.grid.values()))
        assert len(points) >= 4
        for values in points:  # every grid point is a valid meta-training config that sets exactly its values
            point = dict(zip(sweep.grid, values))
            dumped = sensitivity_meta_config(sweep, point, seed=0, base=base).dump()
            for key, value in point.items():
                node = dumped
                for part in key.split("."):
                    node = node[part]
                assert node == value, (path.name, key)


def test_tuned_optimizer_names(tmp_path):
    tuned = tmp_path / "tuned.yaml"
    tuned.write_text("breakout:\n  adam: {learning_rate: 0.002}\n")
    cfg = load_train_config(env="breakout", optimizer="adam:tuned", tuned_file=tuned)
    assert cfg.optimizer.learning_rate == 0.002 and cfg.optimizer.anneal_lr
    with pytest.raises(ConfigError, match="no tuned learning rate for rmsprop on breakout"):
        load_train_config(env="breakout", optimizer="rmsprop:tuned", tuned_file=tuned)
    with pytest.raises(ConfigError, match="no tuned learning rate for adam on asterix"):
        load_train_config(env="asterix", optimizer="adam:tuned", tuned_file=tuned)
    with pytest.raises(ConfigError, match="tuned variants are adam:tuned, rmsprop:tuned"):
        load_train_config(env="breakout", optimizer="open:tuned", tuned_file=tuned)
    with pytest.raises(ConfigError, match="does not exist"):
        load_train_config(env="breakout", optimizer="adam:tuned", tuned_file=tmp_path / "none.yaml")

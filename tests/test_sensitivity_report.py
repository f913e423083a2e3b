"""The sensitivity study's files: trial records that let a sweep go on elsewhere, and the summary
read from them (normalised returns whose CIs carry the reference's noise, spreads, compute)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from metaopt.config import PipelineConfig, load_meta_config
from metaopt.meta.run import config_hash
from metaopt.tuning.sensitivity_report import normalised_ci, summarise_sensitivity
from metaopt.tuning.trial_records import SEED_KEY, read_trial_record, trial_record_name, write_trial_record
from metaopt.tuning.trials import write_trials
from tests.helpers import PROJECT


def test_meta_gradient_clip_value_defaults_to_the_references_for_each_clip():
    assert PipelineConfig().meta_grad_clip_value == 0.5
    assert PipelineConfig(meta_grad_clip="elementwise").meta_grad_clip_value == 1.0
    assert PipelineConfig(meta_grad_clip="elementwise", meta_grad_clip_value=None).meta_grad_clip_value == 1.0
    assert PipelineConfig(meta_grad_clip="elementwise", meta_grad_clip_value=3.0).meta_grad_clip_value == 3.0
    # the shipped Catch recipe states its clip; its hash is unchanged by the default
    cfg = load_meta_config(PROJECT / "configs/meta/optim4rl_catch.yaml")
    assert cfg.pipeline.meta_grad_clip_value == 1.0


def test_a_trial_record_is_reused_only_for_the_same_config(tmp_path):
    point = {"pipeline.meta_learning_rate": 0.001, "pipeline.meta_grad_clip": "elementwise"}
    assert trial_record_name(point, 2) == "meta_learning_rate=0.001,meta_grad_clip=elementwise,meta_seed=2"
    params = tmp_path / "meta_params.safetensors"
    params.write_bytes(b"not read here")
    record = {"point": point, SEED_KEY: 2, "config_hash": "abc", "final_return": 0.5}
    write_trial_record(tmp_path / "trials", record, params)
    found = read_trial_record(tmp_path / "trials", point, 2, "abc")
    assert found["final_return"] == 0.5 and open(found["meta_params"], "rb").read() == b"not read here"
    assert read_trial_record(tmp_path / "trials", point, 2, "another config") is None
    assert read_trial_record(tmp_path / "trials", point, 1, "abc") is None
    assert read_trial_record(tmp_path / "trials", {**point, "pipeline.meta_learning_rate": 0.01}, 2, "abc") is None


def test_trial_records_hash_the_grid_point():
    cfg = load_meta_config(PROJECT / "configs/meta/optim4rl_catch.yaml")
    other = load_meta_config(PROJECT / "configs/meta/optim4rl_catch.yaml", {"pipeline.meta_learning_rate": 0.001})
    assert config_hash(cfg) != config_hash(other)


def test_a_noisy_reference_widens_the_normalised_ci():
    rng = np.random.default_rng(0)
    learned = 1.0 + 0.01 * rng.standard_normal((3, 10))
    quiet = 1.0 + 0.001 * rng.standard_normal(10)
    noisy = 1.0 + 0.2 * rng.standard_normal(10)
    _, lo_q, hi_q = normalised_ci(learned, quiet)
    _, lo_n, hi_n = normalised_ci(learned, noisy)
    assert hi_n - lo_n > 5 * (hi_q - lo_q)
    # pairing: a learned optimizer whose seeds move with the reference's stays tight against it
    value, lo, hi = normalised_ci(np.tile(2 * noisy, (3, 1)), noisy)
    assert value == pytest.approx(2.0) and hi - lo < 1e-9


def _study(folder, seeds=(50, 51, 52, 53)):
    point_values = {(1e-3, "global_norm"): 0.9, (1e-3, "elementwise"): 0.8, (1e-2, "global_norm"): 1.0,
                    (1e-2, "elementwise"): 0.6}
    (folder / "trials").mkdir(parents=True)
    for (lr, clip), value in point_values.items():
        for meta_seed in (0, 1):
            point = {"pipeline.meta_learning_rate": lr, "pipeline.meta_grad_clip": clip}
            record = {"point": point, "meta_seed": meta_seed, "tasks": ["catch"], "eval_seeds": list(seeds),
                      "final_returns": [[value + 0.01 * meta_seed] * len(seeds)], "meta_training_s": 100.0,
                      "evaluation_s": 20.0}
            (folder / "trials" / f"{trial_record_name(point, meta_seed)}.json").write_text(json.dumps(record))
    (folder / "baselines").mkdir()
    rows = [{"trial_id": f"t{i}", "env": "catch", "optimizer": "adam", "learning_rate": lr, "status": "completed",
             "final_return": ret, "seconds": 60.0, "seed_returns": [ret] * len(seeds)}
            for i, (lr, ret) in enumerate([(1e-3, 0.5), (1e-2, 0.25)])]
    write_trials(folder / "baselines" / "trials.csv", rows)
    (folder / "baselines" / "sweep.yaml").write_text(yaml.safe_dump({"seed": seeds[0], "seeds": len(seeds)}))


def test_summary_normalises_by_the_reference_and_measures_spreads_and_compute(tmp_path):
    _study(tmp_path)
    summary = summarise_sensitivity(tmp_path, reference=("adam", 1e-3), cores=2.0)  # trials of 2 cores each
    by_point = {(c["point"]["pipeline.meta_learning_rate"], c["point"]["pipeline.meta_grad_clip"]): c
                for c in summary["configurations"]}
    assert by_point[(1e-2, "global_norm")]["normalised"] == pytest.approx(2 * 1.005)
    assert by_point[(1e-2, "global_norm")]["per_meta_seed"] == pytest.approx([2.0, 2.02])
    assert summary["best"] == {"pipeline.meta_learning_rate": 0.01, "pipeline.meta_grad_clip": "global_norm"}
    assert summary["spread"] == pytest.approx(2 * 1.005 - 2 * 0.605)  # best - worst, normalised
    adam, learned = summary["searches"]
    assert adam["spread"] == pytest.approx(0.5) and adam["compute_h"] == pytest.approx(2 * 60 * 2 / 3600)
    assert learned["compute_h"] == pytest.approx(8 * 120 * 2 / 3600)
    assert (tmp_path / "heatmap.png").stat().st_size > 0 and (tmp_path / "tuning_shift.png").stat().st_size > 0


def test_summary_refuses_trials_scored_on_other_seeds_than_the_baselines(tmp_path):
    _study(tmp_path)
    (tmp_path / "baselines" / "sweep.yaml").write_text(yaml.safe_dump({"seed": 7, "seeds": 4}))
    with pytest.raises(ValueError, match="rerun one of them"):
        summarise_sensitivity(tmp_path)


def test_the_report_shows_the_study_from_its_summary_without_writing_into_it(tmp_path):
    from metaopt.evaluation.study_report import write_report

    study = tmp_path / "optim4rl_catch_sensitivity"
    _study(study)
    summarise_sensitivity(study)
    before = {p: p.stat().st_mtime_ns for p in study.rglob("*")}
    text = write_report([], tmp_path / "report", sweeps=[study]).read_text()
    assert "| 0.01 | global_norm | 2.010 [" in text  # the best configuration first, normalised by Adam 1e-3
    assert "| adam learning rate | 2 | 0.500 |" in text
    assert "4. How sensitive is Optim4RL to its meta-learning rate and reset interval? See section 4" in text
    # at a glance: the grid's spread beside the meta-seeds' (0.02 apart normalised on every point: sd 0.0141) and Adam's
    assert ("   - `optim4rl_catch_sensitivity` (catch, 4 configurations, 8 meta-trainings): best - worst 0.800 of "
            "adam 0.001's return, configurations' sd ") in text
    assert "against one configuration's meta-seeds' 0.0141 on average; adam learning rate spans 0.50 over 2 points." in text
    assert {p: p.stat().st_mtime_ns for p in study.rglob("*")} == before

"""RL statistics over seeds: IQM, bootstrap CIs (with rough coverage), probability of improvement."""

from __future__ import annotations

import numpy as np
import pytest

from metaopt.evaluation import stats
from metaopt.evaluation.plan_stats import fmt, verdict


def test_iqm_is_the_mean_of_the_middle_half():
    x = np.array([100.0, 1, 2, 3, 4, 5, 6, -50])  # sorted: -50 1 2 3 4 5 6 100 -> middle 2..5
    assert stats.iqm(x) == pytest.approx(3.5)
    assert stats.iqm(np.arange(1.0, 5.0)) == pytest.approx(2.5)


def test_bootstrap_ci_covers_the_truth_about_95_percent():
    rng = np.random.default_rng(0)
    hits = 0
    for i in range(200):
        x = rng.normal(10.0, 3.0, 16)
        lo, hi = stats.bootstrap_ci(x, seed=i)
        assert lo < stats.iqm(x) < hi
        hits += lo <= 10.0 <= hi
    assert 0.85 <= hits / 200 <= 0.99  # percentile bootstrap at n=16 under-covers a little


def test_summary_drops_nan_and_counts_it():
    s = stats.summarize([1.0, 2.0, np.nan, 3.0, 4.0])
    assert s["n"] == 4 and s["nonfinite"] == 1 and s["mean"] == pytest.approx(2.5)
    assert s["mean_ci"][0] < 2.5 < s["mean_ci"][1]


def test_difference_and_probability_of_improvement():
    rng = np.random.default_rng(1)
    a, b = rng.normal(0, 1, 32), rng.normal(3, 1, 32)
    diff, lo, hi = stats.difference_ci(a, b)
    assert 2.0 < lo < diff < hi < 4.0
    assert stats.probability_of_improvement(b, a) > 0.95
    assert stats.probability_of_improvement(a, a) == pytest.approx(0.5)
    same, lo, hi = stats.difference_ci(a, a + rng.normal(0, 0.01, 32))
    assert lo < 0 < hi  # no difference: the CI straddles zero


def test_stratified_aggregate_pools_tasks_and_covers_the_truth():
    # Known samples: the pooled IQM of two tasks is the IQM of their concatenation.
    scores = {"a": np.arange(1.0, 9.0), "b": np.arange(11.0, 19.0)}
    point, lo, hi = stats.stratified_bootstrap_ci(scores, resamples=2000)
    assert point == pytest.approx(stats.iqm(np.concatenate(list(scores.values()))))
    assert lo < point < hi
    # Coverage of the pooled mean of two tasks with different means and spreads.
    rng = np.random.default_rng(0)
    hits = 0
    for i in range(150):
        draws = {"a": rng.normal(1.0, 0.2, 16), "b": rng.normal(2.0, 0.5, 16)}
        _, lo, hi = stats.stratified_bootstrap_ci(draws, lambda x, axis=-1: np.mean(x, axis=axis), seed=i,
                                                  resamples=1000)
        hits += lo <= 1.5 <= hi
    assert 0.85 <= hits / 150 <= 0.99
    # A task with one run has no interval; a task with none has no estimate.
    assert np.isnan(stats.stratified_bootstrap_ci({"a": [1.0, 2.0], "b": [3.0]})[1])
    assert np.isnan(stats.stratified_bootstrap_ci({"a": [1.0, 2.0], "b": [np.nan]})[0])


def test_aggregate_probability_of_improvement_averages_tasks():
    better = {"a": np.full(8, 2.0), "b": np.full(8, 0.0)}
    worse = {"a": np.full(8, 1.0), "b": np.full(8, 1.0)}
    p, lo, hi = stats.aggregate_probability_of_improvement(better, worse)
    assert p == pytest.approx(0.5)  # wins every run on a, loses every run on b
    assert lo == pytest.approx(0.5) and hi == pytest.approx(0.5)  # no spread to resample
    rng = np.random.default_rng(3)
    x, y = {"a": rng.normal(1, 1, 16)}, {"a": rng.normal(0, 1, 16)}
    p, lo, hi = stats.aggregate_probability_of_improvement(x, y)
    assert p == pytest.approx(stats.probability_of_improvement(x["a"], y["a"]))
    assert lo < p < hi


def test_stratified_difference_resamples_both_sides_and_covers_the_truth():
    # Known samples: the point estimate is the difference of the pooled IQMs.
    x = {"a": np.arange(1.0, 9.0) + 5.0, "b": np.arange(11.0, 19.0) + 5.0, "only_x": np.ones(8)}
    y = {"a": np.arange(1.0, 9.0), "b": np.arange(11.0, 19.0)}
    diff, lo, hi = stats.stratified_difference_ci(x, y, resamples=2000)
    assert diff == pytest.approx(5.0)  # tasks only X ran do not count
    assert 0.0 < lo < diff < hi
    same, lo, hi = stats.stratified_difference_ci(y, y, resamples=2000)
    assert same == 0.0 and lo < 0.0 < hi  # the two sides are resampled independently
    # Coverage of the difference of pooled means over repeated draws from normals.
    rng = np.random.default_rng(4)
    hits = 0
    for i in range(150):
        a = {"t1": rng.normal(1.0, 0.3, 12), "t2": rng.normal(2.0, 0.6, 12)}
        b = {"t1": rng.normal(0.8, 0.3, 12), "t2": rng.normal(1.6, 0.6, 12)}
        _, lo, hi = stats.stratified_difference_ci(a, b, lambda v, axis=-1: np.mean(v, axis=axis), seed=i,
                                                   resamples=1000)
        hits += lo <= 0.3 <= hi
    assert 0.85 <= hits / 150 <= 0.99
    assert np.isnan(stats.stratified_difference_ci({"a": [1.0, 2.0]}, {"a": [3.0]})[1])  # one run: no interval


@pytest.mark.parametrize("diff, prob, expected", [
    ((0.2, 0.5), (0.6, 0.9), "better than adam"),
    ((-0.5, -0.1), (0.0, 0.3), "worse than adam"),
    ((-0.1, 0.2), (0.3, 0.7), "within noise of adam"),
    ((0.1, 0.3), (0.3, 0.5), "unclear against adam: IQM higher, P(better) within noise of 0.5"),
    ((0.1, 0.3), (0.1, 0.4), "mixed against adam: IQM higher, P(better) below 0.5"),
    ((float("nan"), float("nan")), (0.1, 0.4), "not comparable with adam"),
])
def test_verdict_needs_both_measures_to_agree(diff, prob, expected):
    entry = {"iqm_difference": {"value": sum(diff) / 2, "ci": list(diff)},
             "probability_of_improvement": {"value": sum(prob) / 2, "ci": list(prob)}}
    assert verdict(entry, "adam") == expected


def test_normalise_and_performance_profile():
    scores, ref = stats.normalise(np.array([2.0, 4.0]), np.array([1.0, 2.0, 3.0, 100.0]))
    assert ref == pytest.approx(2.5) and scores == pytest.approx([0.8, 1.6])
    nan_scores, _ = stats.normalise(np.array([2.0]), np.array([-1.0, 0.0]))
    assert np.isnan(nan_scores).all()  # a ratio to a non-positive reference says nothing
    profile = stats.performance_profile({"a": [0.5, 1.5], "b": [2.5, 3.5]}, np.array([0.0, 1.0, 3.0, 4.0]))
    assert profile == pytest.approx([1.0, 0.75, 0.25, 0.0])


def test_latest_return_is_the_last_update_with_a_finished_episode():
    from metaopt.evaluation.report import latest_return

    nan = np.nan
    r = np.array([[1.0, 4.0, nan, nan], [3.0, nan, nan, nan]])  # Freeway-like: most updates finish none
    assert latest_return(r) == 4.0  # update 1: only seed 0 finished one
    assert latest_return(np.array([[2.0, 5.0], [4.0, 7.0]])) == 6.0
    assert np.isnan(latest_return(np.full((2, 3), nan)))


def test_table_says_when_an_aggregate_covers_fewer_envs():
    from metaopt.evaluation.plan_stats import markdown_table

    def cell(v):
        return {"raw": {"iqm": v, "iqm_ci": [v - 1, v + 1]}, "held_out": False,
                "final_returns": [v - 1, v, v + 1, None]}

    def agg(envs, v):
        return {"envs": envs, "normalised_iqm": {"value": v, "ci": [v - 0.1, v + 0.1]},
                "probability_of_improvement": {"value": 0.5, "ci": [0.4, 0.6]}}

    summary = {"envs": ["breakout", "asterix"], "normalise_by": "adam", "labels": ["adam", "open"],
               "cells": {"adam": {"breakout": cell(10.0), "asterix": cell(20.0)}, "open": {"breakout": cell(15.0)}},
               "aggregate": {"adam": agg(["asterix", "breakout"], 1.0), "open": agg(["breakout"], 1.5)}}
    rows = markdown_table(summary).splitlines()
    assert rows[2] == ("| adam | 10.00 [9.00, 11.00] n=3 | 20.00 [19.00, 21.00] n=3 | 1.00 [0.90, 1.10] | "
                       "0.50 [0.40, 0.60] |")  # n: the seeds with a finished episode
    assert rows[3] == ("| open | 15.00 [14.00, 16.00] n=3 | not run | 1.50 [1.40, 1.60] (1 of 2 envs) | "
                       "0.50 [0.40, 0.60] (1 of 2 envs) |")

    from metaopt.evaluation.plan_stats import per_seed_table

    seeds = per_seed_table(summary).splitlines()
    assert seeds[2] == "| breakout | adam | 3 | 9, 10, 11 (+1 without a finished episode) |"
    assert len(seeds) == 2 + 3


def test_trained_on_text_names_per_env_optimizers():
    from metaopt.evaluation.plan_stats import trained_on_text

    assert trained_on_text({"breakout": {"trained_on": ["breakout"]}, "asterix": {"trained_on": ["asterix"]}}) \
        == "the env it is evaluated on"
    assert trained_on_text({"breakout": {"trained_on": ["freeway", "breakout"]},
                            "asterix": {"trained_on": ["breakout", "freeway"]}}) == "breakout, freeway"
    assert trained_on_text({"breakout": {"trained_on": None}}) is None
    assert trained_on_text({"breakout": {"trained_on": []}, "asterix": {"trained_on": []}}) == "none of these envs"


def test_report_names_each_command_once_without_its_only_selection():
    from metaopt.evaluation.study_report import _commands

    base = "metaopt evaluate --plan configs/eval/minatar_1e7.yaml --out docs/results/minatar_1e7"
    provenance = [{"command": f"{base} --only adam/breakout"},
                  {"command": f"{base} --only 'open-*/*' --only=rmsprop/asterix"},
                  {"command": base}, {"command": ""}, {"command": f"{base} --set seeds=8"},
                  {"command": f"{base} --report docs/r --baselines s/a s/b --set seeds=8"},
                  {"command": f"{base} --baselines s/a --report=docs/r"}]
    commands, in_parts = _commands(provenance)
    assert commands == [base, f"{base} --set seeds=8"]
    assert in_parts
    assert _commands([{"command": base}]) == ([base], False)


def test_report_lists_a_partly_run_cell_once(tmp_path):
    from metaopt.evaluation.study_report import _plan_part

    summary = {"plan": "p", "envs": ["breakout"], "budget": {"breakout": 1000}, "seeds": 2, "seed": 0,
               "hardware": "CPU", "provenance": [], "cells": {}, "labels": ["adam", "open"], "normalise_by": "adam",
               "aggregate": {}, "missing": ["adam / breakout", "open / breakout"],
               "in_progress": {"open / breakout": "update 3 of 10"}}
    text = "\n".join(_plan_part(tmp_path, summary, tmp_path / "report", "main"))
    assert "- Not run yet: adam / breakout (" in text
    assert "- Partly run (a partial run saved, resumed by the same command): open / breakout at update 3" in text
    assert "- Envs: breakout; 1,000 env steps per run; 2 seeds per cell" in text
    # Before any cell finishes the budget is the plan's, said to be planned.
    nothing = {**summary, "budget": {}, "planned_timesteps": 3_000_000}
    text = "\n".join(_plan_part(tmp_path, nothing, tmp_path / "report", "main"))
    assert "- Envs: breakout; 3,000,000 env steps per run (planned); 2 seeds per cell" in text


def test_report_names_few_commits_and_summarises_many(tmp_path):
    from metaopt.evaluation.study_report import _code_versions

    runs = [{"date": f"2026-12-0{day}T00:00:00+0000", "code_version": f"0.1.0+{name}"}
            for day, name in [(3, "ccc"), (1, "aaa"), (2, "bbb"), (1, "aaa")]]
    assert _code_versions(runs, tmp_path) == "0.1.0+aaa, 0.1.0+bbb, 0.1.0+ccc"
    runs += [{"date": "2026-12-04T00:00:00+0000", "code_version": "0.1.0+ddd"},
             {"date": "2026-12-05T00:00:00+0000", "code_version": "0.1.0+aaa"}]
    text = _code_versions(runs, tmp_path)
    assert text.startswith("4 commits, from 0.1.0+aaa (2026-12-01) to 0.1.0+aaa (2026-12-05); ")
    assert str(tmp_path / "provenance.json") in text
    assert _code_versions([], tmp_path) == "unknown"


def test_generalisation_table_gives_trained_on_and_held_out_aggregates():
    from metaopt.evaluation.plan_stats import generalisation_table

    def cell(v, held):
        return {"normalised": {"value": v, "ci": [v - 0.1, v + 0.1]}, "held_out": held,
                "trained_on": None if held is None else ["breakout"]}

    def part(envs, v):
        return {"envs": envs, "normalised_iqm": {"value": v, "ci": [v - 0.2, v + 0.2]}}

    summary = {"envs": ["breakout", "asterix", "freeway"], "normalise_by": "adam",
               "cells": {"adam": {"breakout": cell(1.0, None)},
                         "open": {"breakout": cell(1.5, False), "asterix": cell(0.5, True), "freeway": cell(0.7, True)},
                         "own-only": {"breakout": cell(1.2, False)}},
               "aggregate": {"open": {"by_training": {"trained_on": part(["breakout"], 1.5),
                                                      "held_out": part(["asterix", "freeway"], 0.6)}},
                             "own-only": {"by_training": {"trained_on": part(["breakout"], 1.2)}}}}
    rows = generalisation_table(summary).splitlines()
    assert rows[0] == ("| optimizer (meta-trained on) | breakout (/adam) | asterix (/adam) | freeway (/adam) | "
                       "envs it was meta-trained on | held-out envs |")
    assert rows[2] == ("| open (breakout) | 1.50 [1.40, 1.60] | **0.50 [0.40, 0.60]** (held out) | "
                       "**0.70 [0.60, 0.80]** (held out) | 1.50 [1.30, 1.70] (1 env) | 0.60 [0.40, 0.80] (2 envs) |")
    assert rows[3] == "| own-only (breakout) | 1.20 [1.10, 1.30] | not run | not run | 1.20 [1.00, 1.40] (1 env) | — |"
    assert len(rows) == 4  # adam names no training envs: no row


def test_a_noisy_reference_widens_the_normalised_difference_ci():
    """The normaliser is the reference's IQM, itself an estimate: resampled in the same bootstrap,
    a noisy reference must widen the CI of a normalised difference, a quiet one must not."""
    rng = np.random.default_rng(1)
    x = {"a": 2.0 + 0.05 * rng.standard_normal(10), "b": 4.0 + 0.1 * rng.standard_normal(10)}
    quiet = {"a": 1.0 + 0.001 * rng.standard_normal(10), "b": 2.0 + 0.002 * rng.standard_normal(10)}
    noisy = {"a": 1.0 + 0.4 * rng.standard_normal(10), "b": 2.0 + 0.8 * rng.standard_normal(10)}
    fixed = {t: x[t] / stats.iqm(quiet[t]) for t in x}  # normalised once, the reference treated as exact
    _, lo0, hi0 = stats.stratified_difference_ci(fixed, {t: quiet[t] / stats.iqm(quiet[t]) for t in x})
    _, lo_q, hi_q = stats.stratified_difference_ci(x, quiet, normalisers=quiet, y_is_reference=True)
    d, lo_n, hi_n = stats.stratified_difference_ci(x, noisy, normalisers=noisy, y_is_reference=True)
    assert hi_q - lo_q == pytest.approx(hi0 - lo0, rel=0.2)
    assert hi_n - lo_n > 4 * (hi_q - lo_q)
    assert lo_n < d < hi_n
    # the aggregate's own CI widens the same way
    _, lo, hi = stats.stratified_bootstrap_ci(x, normalisers=noisy)
    _, lo1, hi1 = stats.stratified_bootstrap_ci(x, normalisers=quiet)
    assert hi - lo > 4 * (hi1 - lo1)


def test_p_better_of_runs_that_do_not_overlap_is_marked_not_estimable():
    from metaopt.evaluation.plan_stats import _versus, fmt

    low, high = {"a": np.array([1.0, 2.0, 3.0, 4.0])}, {"a": np.array([10.0, 11.0, 12.0, 13.0])}
    out = _versus(low, high, seed=0)
    assert out["probability_of_improvement"]["value"] == 0.0
    assert fmt(out["probability_of_improvement"]) == "0.00 (CI not estimable at n = 4: the runs do not overlap)"
    overlapping = _versus({"a": np.array([1.0, 5.0, 9.0, 12.0])}, high, seed=0)
    assert "note" not in overlapping["probability_of_improvement"]


def test_curves_carry_each_seeds_latest_episode_forward():
    from metaopt.evaluation.plan_stats import carried_forward

    nan = np.nan
    # Freeway-like: episodes outlast updates, so most updates finish none
    got = carried_forward(np.array([[nan, 1.0], [2.0, nan], [nan, nan], [nan, 5.0]]))
    assert np.array_equal(got, np.array([[nan, 1.0], [2.0, 1.0], [2.0, 1.0], [2.0, 5.0]]), equal_nan=True)


def test_collapse_measures_read_the_smoothed_return_not_one_noisy_update(tmp_path):
    from metaopt.evaluation.plan_cells import collapse_measures

    nan = np.nan
    steady = [0.0, 1.0, 2.0, 3.0, 4.0, -10.0, 4.0, 4.0, 4.0, 4.0]  # one outlier update, no collapse
    collapsed = [0.0, 2.0, 4.0, 6.0, 6.0, 6.0, 4.0, 2.0, 0.0, 0.0]  # rises to 6, ends at 0
    late = [nan, nan, 1.0, nan, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]  # no episode yet, then carried forward
    lines = ["update,return_seed0,return_seed1,return_seed2,return_seed10"]
    lines += [f"{i},{a},{b},{c},{nan}" for i, (a, b, c) in enumerate(zip(steady, collapsed, late))]
    (tmp_path / "curves.csv").write_text("\n".join(lines) + "\n")
    got = collapse_measures(tmp_path / "curves.csv", window=3)
    # trailing means over 3 updates: steady 1, 2, 3, -1, -0.67, -0.67, 4, 4 -> largest fall 4 (the outlier's
    # 14 shrunk to a third), none at the end; collapsed 2, 4, 5.33, 6, 5.33, 4, 2, 0.67 -> 5.33 and 5.33
    assert np.allclose(got["largest_drop"][:3], [4.0, 6.0 - 2.0 / 3.0, 0.0], equal_nan=True)
    assert np.allclose(got["end_drop"][:3], [0.0, 6.0 - 2.0 / 3.0, 0.0])
    assert np.allclose(got["end_share"][:3], [0.0, (6.0 - 2.0 / 3.0) / 6.0, 0.0])  # of the smoothed peak
    assert np.isnan(got["largest_drop"][3]) and np.isnan(got["end_drop"][3])  # seed 10: no finished episode
    assert np.isnan(got["end_share"][3])
    wide = collapse_measures(tmp_path / "curves.csv", window=20)  # longer than the run: one mean of all updates
    assert np.allclose(wide["largest_drop"][:3], 0.0) and np.allclose(wide["end_drop"][:3], 0.0)
    assert collapse_measures(tmp_path / "absent.csv")["largest_drop"].size == 0
    below = "\n".join(["update,return_seed0", *(f"{i},{v}" for i, v in enumerate([-1.0, -2.0, -3.0]))]) + "\n"
    (tmp_path / "negative.csv").write_text(below)
    got = collapse_measures(tmp_path / "negative.csv", window=1)
    assert got["end_drop"][0] == 2.0 and np.isnan(got["end_share"][0])  # no share of a peak that is not above 0


def test_collapse_section_marks_cells_that_lost_most_of_their_peak_and_skips_reused_ones():
    from metaopt.evaluation.study_sections import collapse_section, collapsed_cells

    def share(values):
        return stats.summarize(np.asarray(values))

    steady, fallen = share([0.0, 0.02, 0.01, 0.03]), share([0.9, 0.95, 1.0, 0.8])
    summary = {"plan": "p", "labels": ["adam", "learned", "copied"], "envs": ["a", "b"],
               "reused": {"copied / a": "elsewhere/cells/copied/a"},
               "cells": {"adam": {"a": {"end_share": steady}, "b": {"end_share": steady}},
                         "learned": {"a": {"end_share": steady}, "b": {"end_share": fallen}},
                         "copied": {"a": {"end_share": fallen}}}}
    assert collapsed_cells([summary]) == f"Collapsed: learned on b (p: {fallen['iqm']:.2f})."
    lines = collapse_section([summary])
    rows = {line.split(" |")[0]: line for line in lines if line.startswith("| ")}
    assert set(rows) == {"| optimizer", "| adam", "| learned"}  # copied's only cell is another plan's
    assert rows["| learned"].endswith(f"n=4 | {fmt({'value': fallen['iqm'], 'ci': fallen['iqm_ci']})} n=4 |")
    calm = {**summary, "cells": {"adam": summary["cells"]["adam"]}}
    assert collapsed_cells([calm]) == "No cell lost more than 0.5 of its peak return by the end."
    assert collapse_section([{**summary, "cells": {}}]) == []


def test_an_optimizer_has_one_colour_in_every_figure():
    from metaopt.plotting import label_colour

    assert label_colour("adam") == "tab:blue" and label_colour("open-published") == "tab:green"
    assert label_colour("my-optimizer") == label_colour("my-optimizer")  # stable across calls and runs
    assert len({label_colour(x) for x in ("adam", "rmsprop", "open-published", "open-multitask", "open-cpu-recipe")}) == 5


def test_report_section_on_cpu_recipes_compares_each_with_adam_on_its_seeds(tmp_path):
    import json

    from metaopt.evaluation.study_sections import recipes_section as _recipes_section

    recipe = tmp_path / "open_breakout_cpu.json"
    recipe.write_text(json.dumps({"env": "breakout", "budget_env_steps": 196608, "seeds": 4, "eval_seed": 7000, "results": {
        "open (meta-trained)": {"final_returns": [10.0, 11.0, 12.0, 13.0]},
        "adam:tuned": {"final_returns": [7.0, 8.0, 9.0, 10.5]}}}))
    summary = {"normalise_by": "adam", "cells": {"open-cpu-recipe": {"breakout": {
        "source": "benchmarks/recipes/open_breakout_cpu.safetensors", "normalised": {"value": 0.5, "ci": [0.4, 0.6]}}}}}
    text = "\n".join(_recipes_section([recipe], [summary]))
    assert "### `open_breakout_cpu`: breakout, 196,608 env steps, seeds 7000..7003" in text
    row = next(line for line in text.splitlines() if line.startswith("| open (meta-trained) | 4 | 11.500 ["))
    assert "| 3.000 [" in row  # IQM 11.5 - 8.5
    assert "open-cpu-recipe 0.50 [0.40, 0.60] of adam on breakout" in text
    assert "Not given" in "\n".join(_recipes_section([], []))


def test_meta_seeds_of_one_recipe_say_how_often_it_learns(tmp_path):
    """Two meta-seeds of one recipe: the one whose trained optimizer beats its initialisation
    learns, the one that stays at the start does not; escape is where the curve doubles."""
    import json

    from metaopt.evaluation.study_sections import escape_iteration, meta_seeds_answers, recipes_section

    assert escape_iteration([0.5] * 10 + [0.9, 1.0, 3.0]) == 12 and escape_iteration([0.5] * 20) is None
    flat, rising = [0.5] * 30, [0.5] * 10 + [0.6 + 0.5 * i for i in range(20)]
    paths = []
    for seed, curve, trained in ((0, rising, [10.0, 11.0, 12.0, 13.0, 12.5]), (7, flat, [0.4, 0.6, 0.5, 0.7, 0.5])):
        path = tmp_path / f"recipe_seed{seed}.json"
        path.write_text(json.dumps({"recipe": "configs/meta/open_breakout_cpu.yaml", "meta_training_seed": seed,
                                    "env": "breakout", "budget_env_steps": 196608, "seeds": 5, "eval_seed": 7000,
                                    "curve": {"metric": "fitness_mean", "iterations": 30, "k": 10, "values": curve,
                                              "first_k_mean": 0.5, "last_k_mean": sum(curve[-10:]) / 10},
                                    "results": {"open (meta-trained)": {"final_returns": trained},
                                                "open (its initialisation)": {"final_returns": [0.5, 0.6, 0.4, 0.5, 0.5]},
                                                "adam:tuned": {"final_returns": [7.0, 8.0, 9.0, 10.5, 8.0]}}}))
        paths.append(path)
    text = "\n".join(recipes_section(paths, [], tmp_path / "report"))
    assert "### `configs/meta/open_breakout_cpu.yaml` over 2 meta-seeds: how often it learns" in text
    rows = {line.split(" |")[0]: line for line in text.splitlines() if line.startswith("| 0 |") or line.startswith("| 7 |")}
    assert "| 12 | 0.50 -> " in rows["| 0"] and "| yes |" in rows["| 0"]
    assert "| never | 0.50 -> 0.50 |" in rows["| 7"] and "| no |" in rows["| 7"]
    assert "Learns on 1 of 2 meta-seeds." in text
    assert meta_seeds_answers(paths) == [  # the line in the answers at a glance
        "   - `configs/meta/open_breakout_cpu.yaml` (section 6) over 2 meta-seeds: learns on 1 of 2; against "
        "adam:tuned at its own budget: better on 1, worse on 1, within noise on 0."]
    assert meta_seeds_answers(paths[:1]) == []  # one meta-seed: no line
    assert (tmp_path / "report" / "figures" / "recipes" / "open_breakout_cpu_meta_seeds.png").read_bytes()[:4] == b"\x89PNG"


def test_made_by_commands_run_from_any_checkout(tmp_path):
    from metaopt.evaluation.study_report import _commands

    provenance = [{"command": "metaopt evaluate --plan /tmp/evalrun/configs/eval/minatar_1e7.yaml --out /tmp/x "
                              "--set resources.cpus_per_cell=2 --set tracking.uri=sqlite:////work/main/runs/m.db "
                              "--only adam/breakout"}]
    commands, in_parts = _commands(provenance, tmp_path / "minatar_1e7")
    assert in_parts and commands == [f"metaopt evaluate --plan configs/eval/minatar_1e7.yaml --out {tmp_path / 'minatar_1e7'} "
                                     "--set resources.cpus_per_cell=2"]


def _plan_copy(tmp_path, more_seeds):
    """docs/results/minatar_1e7's plan with its two Breakout baseline cells, and `more_seeds`."""
    import shutil

    import yaml

    from tests.helpers import PROJECT

    source, out = PROJECT / "docs/results/minatar_1e7", tmp_path / "plan"
    for label in ("adam", "rmsprop"):
        shutil.copytree(source / "cells" / label / "breakout", out / "cells" / label / "breakout")
    plan = yaml.safe_load((source / "plan.yaml").read_text())
    (out / "plan.yaml").write_text(yaml.safe_dump({**plan, "more_seeds": [str(f) for f in more_seeds]}))
    return out


def test_a_cell_grows_with_the_same_plan_run_on_more_seeds(tmp_path):
    import json

    from metaopt.evaluation.plan_stats import compute_summary, load_cells
    from tests.helpers import PROJECT

    extra = PROJECT / "docs/results/minatar_1e7_seeds504"
    out = _plan_copy(tmp_path, [extra])
    cells = load_cells(out)
    first = json.loads((out / "cells/adam/breakout/results.json").read_text())["final_return"]
    more = json.loads((extra / "cells/adam/breakout/results.json").read_text())["final_return"]
    assert len(first) == 4 and len(more) == 6
    np.testing.assert_allclose(cells["adam"]["breakout"]["final_returns"], np.concatenate([first, more]))
    assert cells["adam"]["breakout"]["largest_drop"].size == 10
    summary = compute_summary(out)
    assert len(summary["cells"]["adam"]["breakout"]["final_returns"]) == 10
    assert summary["more_seeds"]["adam / breakout"] == [f"504..509 in {extra}"]
    # the same seeds twice, or another config, are refused in one line
    with pytest.raises(ValueError, match="which this cell already has"):
        load_cells(_plan_copy(tmp_path / "twice", [extra, extra]))


def test_a_reference_with_one_finished_run_stays_fixed_in_the_bootstrap():
    x = {"a": np.array([1.0, 2.0, 3.0])}
    fixed = stats.stratified_bootstrap_ci({"a": x["a"] / 2.0})
    one = stats.stratified_bootstrap_ci(x, normalisers={"a": np.array([2.0, np.nan])})
    assert one == pytest.approx(fixed)


def test_draws_whose_normaliser_resamples_to_zero_are_left_out():
    x = {"a": np.array([1.0, 2.0, 3.0, 4.0])}
    ref = {"a": np.array([0.0, 0.0, 2.0, 2.0])}  # some resamples have IQM 0
    point, lo, hi = stats.stratified_bootstrap_ci(x, normalisers=ref)
    assert np.isfinite(lo) and np.isfinite(hi) and lo <= point <= hi
    d, lo, hi = stats.stratified_difference_ci(x, ref, normalisers=ref, y_is_reference=True)
    assert np.isfinite(lo) and np.isfinite(hi)


def test_labels_of_one_figure_get_distinct_colours():
    from metaopt.plotting import label_colour, label_colours

    labels = ["adam", "optim4rl-catch", "optim4rl-catch-l2", "optim4rl-catch-wd", "optim4rl-catch-lr1e-3"]
    assert label_colour("optim4rl-catch-wd") == label_colour("optim4rl-catch-lr1e-3")  # the hash collides
    colours = label_colours(labels)
    assert len(set(colours.values())) == len(labels) and colours["adam"] == "tab:blue"
    assert label_colours(list(reversed(labels))) == colours  # the same set, the same colours
    assert label_colours(["my-optimizer"]) == {"my-optimizer": label_colour("my-optimizer")}


def test_fmt_shows_the_digits_an_interval_needs():
    from metaopt.evaluation.plan_tables import fmt

    assert fmt({"value": 0.4567, "ci": [0.31, 0.62]}) == "0.46 [0.31, 0.62]"
    assert fmt({"value": -0.0031, "ci": [-0.0042, -0.0019]}) == "-0.003 [-0.004, -0.002]"
    assert fmt({"value": 1.0, "ci": [1.0, 1.0]}) == "1.00 [1.00, 1.00]"  # a degenerate interval stays short
    assert fmt({"value": 0.99951, "ci": [0.99949, 0.99952]}) == "1.000 [0.999, 1.000]"
    assert fmt({"value": 0.12345, "ci": [0.123451, 0.123452]}) == "0.1235 [0.1235, 0.1235]"  # at most 4 decimals
    assert fmt(None) == "—"

"""Evaluation plans as users run them: `metaopt evaluate --plan` on an embedded Ray with a real
sqlite MLflow store (tiny plan, real PPO runs), resumed after a part of it ran, then
`metaopt report` from its folder."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from mlflow import MlflowClient

from metaopt.cli import main
from metaopt.config import ENV_NAMES
from metaopt.evaluation import stats
from metaopt.evaluation.plan import load_plan, resolve_cells
from metaopt.evaluation.plan_stats import fmt, verdict
from metaopt.evaluation.study_report import L2_READINGS, l2_pairing
from tests.helpers import PROJECT

TINY_PLAN = "configs/eval/tiny.yaml"
TWO = ["optimizers=[adam, {label: open-breakout, optimizer: open, meta_params: 'published:breakout', "
       "trained_on: [breakout]}]"]
PNG = b"\x89PNG\r\n\x1a\n"


def _evaluate(out, uri, *sets, only=(), extra=()):
    cmd = [str(Path(sys.executable).parent / "metaopt"), "evaluate", "--plan", TINY_PLAN, "--out", str(out),
           "--set", f"tracking.uri={uri}", *[a for s in sets for a in ("--set", s)],
           *[a for p in only for a in ("--only", p)], *extra]
    proc = subprocess.run(cmd, cwd=PROJECT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def plan_run(tmp_path_factory):
    """The tiny plan with Adam and the Breakout OPEN (its RMSProp left out, to keep it short):
    the Breakout column first (`--only '*/breakout'`), then the rest in the same folder, and the
    report with it (`--report`)."""
    root = tmp_path_factory.mktemp("plan")
    out, uri = root / "out", f"sqlite:///{root}/mlruns.db"
    first = _evaluate(out, uri, *TWO, only=["*/breakout"])
    before = {p.relative_to(out): p.read_bytes() for p in (out / "cells").rglob("*") if p.is_file()}
    second = _evaluate(out, uri, *TWO, extra=["--report", str(root / "report")])
    return {"out": out, "uri": uri, "first": first, "second": second, "before": before, "report": root / "report"}


@pytest.mark.slow
@pytest.mark.ray
def test_resumed_plan_runs_only_the_missing_cells(plan_run):
    assert "4 cells, 0 already finished, 2 to run (--only: 2 of 4 unfinished)" in plan_run["first"]
    assert "4 cells, 2 already finished, 2 to run" in plan_run["second"]
    out = plan_run["out"]
    for path, data in plan_run["before"].items():
        assert (out / path).read_bytes() == data  # the finished cells were not run again
    assert len(list((out / "cells").glob("*/*/cell.json"))) == 4
    for folder in (out / "cells").glob("*/*"):  # readable like the folder it is in, not mkdtemp's 0700
        assert folder.stat().st_mode & 0o777 == folder.parent.stat().st_mode & 0o777


@pytest.mark.slow
@pytest.mark.ray
def test_summary_normalises_by_adam_and_marks_held_out_cells(plan_run):
    summary = json.loads((plan_run["out"] / "summary.json").read_text())
    cells = summary["cells"]
    for env in ("breakout", "asterix"):
        adam = np.array(cells["adam"][env]["final_returns"], float)
        for label in ("adam", "open-breakout"):
            cell = cells[label][env]
            raw = np.array(cell["final_returns"], float)
            assert len(raw) == 2 and np.isfinite(raw).all()
            assert cell["raw"]["iqm"] == pytest.approx(stats.iqm(raw))
            assert cell["normalised"]["value"] == pytest.approx(stats.iqm(raw) / stats.iqm(adam))
    assert cells["open-breakout"]["asterix"]["held_out"] is True
    assert cells["open-breakout"]["breakout"]["held_out"] is False
    assert cells["adam"]["breakout"]["held_out"] is None  # hand-designed
    assert summary["missing"] == [] and summary["hardware"].startswith("CPU")
    assert set(summary["aggregate"]["open-breakout"]) >= {"normalised_iqm", "probability_of_improvement"}
    for name in ("aggregate.png", "profile.png", "generalisation.png", "curves.png"):
        assert (plan_run["out"] / name).read_bytes()[:8] == PNG


@pytest.mark.slow
@pytest.mark.ray
def test_mlflow_children_match_the_cell_files(plan_run):
    client = MlflowClient(tracking_uri=plan_run["uri"])
    exp = [e.experiment_id for e in client.search_experiments()]
    (parent,) = client.search_runs(exp, filter_string=f"tags.`metaopt.plan` = '{plan_run['out'].resolve()}'")
    assert parent.info.status == "FINISHED"
    children = client.search_runs(exp, filter_string=f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    assert len(children) == 4  # the resumed run recorded each cell once
    for child in children:
        label, env = child.data.params["label"], child.data.params["env"]
        result = json.loads((plan_run["out"] / "cells" / label / env / "results.json").read_text())
        history = sorted(client.get_metric_history(child.info.run_id, "final_return"), key=lambda m: m.step)
        assert [m.value for m in history] == pytest.approx(result["final_return"])
        assert {a.path for a in client.list_artifacts(child.info.run_id)} >= {"results.json", "curves.csv"}


@pytest.mark.slow
@pytest.mark.ray
def test_cells_another_plan_finished_with_the_same_config_are_copied_not_run(plan_run, tmp_path):
    source, out, uri = plan_run["out"], tmp_path / "again", f"sqlite:///{tmp_path}/mlruns.db"
    log = _evaluate(out, uri, f"reuse_from=[{source}]", only=["adam/*"])  # rmsprop's cells: nowhere to copy from
    assert "4 cells taken from other plans' results (the same runs)" in log
    assert "6 cells, 4 already finished, 0 to run" in log
    for label in ("adam", "open-breakout"):
        for env in ("breakout", "asterix"):
            for name in ("results.json", "curves.csv", "device.json"):
                assert (out / "cells" / label / env / name).read_bytes() == (source / "cells" / label / env / name).read_bytes()
            marker = json.loads((out / "cells" / label / env / "cell.json").read_text())
            assert marker["reused_from"] == str(source / "cells" / label / env)
    summary = json.loads((out / "summary.json").read_text())
    before = json.loads((source / "summary.json").read_text())
    assert summary["cells"]["open-breakout"]["asterix"]["normalised"] == before["cells"]["open-breakout"]["asterix"]["normalised"]
    assert set(summary["reused"]) == {"adam / breakout", "adam / asterix", "open-breakout / breakout",
                                      "open-breakout / asterix"}
    assert summary["missing"] == ["rmsprop / breakout", "rmsprop / asterix"]
    client = MlflowClient(tracking_uri=uri)
    exp = [e.experiment_id for e in client.search_experiments()]
    (parent,) = client.search_runs(exp, filter_string=f"tags.`metaopt.plan` = '{out.resolve()}'")
    children = client.search_runs(exp, filter_string=f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    assert len(children) == 4  # the copied cells are this plan's children too
    assert main(["report", str(out), "--out", str(tmp_path / "report")]) == 0
    assert f"- Taken from other plans' results (the same runs, not trained again): 4 cells from `{source}`" in \
        (tmp_path / "report" / "README.md").read_text()


@pytest.mark.slow
@pytest.mark.ray
def test_report_from_the_plan_folder(plan_run, tmp_path):
    inputs = {p: p.read_bytes() for p in plan_run["out"].rglob("*") if p.is_file()}
    assert main(["report", str(plan_run["out"]), "--out", str(tmp_path / "report")]) == 0
    assert {p: p.read_bytes() for p in plan_run["out"].rglob("*") if p.is_file()} == inputs  # it only reads
    text = (tmp_path / "report" / "README.md").read_text()
    assert "<details><summary>Every seed's final return</summary>" in text and " n=2 " in text
    assert "- Compute: " in text and "hours of the hardware above for the" in text
    markers = [json.loads(p.read_text()) for p in plan_run["out"].glob("cells/*/*/cell.json")]
    assert markers and all(m["code_version"].startswith("0.") for m in markers)  # the commit that trained each cell
    assert "### Plan `tiny`" in text and "(held out)" in text
    for label in ("adam", "open-breakout"):
        assert f"| {label} |" in text
    assert "2 seeds per cell" in text and "1,024 env steps per run" in text
    assert "- Learning rate of adam: 0.005 on every env run: the PPO config's rate (configs/ppo/ENV.yaml)" in text
    assert "metaopt evaluate --plan configs/eval/tiny.yaml" in text  # the command that made it
    assert "## 2. Does OPEN reproduce on Ant?\n\nNot run. Command: `metaopt evaluate --plan" in text
    assert "## 1. Main comparison: OPEN, Optim4RL, Adam and RMSProp\n\nThe study's setting: the four MinAtar games" in text
    assert (tmp_path / "report" / "figures" / "tiny" / "generalisation.png").read_bytes()[:8] == PNG
    # No generalisation plan: section 3 shows the tiny plan's held-out cells as a matrix.
    section = text.split("## 3. ")[1].split("## 4. ")[0]
    assert "The generalisation plan is not run" in section and "Plan `tiny` (2 seeds per cell)" in section
    rows = {line.split(" |")[0]: line for line in section.splitlines() if line.startswith("| ")}
    assert set(rows) == {"| optimizer (meta-trained on)", "| open-breakout (breakout)"}  # adam has no trained_on
    summary = json.loads((plan_run["out"] / "summary.json").read_text())
    own = summary["cells"]["open-breakout"]["breakout"]["normalised"]["value"]
    assert f"| open-breakout (breakout) | {own:.2f} [" in rows["| open-breakout (breakout)"]
    assert rows["| open-breakout (breakout)"].count("(held out)") == 1  # the tiny plan's second env
    # The last two columns: the optimizer on the envs it was meta-trained on, and on the held-out ones.
    held = summary["cells"]["open-breakout"]["asterix"]["normalised"]["value"]
    split = summary["aggregate"]["open-breakout"]["by_training"]
    assert split["trained_on"]["envs"] == ["breakout"] and split["held_out"]["envs"] == ["asterix"]
    assert split["trained_on"]["normalised_iqm"]["value"] == pytest.approx(own)
    assert split["held_out"]["normalised_iqm"]["value"] == pytest.approx(held)
    assert rows["| open-breakout (breakout)"].endswith(f" | {held:.2f} [{split['held_out']['normalised_iqm']['ci'][0]:.2f}, "
                                                      f"{split['held_out']['normalised_iqm']['ci'][1]:.2f}] (1 env) |")
    assert "by_training" not in summary["aggregate"]["adam"]
    # `evaluate --report` wrote the same report in the same run.
    same_day = [line for line in text.splitlines() if not line.startswith("Generated by")]
    assert [line for line in (plan_run["report"] / "README.md").read_text().splitlines()
            if not line.startswith("Generated by")] == same_day
    assert (plan_run["report"] / "figures" / "tiny" / "generalisation.png").read_bytes() == \
        (tmp_path / "report" / "figures" / "tiny" / "generalisation.png").read_bytes()

    # With a generalisation plan, section 3 shows it first, then the other plans' held-out cells.
    gen = tmp_path / "gen"
    shutil.copytree(plan_run["out"], gen)
    plan = yaml.safe_load((gen / "plan.yaml").read_text())
    (gen / "plan.yaml").write_text(yaml.safe_dump({**plan, "name": "tiny-gen", "section": "generalisation"}))
    assert main(["report", str(plan_run["out"]), str(gen), "--out", str(tmp_path / "both")]) == 0
    section = (tmp_path / "both" / "README.md").read_text().split("## 3. ")[1].split("## 4. ")[0]
    assert "The generalisation plan is not run" not in section
    assert section.index("### Plan `tiny-gen`") < section.index("Held-out cells of the other plans") \
        < section.index("Plan `tiny` (2 seeds per cell)")


@pytest.mark.slow
@pytest.mark.ray
def test_report_answers_each_question_from_the_aggregates(plan_run, tmp_path):
    summary = json.loads((plan_run["out"] / "summary.json").read_text())
    agg = summary["aggregate"]["open-breakout"]
    assert main(["report", str(plan_run["out"]), "--out", str(tmp_path / "report")]) == 0
    answers = (tmp_path / "report" / "README.md").read_text().split("## Answers at a glance")[1].split("## 1. ")[0]
    assert (f"     - open-breakout: normalised IQM {fmt(agg['normalised_iqm'])} over 2 envs, difference "
            f"{fmt(agg['iqm_difference'])}, P(better) {fmt(agg['probability_of_improvement'])}: "
            f"**{verdict(agg, 'adam')}**.") in answers
    held = agg["by_training"]["held_out"]
    assert held["envs"] == ["asterix"] and held["iqm_difference"]["value"] == pytest.approx(
        held["normalised_iqm"]["value"] - stats.iqm(np.array(summary["cells"]["adam"]["asterix"]["final_returns"])
                                                    / summary["reference_iqm"]["asterix"]))
    assert (f"   - open-breakout (plan `tiny`, 2 seeds per cell): held-out asterix: normalised IQM "
            f"{fmt(held['normalised_iqm'])}, difference {fmt(held['iqm_difference'])}") in answers
    assert "2. Does OPEN reproduce on Ant? — not run." in answers
    assert "5. Does L2 regularisation help Optim4RL? — not run." in answers

    # An L2 plan: each NAME-l2 optimizer against NAME. Here NAME-l2's runs are NAME's, so the two
    # are the same: difference 0, P(better) 0.5, within noise.
    l2 = tmp_path / "l2"
    shutil.copytree(plan_run["out"], l2)
    for env in ("breakout", "asterix"):
        shutil.copytree(l2 / "cells" / "open-breakout" / env, l2 / "cells" / "open-breakout-l2" / env)
        marker = l2 / "cells" / "open-breakout-l2" / env / "cell.json"
        marker.write_text(json.dumps({**json.loads(marker.read_text()), "label": "open-breakout-l2"}))
    plan = yaml.safe_load((l2 / "plan.yaml").read_text())
    twin = {**next(o for o in plan["optimizers"] if o["label"] == "open-breakout"), "label": "open-breakout-l2"}
    (l2 / "plan.yaml").write_text(yaml.safe_dump({**plan, "name": "tiny-l2", "section": "l2",
                                                  "optimizers": [*plan["optimizers"], twin],
                                                  "head_to_head": [["open-breakout", "open-breakout-l2"]],
                                                  "note": "open-breakout-l2 is open-breakout's twin."}))
    assert main(["report", str(l2), "--out", str(tmp_path / "with_l2")]) == 0
    answers = (tmp_path / "with_l2" / "README.md").read_text().split("## Answers at a glance")[1].split("## 1. ")[0]
    (line,) = [x for x in answers.splitlines()
               if "open-breakout-l2 (meta-trained with an L2 penalty on its meta-parameters) against open-breakout" in x]
    assert "on asterix, breakout: difference 0.00 [" in line and "P(better) 0.50 [" in line
    assert "**within noise of open-breakout**" in line
    for env in ("asterix", "breakout"):  # the collapse measures of both, env by env (twins: the same)
        drop, end = (summary["cells"]["open-breakout"][env].get(key) for key in ("largest_drop", "end_drop"))
        both = " / ".join(fmt(m and {"value": m["iqm"], "ci": m["iqm_ci"]}) for m in (drop, end))
        assert f"{env}: open-breakout-l2 {both}, open-breakout {both}" in line
    (line,) = [x for x in answers.splitlines() if "Head to head" in x]  # a pair the plan names
    assert line.startswith("     - Head to head (plan `tiny-l2`, 2 seeds per cell): open-breakout against "
                           "open-breakout-l2 on asterix, breakout: difference 0.00 [")
    assert "P(better) 0.50 [" in line and line.endswith("**within noise of open-breakout-l2**.")
    report = (tmp_path / "with_l2" / "README.md").read_text()
    assert "### Plan `tiny-l2`\n\n- Note: open-breakout-l2 is open-breakout's twin.\n- Envs:" in report
    # each section puts its question in the study's own (GPU) setting, with the command that runs it there
    l2_section = report.split("## 5. Does L2 regularisation help Optim4RL?")[1]
    assert l2_section.lstrip().startswith("The study's setting: Optim4RL meta-trained on Brax Ant without and with L2")
    assert "`metaopt evaluate --plan configs/eval/l2_ablation_ant.yaml --out runs/eval/l2_ablation_ant`" in l2_section
    assert report.count("The study's setting: ") == 1  # sections with nothing run say how to run them instead


@pytest.mark.parametrize("sets, expected", [
    (["envs=[pong]"], "envs: unknown env 'pong'"),
    (["seeds=0"], "seeds"),
    (["optimizers=[adam, sgd]"], "unknown optimizer 'sgd'"),
    (["optimizers=[adam, {optimizer: open}]"], "needs meta_params"),
    (["optimizers=[adam, adam]"], "two optimizers are labelled 'adam'"),
    (["normalise_by=adam:tuned"], "normalise_by"),
    (["optimizers=[adam, 'models:/no-such-model@champion']"], "no-such-model"),
    (["optimizers=[adam, {optimizer: open, meta_params: missing.safetensors}]"], "missing.safetensors"),
    (["reuse_from=[nowhere]"], "reuse_from: nowhere holds no plan.yaml"),
    (["head_to_head=[[adam, sgd]]"], "head_to_head: ['adam', 'sgd'] must name two different labels"),
    (["optimizers=[adam, {label: a2, optimizer: adam, set: {learning_rate: {breakout: 0.001}}}]"],
     "optimizers: a2: set.learning_rate has no value for asterix"),
])
def test_bad_plan_stops_in_one_line_before_any_cell(sets, expected, tmp_path, capsys):
    out = tmp_path / "out"
    args = ["evaluate", "--plan", TINY_PLAN, "--out", str(out), "--set", f"tracking.uri=sqlite:///{tmp_path}/m.db"]
    assert main([*args, *[a for s in sets for a in ("--set", s)]]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and expected in err and len(err.splitlines()) == 1
    assert not out.exists()  # nothing ran, nothing was written


def test_l2_rows_pair_with_their_unregularised_row_by_label():
    labels = ["adam", "optim4rl-catch", "optim4rl-catch-l2", "optim4rl-grid-lr1e-3", "optim4rl-grid-l2-lr1e-3",
              "optim4rl-grid-wd-lr1e-3", "optim4rl-grid-l2-lr3e-4"]
    assert l2_pairing("optim4rl-catch-l2", labels) == ("optim4rl-catch", L2_READINGS["l2"])
    assert l2_pairing("optim4rl-grid-l2-lr1e-3", labels) == ("optim4rl-grid-lr1e-3", L2_READINGS["l2"])
    assert l2_pairing("optim4rl-grid-wd-lr1e-3", labels) == ("optim4rl-grid-lr1e-3", L2_READINGS["wd"])
    assert l2_pairing("optim4rl-grid-l2-lr3e-4", labels) is None  # its unregularised row is not in the plan
    assert [label for label in labels if l2_pairing(label, labels) is None] == [
        "adam", "optim4rl-catch", "optim4rl-grid-lr1e-3", "optim4rl-grid-l2-lr3e-4"]


def test_a_setting_can_differ_per_env():
    """A learned optimizer's rate chosen per game on tuning seeds: each cell gets its env's value."""
    plan = load_plan(TINY_PLAN, {"optimizers": [
        "adam", {"label": "adam-per-game", "optimizer": "adam", "set": {"learning_rate": {"breakout": 1e-3, "asterix": 3e-3},
                                                                         "eps": 1e-6}}]})
    rates = {(c.label, c.env): (c.config.optimizer.learning_rate, c.config.optimizer.eps) for c in resolve_cells(plan)}
    assert rates[("adam-per-game", "breakout")] == (1e-3, 1e-6) and rates[("adam-per-game", "asterix")] == (3e-3, 1e-6)
    assert rates[("adam", "breakout")][0] == rates[("adam", "asterix")][0] != 1e-3


def test_baseline_learning_rates_say_where_each_rate_came_from(tmp_path):
    from metaopt.evaluation.plan_stats import baseline_learning_rates

    tuned = tmp_path / "tuned.yaml"
    tuned.write_text("breakout:\n  adam: {learning_rate: 0.002, total_timesteps: 1000000, seeds: 3,\n"
                     "    grid: [0.001, 0.002, 0.004], at_grid_edge: false}\n")

    def cell(source, name, lr):
        return {"source": source, "config": {"optimizer": {"name": name, "learning_rate": lr}}}

    # the asterix cell ran as plain adam at the rate the sweep later chose: it counts as tuned
    cells = {"adam:tuned": {"breakout": cell("adam:tuned", "adam", 0.002), "asterix": cell("adam", "adam", 0.003)},
             "rmsprop": {"breakout": cell("rmsprop", "rmsprop", 0.005), "asterix": cell("rmsprop", "rmsprop", 0.005)},
             "adam-slow": {"breakout": cell("adam", "adam", 0.001)},
             "open": {"breakout": cell("published:breakout", "open", 0.001)}}
    sources = {"adam:tuned": "adam:tuned", "rmsprop": "rmsprop", "adam-slow": "adam", "open": "open"}
    lines = baseline_learning_rates(cells, sources, str(tuned))
    assert set(lines) == {"adam:tuned", "rmsprop", "adam-slow"}  # learned optimizers have no tuned rate
    assert lines["adam:tuned"] == (f"0.002 on breakout (swept at 1,000,000 steps over 3 rates with 3 seeds); "
                                   f"0.003 on asterix (sweep record not found): tuned, from {tuned}")
    assert lines["rmsprop"] == "0.005 on every env run: the PPO config's rate (configs/ppo/ENV.yaml), not tuned here"
    assert lines["adam-slow"] == "0.001 on every env run: set in the plan, not tuned here"
    a2c = {"optimizer": {"name": "adam", "learning_rate": 0.001}, "a2c": {"num_envs": 64}}
    catch = baseline_learning_rates({"adam": {"catch": {"source": "adam", "config": a2c}}}, {"adam": "adam"}, str(tuned))
    assert catch["adam"] == "0.001 on every env run: the A2C config's rate (configs/a2c/ENV.yaml), not tuned here"


@pytest.mark.parametrize("extra, expected", [
    (["--baselines", "docs/results/baseline_sweeps/breakout-adam"], "--baselines: only used by the report; add --report"),
    (["--report", "r", "--baselines", "configs"], "--baselines: configs holds no trials.csv"),
])
def test_bad_report_options_stop_before_any_cell(extra, expected, tmp_path, capsys):
    out = tmp_path / "out"
    args = ["evaluate", "--plan", TINY_PLAN, "--out", str(out), "--set", f"tracking.uri=sqlite:///{tmp_path}/m.db"]
    assert main([*args, *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and expected in err and len(err.splitlines()) == 1
    assert not out.exists()


@pytest.mark.parametrize("only, expected", [
    (["adamw/*"], "--only adamw/*: matches no cell; cells are LABEL/ENV with labels adam, rmsprop, open-breakout"),
    (["adam/*", "*/pong"], "--only */pong: matches no cell"),
])
def test_only_pattern_matching_no_cell_stops_before_any_cell(only, expected, tmp_path, capsys):
    out = tmp_path / "out"
    args = ["evaluate", "--plan", TINY_PLAN, "--out", str(out), "--set", f"tracking.uri=sqlite:///{tmp_path}/m.db"]
    assert main([*args, *[a for p in only for a in ("--only", p)]]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and expected in err and len(err.splitlines()) == 1
    assert not out.exists()


def test_only_selects_cells_in_plan_order(tmp_path):
    from metaopt.evaluation.plan import select_cells

    cells = resolve_cells(load_plan(TINY_PLAN, {"tracking.uri": f"sqlite:///{tmp_path}/m.db"}))
    assert [f"{c.label}/{c.env}" for c in select_cells(cells, ["*/asterix", "adam/*"])] == \
        ["adam/breakout", "adam/asterix", "rmsprop/asterix", "open-breakout/asterix"]
    assert select_cells(cells, []) == cells


def test_cell_hash_counts_meta_params_by_content_not_path(tmp_path):
    import shutil

    cells = resolve_cells(load_plan(TINY_PLAN, {"tracking.uri": f"sqlite:///{tmp_path}/m.db"}))
    cell = next(c for c in cells if c.label == "open-breakout" and c.env == "breakout")
    moved = tmp_path / "elsewhere" / "weights.npy"  # another checkout, or a job's working folder
    moved.parent.mkdir()
    shutil.copyfile(cell.config.optimizer.meta_params, moved)

    def at(path):
        cfg = cell.config.model_copy(update={"optimizer": cell.config.optimizer.model_copy(update={"meta_params": str(path)})})
        return type(cell)(cell.label, cell.env, cfg, cell.trained_on, cell.source)

    assert at(moved).config_hash == cell.config_hash
    moved.write_bytes(moved.read_bytes()[:-8] + bytes(8))  # other weights: run again
    assert at(moved).config_hash != cell.config_hash


@pytest.mark.parametrize("path", sorted((PROJECT / "configs" / "eval").glob("*.yaml")), ids=lambda p: p.stem)
def test_shipped_plans_resolve_or_name_the_missing_model(path, tmp_path):
    from metaopt.config import ConfigError, load_train_config
    plan = load_plan(path, {"tracking.uri": f"sqlite:///{tmp_path}/m.db"})
    uris = [o.optimizer for o in plan.optimizers if o.optimizer.startswith("models:/")]
    if uris:  # registered models that do not exist in a fresh store: one line naming the first
        with pytest.raises(ConfigError, match=uris[0].split("@")[0].removeprefix("models:/")):
            resolve_cells(plan)
        return
    cells = resolve_cells(plan)
    assert len(cells) == len(plan.envs) * len(plan.optimizers)
    for cell in cells:
        published_budget = load_train_config(env=cell.env).agent.total_timesteps  # PPO's or A2C's
        assert cell.config.agent.total_timesteps == (plan.budget(cell.env) or published_budget)
        assert cell.config.num_seeds == plan.seeds and cell.config.seed == plan.seed
        if cell.trained_on is not None:
            assert cell.config.optimizer.meta_params and all(env in ENV_NAMES for env in cell.trained_on)


def test_cell_progress_lines_give_update_return_and_eta(monkeypatch):
    from metaopt.evaluation import plan_run as plan_module

    clock = iter([100.0, 160.0, 220.0])
    monkeypatch.setattr(plan_module.time, "time", lambda: next(clock))
    progress = plan_module.CellProgress()
    progress.report("adam / breakout", 10, 110, 1.5)
    assert progress.lines() == ["  adam / breakout: update 10/110, return 1.50"]  # no rate yet
    progress.report("adam / breakout", 20, 110, 2.5)  # 10 updates a minute: 90 more take 9
    assert progress.lines() == ["  adam / breakout: update 20/110, return 2.50, eta 9 min"]
    progress.report("adam / breakout", 110, 110, 3.0)
    assert progress.lines() == []  # finished cells drop out

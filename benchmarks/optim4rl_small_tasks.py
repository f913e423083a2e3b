"""Optim4RL on its own ground: meta-training on Catch (and the gridworlds) with A2C, measured.

tune      meta-train points of the reference's sweep (meta learning rate x reset interval x
          meta-gradient clip), each with its meta-seeds, through `metaopt meta-train`, and score
          each trained optimizer on TUNING seeds (never the reported ones); one JSON per run, so an
          interrupted sweep goes on where it stopped.
select-lr each optimizer's learning rate for the evaluation, chosen on TUNING seeds: the recipe's
          trained optimizer and its initialisation at Optim4RL rates around the reference's,
          Adam and RMSProp over their own grids; one JSON (the table and the choice).
evaluate  a finished recipe run against Adam and RMSProp at the reference's settings on fresh
          seeds (the reference's final return: the mean of the last 20 logged iterations), with
          its initialisation beside it, the step-size diagnostic (does the step still equal
          lr x sign(g) across gradient scales?) and the optimizer's quality along meta-training
          (checkpoints on fixed evaluation seeds, CI on the change); JSON + PNG.

    python benchmarks/optim4rl_small_tasks.py tune --config configs/meta/optim4rl_catch.yaml \\
        --out runs/catch_tune --meta-lr 1e-3 3e-3 1e-2 --clip global_norm elementwise --reset 32
    python benchmarks/optim4rl_small_tasks.py evaluate --config configs/meta/optim4rl_catch.yaml \\
        --run runs/catch_recipe --out benchmarks/recipes/optim4rl_catch
    python benchmarks/optim4rl_small_tasks.py select-lr --config configs/meta/optim4rl_catch.yaml \\
        --run runs/catch_recipe --out benchmarks/recipes/optim4rl_catch_lr_choice.json
    python benchmarks/optim4rl_small_tasks.py evaluate --config configs/meta/optim4rl_catch.yaml \\
        --run runs/catch_recipe --lr-choice benchmarks/recipes/optim4rl_catch_lr_choice.json \\
        --eval-seed 9000 --out benchmarks/recipes/optim4rl_catch_tuned_lr
    python benchmarks/optim4rl_small_tasks.py evaluate --config configs/meta/optim4rl_catch.yaml \\
        --set optimizer.inputs=log --run runs/catch_log --out benchmarks/recipes/optim4rl_catch_log
"""

from __future__ import annotations

import argparse
import itertools
import json
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
CLIP_VALUES = {"global_norm": 0.5, "elementwise": 1.0}  # the reference's two meta-gradient clips


def _train_config(cfg, task, optimizer: str, seed: int, seeds: int, overrides: dict | None = None):
    """A fresh-agent run on the task's evaluation settings (tracking.eval_ppo over the task's)."""
    from metaopt.config import load_train_config

    agent = task.eval_ppo(cfg.tracking)
    sets = {f"a2c.{k}": v for k, v in agent.model_dump().items()} if task.a2c is not None else \
        {f"ppo.{k}": v for k, v in agent.model_dump().items()}
    sets.update({"seed": seed, "num_seeds": seeds, **(overrides or {})})
    return load_train_config(env=task.env.name, optimizer=optimizer, overrides=sets)


def final_returns(cfg, task, optimizer: str, seed: int, seeds: int, overrides: dict | None = None):
    """Per-seed final returns of fresh agents (the reference's definition for A2C tasks)."""
    from metaopt.training.runs import run_training

    return run_training(_train_config(cfg, task, optimizer, seed, seeds, overrides)).final_returns()


def tune(args) -> None:
    from metaopt.config import load_meta_config
    from metaopt.evaluation import stats

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    points = list(itertools.product(args.meta_lr, args.reset, args.clip, args.meta_seeds))
    for i, (lr, reset, clip, meta_seed) in enumerate(points, 1):
        name = f"lr{lr:g}_R{reset}_{clip}_seed{meta_seed}"
        record_path = out / f"{name}.json"
        if record_path.exists():
            print(f"[{i}/{len(points)}] {name}: done before", flush=True)
            continue
        sets = {"pipeline.meta_learning_rate": lr, "pipeline.reset_interval": reset, "pipeline.meta_grad_clip": clip,
                "pipeline.meta_grad_clip_value": CLIP_VALUES[clip], "seed": meta_seed, "keep_checkpoints": 1}
        run = out / name
        cmd = [str(Path(sys.executable).parent / "metaopt"), "meta-train", "--config", args.config, "--out", str(run),
               *[a for k, v in sets.items() for a in ("--set", f"{k}={v}")]]
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        seconds = time.perf_counter() - t0
        cfg = load_meta_config(args.config, sets)
        task = cfg.tasks[0]
        finals = final_returns(cfg, task, "optim4rl", args.tune_seed, args.tune_seeds,
                               {"optimizer.meta_params": str(run / "meta_params.safetensors")})
        record = {"point": {"meta_learning_rate": lr, "reset_interval": reset, "meta_grad_clip": clip,
                            "meta_seed": meta_seed}, "env": task.env.name, "tune_seed": args.tune_seed,
                  "final_returns": [float(x) for x in finals], **stats.summarize(finals),
                  "meta_training_seconds": seconds}
        record_path.write_text(json.dumps(record, indent=2))
        for ckpt in (run / "checkpoints").glob("*.safetensors"):  # agent states: large, not needed here
            ckpt.unlink()
        print(f"[{i}/{len(points)}] {name}: tuning-seed final return {record['mean']:.3f} "
              f"(IQM {record['iqm']:.3f}), meta-training {seconds:.0f} s", flush=True)


def _sets(items: list[str]) -> dict:
    """--set KEY=VALUE pairs, values parsed as YAML (as the CLI's)."""
    import yaml

    return {k: yaml.safe_load(v) for k, _, v in (item.partition("=") for item in items)}


def _checkpoint_meta_params(path: Path) -> dict:
    """The meta-parameters inside a pipeline checkpoint (its other leaves are agent states)."""
    from safetensors.numpy import load_file

    tree: dict = {}
    for key, value in load_file(str(path)).items():
        if key.startswith("meta_params."):
            node = tree
            *parents, leaf = key.split(".")[1:]
            for p in parents:
                node = node.setdefault(p, {})
            node[leaf] = value
    return tree


def _initialisation(cfg, work: Path) -> Path:
    """The recipe's initial meta-parameters (its seed's), saved to WORK/init.safetensors."""
    import jax
    import numpy as np

    from metaopt.meta.pipeline import pipeline_engine
    from metaopt.optimizers.learned import save_meta_params

    engine = pipeline_engine(cfg)
    init = jax.tree.map(np.asarray, engine.meta_params(engine.init(jax.random.key(cfg.seed))))
    work.mkdir(parents=True, exist_ok=True)
    return save_meta_params(work / "init.safetensors", "optim4rl", init)


def select_lr(args) -> None:
    import numpy as np

    from metaopt.config import load_meta_config

    cfg = load_meta_config(args.config, _sets(args.set))
    task = next((t for t in cfg.tasks if t.env.name == args.task), None) if args.task else cfg.tasks[0]
    if task is None:
        raise SystemExit(f"--task: {args.task} is not a task of {args.config}")
    trained = Path(args.meta_params) if args.meta_params else Path(args.run) / "meta_params.safetensors"
    grids = {"optim4rl (meta-trained)": ("optim4rl", trained, args.learned_lrs),
             "optim4rl (its initialisation)": ("optim4rl", _initialisation(cfg, Path(args.work)),
                                               args.learned_lrs if args.initialisation_lrs is None else args.initialisation_lrs),
             "adam": ("adam", None, args.baseline_lrs), "rmsprop": ("rmsprop", None, args.baseline_lrs)}
    grids = {label: grid for label, grid in grids.items() if grid[2]}  # an empty rate list: not searched
    table: dict = {}
    for label, (name, meta, lrs) in grids.items():
        for lr in lrs:
            sets = {"optimizer.learning_rate": lr, **({"optimizer.meta_params": str(meta)} if meta else {}),
                    **({"a2c.total_timesteps": args.total_steps} if args.total_steps else {})}
            finals = final_returns(cfg, task, name, args.tune_seed, args.tune_seeds, sets)
            table.setdefault(label, {})[f"{lr:g}"] = {"final_returns": [float(x) for x in finals],
                                                      "mean": float(np.mean(finals))}
            print(f"{label:<30} lr {lr:<8g} tuning-seed mean final return {np.mean(finals):.4f}", flush=True)
    chosen = {label: float(max(rows, key=lambda k: rows[k]["mean"])) for label, rows in table.items()}
    record = {"recipe": args.config, "run_meta_params": str(trained), "env": task.env.name,
              "tune_seed": args.tune_seed, "tune_seeds": args.tune_seeds, "table": table, "chosen": chosen,
              "rule": "each optimizer's rate with the highest mean final return on the tuning seeds"}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(record, indent=2))
    print(f"chosen on seeds {args.tune_seed}-{args.tune_seed + args.tune_seeds - 1}: {chosen}; wrote {args.out}")


def evaluate(args) -> None:
    import numpy as np

    from metaopt.config import load_meta_config
    from metaopt.evaluation import stats
    from metaopt.optimizers.learned import load_meta_params, save_meta_params
    from metaopt.tracking.checkpoints import checkpoints

    sys.path.insert(0, str(BENCH))
    from meta_training import _curve_stats, optim4rl_step_response, versus_reference

    cfg = load_meta_config(args.config, _sets(args.set))
    task = cfg.tasks[0]
    run = Path(args.run)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    work = Path(args.work)
    init_path = _initialisation(cfg, work)
    init = load_meta_params(init_path, "optim4rl")[1]
    trained_path = run / "meta_params.safetensors"
    trained_label = "optim4rl (meta-trained)"
    if args.checkpoint is not None:  # a checkpoint chosen on the along-training seeds, never on the reported ones
        picked = checkpoints(run / "checkpoints")[args.checkpoint]
        trained_path = save_meta_params(work / f"checkpoint_{args.checkpoint}.safetensors", "optim4rl",
                                        _checkpoint_meta_params(picked))
        trained_label = f"optim4rl (meta-trained, iteration {args.checkpoint})"
    lr = cfg.optimizer.learning_rate

    def learned(path, rate=lr):
        return {"optimizer.meta_params": str(path), "optimizer.learning_rate": rate}

    runs = {trained_label: ("optim4rl", learned(trained_path)),
            "optim4rl (its initialisation)": ("optim4rl", learned(init_path)),
            "adam": ("adam", {}), "rmsprop": ("rmsprop", {})}
    lr_choice = json.loads(Path(args.lr_choice).read_text()) if args.lr_choice else None
    if lr_choice:  # each optimizer also at its rate chosen on the tuning seeds (select-lr)
        chosen = lr_choice["chosen"]
        runs[f"{trained_label} at lr {chosen['optim4rl (meta-trained)']:g}"] = (
            "optim4rl", learned(trained_path, chosen["optim4rl (meta-trained)"]))
        runs[f"optim4rl (its initialisation) at lr {chosen['optim4rl (its initialisation)']:g}"] = (
            "optim4rl", learned(init_path, chosen["optim4rl (its initialisation)"]))
        for name in ("adam", "rmsprop"):
            runs[f"{name} at lr {chosen[name]:g}"] = (name, {"optimizer.learning_rate": chosen[name]})
    results = {}
    for label, (name, overrides) in runs.items():
        t0 = time.perf_counter()
        finals = final_returns(cfg, task, name, args.eval_seed, args.seeds, overrides)
        results[label] = {"final_returns": [float(x) for x in finals], **stats.summarize(finals),
                          "seconds": time.perf_counter() - t0}
        s = results[label]
        print(f"{label:<30} IQM {s['iqm']:.3f} [{s['iqm_ci'][0]:.3f}, {s['iqm_ci'][1]:.3f}]  mean {s['mean']:.3f} "
              f"± {s['stderr']:.3f} s.e. (n={s['n']})", flush=True)
    versus_reference(results, "adam", "vs_adam")
    # Quality along meta-training: the checkpoints' optimizers on fixed evaluation seeds.
    along = []
    ckpts = checkpoints(run / "checkpoints")
    for iteration, path in [(0, None), *sorted(ckpts.items())]:
        meta = init if path is None else _checkpoint_meta_params(path)
        p = save_meta_params(work / f"along_{iteration}.safetensors", "optim4rl", meta)
        finals = final_returns(cfg, task, "optim4rl", args.along_seed, args.along_seeds, learned(p))
        along.append({"iteration": iteration, "final_returns": [float(x) for x in finals], "mean": float(np.mean(finals))})
        print(f"along meta-training: iteration {iteration:>4}: mean final return {np.mean(finals):.3f}", flush=True)
    change, lo, hi = stats.difference_ci(along[0]["final_returns"], along[-1]["final_returns"])
    with (run / "metrics.csv").open() as f:
        import csv

        history = [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]
    trained = load_meta_params(trained_path, "optim4rl")[1]  # the evaluated one (final, or the picked checkpoint)
    record = {
        "case": "optim4rl small task", "recipe": args.config, "overrides": args.set, "checkpoint": args.checkpoint,
        "run": str(run), "env": task.env.name, "commit": commit,
        "budget_env_steps": task.eval_ppo(cfg.tracking).num_updates * task.eval_ppo(cfg.tracking).batch_size,
        "seeds": args.seeds, "eval_seed": args.eval_seed, "meta_training_seed": cfg.seed,
        "lr_choice": args.lr_choice, "learning_rates_chosen": lr_choice["chosen"] if lr_choice else None,
        "meta_iterations": len(history), "meta_training_seconds": sum(r["seconds"] for r in history),
        "curve": _curve_stats(history, "meta_loss"), "results": results,
        "along_meta_training": {"seed": args.along_seed, "seeds": args.along_seeds, "points": along,
                                "change_last_vs_first": change, "change_ci": [lo, hi]},
        "diagnostics": {"step_response": {"initialisation": optim4rl_step_response(init),
                                          "meta-trained": optim4rl_step_response(trained)}},
    }
    Path(f"{out}.json").write_text(json.dumps(record, indent=2))
    plot(record, Path(f"{out}.png"))
    print(f"wrote {out}.json and {out}.png", flush=True)


def plot(record: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, axes = plt.subplots(1, 4, figsize=(20, 4.5))
    curve = record["curve"]["values"]
    axes[0].plot(np.arange(1, len(curve) + 1), curve)
    axes[0].set(xlabel="meta-iteration", ylabel="meta-loss (A2C loss on a fresh rollout)",
                title=f"pipeline training on {record['env']}")
    pts = record["along_meta_training"]["points"]
    its = [p["iteration"] for p in pts]
    for p in pts:
        axes[1].scatter(np.full(len(p["final_returns"]), p["iteration"]), p["final_returns"], s=8, alpha=0.4, color="C0")
    axes[1].plot(its, [p["mean"] for p in pts], "o-", color="C0")
    axes[1].set(xlabel="meta-iteration of the checkpoint", ylabel="final return of fresh agents (mean; dots: seeds)",
                title="the optimizer along meta-training")
    labels = list(record["results"])
    for i, label in enumerate(labels):
        r = record["results"][label]
        lo, hi = r["iqm_ci"]
        axes[2].errorbar(i, r["iqm"], yerr=[[r["iqm"] - lo], [hi - r["iqm"]]], fmt="o", capsize=6, color="k")
        axes[2].scatter(np.full(r["n"], i) + np.linspace(-0.15, 0.15, r["n"]), r["final_returns"], s=8, alpha=0.5)
    axes[2].set_xticks(range(len(labels)), labels, rotation=20, ha="right", fontsize=8)
    axes[2].set(ylabel="final return (IQM, 95% bootstrap CI; dots: seeds)",
                title=f"{record['seeds']} fresh seeds, {record['budget_env_steps']:,} env steps")
    for name, rows in record["diagnostics"]["step_response"].items():
        axes[3].plot([r["gradient_scale"] for r in rows], [r["median"] for r in rows], "o-", label=name)
    axes[3].axhline(1.0, color="grey", ls=":", label="sign descent (|step| = lr)")
    axes[3].set(xscale="log", xlabel="gradient scale", ylabel="median |update| / lr after 64 steps",
                title="step size against gradient scale")
    axes[3].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("tune", help="meta-train points of the reference's sweep, scored on tuning seeds")
    t.add_argument("--config", required=True)
    t.add_argument("--out", required=True)
    t.add_argument("--meta-lr", type=float, nargs="+", default=[1e-4, 3e-4, 1e-3, 3e-3, 1e-2])
    t.add_argument("--reset", type=int, nargs="+", default=[32, 64])
    t.add_argument("--clip", nargs="+", choices=list(CLIP_VALUES), default=list(CLIP_VALUES))
    t.add_argument("--meta-seeds", type=int, nargs="+", default=[0])
    t.add_argument("--tune-seed", type=int, default=100, help="first tuning seed (never reported)")
    t.add_argument("--tune-seeds", type=int, default=8)
    e = sub.add_parser("evaluate", help="a finished recipe run on fresh seeds, with its diagnostics")
    e.add_argument("--config", required=True)
    e.add_argument("--run", required=True, help="the recipe's meta-training folder (checkpoints kept)")
    e.add_argument("--out", required=True, help="output path without suffix: OUT.json and OUT.png")
    e.add_argument("--work", default="runs/small_task_eval", help="scratch folder for meta-parameter files")
    e.add_argument("--seeds", type=int, default=16)
    e.add_argument("--eval-seed", type=int, default=7000, help="first reported seed (unused in tuning)")
    e.add_argument("--along-seed", type=int, default=3000, help="fixed seeds for the along-training curve")
    e.add_argument("--along-seeds", type=int, default=8)
    e.add_argument("--checkpoint", type=int, help="evaluate this checkpoint's optimizer instead of the final one "
                   "(chosen on the along-training seeds)")
    e.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="the overrides the run was meta-trained with, e.g. optimizer.inputs=log")
    e.add_argument("--lr-choice", help="a select-lr JSON: also each optimizer at its rate chosen on tuning seeds")
    s = sub.add_parser("select-lr", help="each optimizer's evaluation learning rate, chosen on tuning seeds")
    s.add_argument("--config", required=True)
    s.add_argument("--run", help="the recipe's meta-training folder (its meta_params.safetensors)")
    s.add_argument("--meta-params", help="the trained optimizer's file instead of --run's")
    s.add_argument("--task", help="which of the recipe's tasks (its env name); default: the first")
    s.add_argument("--total-steps", type=int, help="the evaluation budget in env steps; default: the task's")
    s.add_argument("--out", required=True, help="the JSON to write")
    s.add_argument("--work", default="runs/small_task_eval", help="scratch folder for meta-parameter files")
    s.add_argument("--learned-lrs", type=float, nargs="*", default=[1e-3, 2e-3, 3e-3, 5e-3])
    s.add_argument("--initialisation-lrs", type=float, nargs="*", help="default: --learned-lrs; none: not searched")
    s.add_argument("--baseline-lrs", type=float, nargs="*", default=[1e-3, 3e-3, 1e-2], help="none: not searched")
    s.add_argument("--tune-seed", type=int, default=100, help="first tuning seed (never reported)")
    s.add_argument("--tune-seeds", type=int, default=10)
    s.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="the overrides the run was meta-trained with")
    args = parser.parse_args()
    {"tune": tune, "evaluate": evaluate, "select-lr": select_lr}[args.command](args)


if __name__ == "__main__":
    main()

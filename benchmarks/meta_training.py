"""Meta-training engine costs, compile time excluded. Prints a table and writes JSON.

es_vmap: one ES generation of population P (one jitted call over all members) against P
  single PPO + OPEN runs of the same members done one by one. Ratio <= 1.0: the generation
  loses nothing. Measured for the backend's default `es.members_per_vmap` and for full vmap
  (all P members in one vmap), the three timed in turn. Breakout config (64 envs x 128
  steps) with a reduced budget.
pipeline_backward: one pipeline meta-gradient (inner PPO updates with Optim4RL, then the
  meta-loss, then backprop) against the same computation without the backward pass; the
  difference is the backward pass's share of a meta-iteration.

    python benchmarks/meta_training.py --out benchmarks/results
    python benchmarks/meta_training.py --population 8 --updates 4 --repeats 3
    python benchmarks/meta_training.py --cases es_vmap --repeats 5

recipe: a CPU meta-training recipe's curve (first vs last 10 iterations, bootstrap CI) and
  its optimizer against its own initialisation, tuned Adam and RMSProp (and the published
  OPEN) on fresh seeds: IQM with 95% bootstrap CIs, probability of improvement over Adam.

    python benchmarks/meta_training.py --recipe configs/meta/open_breakout_cpu.yaml \\
        --run runs/open_breakout_cpu --published PATH/breakout_OPEN.npy --out benchmarks/recipes
    python benchmarks/meta_training.py --recipe configs/meta/open_breakout_cpu.yaml --meta-seed 1 \\
        --run runs/open_breakout_cpu_seed1 --published published:breakout --out benchmarks/recipes
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path


def _timed(fn, repeats: int) -> list[float]:
    import jax

    jax.block_until_ready(fn())  # compile and warm up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
    return times


def _timed_in_turn(fns: dict, repeats: int) -> tuple[dict, dict[str, list[float]], dict[str, list[float]]]:
    """Each function warmed up (its output returned), then all timed once per round,
    `repeats` rounds: on a shared machine, load drifts hit every variant alike. Wall and
    process CPU seconds (the work done, less sensitive to other jobs than wall time)."""
    import jax

    outputs = {name: jax.block_until_ready(fn()) for name, fn in fns.items()}
    wall: dict[str, list[float]] = {name: [] for name in fns}
    cpu: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0, c0 = time.perf_counter(), time.process_time()
            jax.block_until_ready(fn())
            wall[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)
    return outputs, wall, cpu


def es_vmap(population: int, updates: int, repeats: int) -> dict:
    import jax
    import numpy as np

    from metaopt.config import meta_config_at
    from metaopt.meta.es import members_per_vmap, open_es_engine, open_task_fitness

    def config(per_vmap):
        return meta_config_at({
            "method": "open",
            "tasks": [{"env": "breakout", "ppo": {"total_timesteps": 64 * 128 * updates}}],
            "es": {"population_size": population, "sigma_init": 0.1, "members_per_vmap": per_vmap},
            "iterations": 1,
        }, {})

    cfg = config(None)
    engine, full = open_es_engine(cfg), open_es_engine(config(population))
    population_arr, keys, _ = engine.ask(engine.init(jax.random.key(0)))
    single = jax.jit(open_task_fitness(cfg.tasks[0], cfg.optimizer, 0))
    fns = {
        "generation": lambda: engine.evaluate(population_arr, keys),
        "full_vmap": lambda: full.evaluate(population_arr, keys),
        "one_by_one": lambda: [single(population_arr[i], keys[0]) for i in range(population)],
    }
    outputs, times, cpu = _timed_in_turn(fns, repeats)
    fitness = {name: np.ravel(np.asarray(jax.device_get(out))) for name, out in outputs.items()}
    med = {name: statistics.median(t) for name, t in times.items()}
    med_cpu = {name: statistics.median(t) for name, t in cpu.items()}
    steps = engine.env_steps_per_iteration
    return {
        "case": "es_vmap", "population": population, "ppo_updates_per_run": updates,
        "members_per_vmap": members_per_vmap(cfg.es), "backend": jax.default_backend(),
        "generation_seconds": med["generation"], "full_vmap_seconds": med["full_vmap"],
        "one_by_one_seconds": med["one_by_one"],
        "ratio": med["generation"] / med["one_by_one"], "full_vmap_ratio": med["full_vmap"] / med["one_by_one"],
        "max_fitness_difference": float(max(np.max(np.abs(f - fitness["one_by_one"])) for f in fitness.values())),
        "generation_env_steps_per_second": steps / med["generation"],
        "one_by_one_env_steps_per_second": steps / med["one_by_one"],
        "cpu_ratio": med_cpu["generation"] / med_cpu["one_by_one"],
        "full_vmap_cpu_ratio": med_cpu["full_vmap"] / med_cpu["one_by_one"],
        "all_seconds": times, "all_cpu_seconds": cpu, "load_average": os.getloadavg(),
    }


def pipeline_backward(width: int, inner_updates: int, repeats: int) -> dict:
    from functools import partial

    import jax

    from metaopt.config import meta_config_at
    from metaopt.meta.pipeline import pipeline_engine

    cfg = meta_config_at({
        "method": "optim4rl",
        "tasks": ["breakout"],
        "pipeline": {"width": width, "inner_updates": inner_updates, "rematerialize": False},
        "iterations": 1,
    }, {})
    engine = pipeline_engine(cfg)
    state = engine.init(jax.random.key(0))
    agents = state.agents[0]
    loss = partial(engine.agent_meta_loss, 0)
    forward = jax.jit(jax.vmap(lambda m, a: loss(m, a)[0], (None, 0)))
    with_grad = _timed(lambda: engine.group_gradient(0, state.meta_params, agents)[0], repeats)
    forward_only = _timed(lambda: forward(state.meta_params, agents), repeats)
    full_s, fwd_s = statistics.median(with_grad), statistics.median(forward_only)
    return {
        "case": "pipeline_backward", "width": width, "inner_updates": inner_updates,
        "optimizer_steps_per_agent": inner_updates * cfg.tasks[0].ppo.update_epochs * cfg.tasks[0].ppo.num_minibatches,
        "meta_gradient_seconds": full_s, "forward_only_seconds": fwd_s,
        "backward_share": (full_s - fwd_s) / full_s,
        "env_steps_per_second": engine.env_steps_per_iteration / full_s,
        "all_meta_gradient_seconds": with_grad, "all_forward_only_seconds": forward_only,
    }


def _curve_stats(history: list[dict], key: str, k: int = 10) -> dict:
    """First-k vs last-k iterations of a meta-training curve, with a bootstrap CI of the change."""
    from metaopt.evaluation import stats

    values = [row[key] for row in history if key in row]
    k = min(k, len(values) // 2)
    first, last = values[:k], values[-k:]
    change, low, high = stats.difference_ci(first, last)
    return {"metric": key, "iterations": len(values), "k": k, "first_k_mean": float(sum(first) / k),
            "last_k_mean": float(sum(last) / k), "change": change, "change_ci": [low, high], "values": values}


def versus_reference(results: dict, reference: str, key: str) -> None:
    """Adds to every other entry of `results` (label -> {"final_returns": ...}) its IQM difference
    from `reference` with a bootstrap CI and P(better), under `key`."""
    from metaopt.evaluation import stats

    ref = results[reference]["final_returns"]
    for label, r in results.items():
        if label != reference:
            diff, lo, hi = stats.difference_ci(ref, r["final_returns"], statistic=stats.iqm)
            r[key] = {"iqm_difference": diff, "iqm_difference_ci": [lo, hi],
                      "probability_of_improvement": stats.probability_of_improvement(r["final_returns"], ref)}


def optim4rl_step_response(meta_params: dict, scales=(1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0), steps: int = 64) -> list[dict]:
    """How an Optim4RL optimizer sizes its steps: |update| / lr after `steps` i.i.d. Gaussian
    gradients of each scale (4096 parameters). Near 1.0 at every scale: sign descent, the
    step size blind to the gradient's magnitude and history (an untrained Optim4RL)."""
    import jax
    import jax.numpy as jnp

    from metaopt.optimizers import optim4rl

    params = jax.tree.map(jnp.asarray, meta_params)
    rows = []
    for scale in scales:
        carry = jnp.zeros((2, optim4rl.HIDDEN, 4096))
        grads = scale * jax.random.normal(jax.random.key(0), (steps, 4096))
        for t in range(steps):
            carry, d = optim4rl.direction(params, carry, grads[t])
        d = jnp.abs(d)
        rows.append({"gradient_scale": scale, "median": float(jnp.median(d)), "p10": float(jnp.percentile(d, 10)),
                     "p90": float(jnp.percentile(d, 90))})
    return rows


def recipe(config: str, run: str, seeds: int, eval_seed: int, tuned_file: str, published: str | None,
           meta_seed: int | None = None) -> dict:
    """Fresh-seed evaluation of a CPU meta-training recipe's result: the learned optimizer,
    its own initialisation, tuned Adam and RMSProp (and the published OPEN), each training
    `seeds` agents from scratch at the recipe's budget on seeds the run never used. `meta_seed`:
    the seed the run was meta-trained with where it was not the config's (`--set seed=N`)."""
    import csv
    import subprocess
    import tempfile

    import jax
    import numpy as np

    from metaopt.config import TrainConfig, load_meta_config, load_train_config
    from metaopt.evaluation import stats
    from metaopt.meta.run import make_engine
    from metaopt.meta.warm_start import load_warm_start
    from metaopt.optimizers.learned import save_meta_params
    from metaopt.training.runs import run_training

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    cfg = load_meta_config(config, None if meta_seed is None else {"seed": meta_seed})
    task = cfg.tasks[0]
    run_dir = Path(run)
    with (run_dir / "metrics.csv").open() as f:
        history = [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]
    warm = load_warm_start(cfg)
    engine = make_engine(cfg, None if warm is None else warm.meta_params)
    init_params = engine.meta_params(engine.init(jax.random.key(cfg.seed)))
    tmp = Path(tempfile.mkdtemp())
    init_path = save_meta_params(tmp / "init.safetensors", cfg.method, jax.tree.map(np.asarray, init_params))

    def learned(path: str | Path) -> TrainConfig:
        opt = cfg.optimizer.model_copy(update={"meta_params": str(path)})
        return TrainConfig(env=task.env, ppo=task.ppo, optimizer=opt, seed=eval_seed, num_seeds=seeds)

    ppo_overrides = {f"ppo.{k}": v for k, v in task.ppo.model_dump().items()}
    ppo_overrides.update({"seed": eval_seed, "num_seeds": seeds})

    def baseline(name: str) -> TrainConfig:
        return load_train_config(env=task.env.name, optimizer=f"{name}:tuned", overrides=ppo_overrides, tuned_file=tuned_file)

    runs = {f"{cfg.method} (meta-trained)": learned(run_dir / "meta_params.safetensors"),
            f"{cfg.method} (its initialisation)": learned(init_path),
            "adam:tuned": baseline("adam"), "rmsprop:tuned": baseline("rmsprop")}
    if published:
        from metaopt import published as shipped

        opt = load_train_config(env=task.env.name, optimizer="open").optimizer.model_copy(
            update={"meta_params": shipped.resolve(published)})
        runs["open (published)"] = TrainConfig(env=task.env, ppo=task.ppo, optimizer=opt, seed=eval_seed, num_seeds=seeds)
    results = {}
    for label, train_cfg in runs.items():
        t0 = time.perf_counter()
        finals = run_training(train_cfg, label=label).final_returns()
        lr = getattr(train_cfg.optimizer, "learning_rate", None)
        results[label] = {"final_returns": [float(x) for x in finals], "learning_rate": lr, **stats.summarize(finals),
                          "seconds": time.perf_counter() - t0}
        s = results[label]
        print(f"{label:<28} IQM {s['iqm']:7.2f} [{s['iqm_ci'][0]:.2f}, {s['iqm_ci'][1]:.2f}]  "
              f"mean {s['mean']:7.2f} ± {s['stderr']:.2f} s.e.  (n={s['n']})", flush=True)
    versus_reference(results, "adam:tuned", "vs_tuned_adam")
    curve_key = "fitness_mean" if cfg.method == "open" else "meta_loss"
    diagnostics = {}
    if cfg.method == "optim4rl":
        from metaopt.optimizers.learned import load_meta_params

        trained = load_meta_params(run_dir / "meta_params.safetensors", "optim4rl")[1]
        diagnostics["step_response"] = {"initialisation": optim4rl_step_response(init_params),
                                        "meta-trained": optim4rl_step_response(trained)}
    return {"diagnostics": diagnostics,
            "case": "recipe", "recipe": config, "run": str(run_dir), "method": cfg.method, "env": task.env.name,
            "budget_env_steps": task.ppo.num_updates * task.ppo.batch_size, "seeds": seeds, "eval_seed": eval_seed,
            "meta_training_seed": cfg.seed, "tuned_file": tuned_file, "commit": commit,
            "meta_iterations": len(history), "meta_training_seconds": sum(r["seconds"] for r in history),
            "curve": _curve_stats(history, curve_key),
            "curve_best": _curve_stats(history, "fitness_best") if cfg.method == "open" else None,
            "results": results}


def plot_recipe(record: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    curve = record["curve"]
    x = np.arange(1, len(curve["values"]) + 1)
    ax1.plot(x, curve["values"], label=curve["metric"].replace("_", " "))
    if record.get("curve_best"):
        ax1.plot(x, record["curve_best"]["values"], alpha=0.5, label="fitness best")
    ax1.set_xlabel("generation" if record["method"] == "open" else "meta-iteration")
    ax1.set_title(f"{record['method']} meta-training on {record['env']}")
    ax1.legend()
    labels = list(record["results"])
    for i, label in enumerate(labels):
        r = record["results"][label]
        lo, hi = r["iqm_ci"]
        ax2.errorbar(i, r["iqm"], yerr=[[r["iqm"] - lo], [hi - r["iqm"]]], fmt="o", capsize=6, color="k")
        ax2.scatter(np.full(len(r["final_returns"]), i) + np.linspace(-0.15, 0.15, len(r["final_returns"])),
                    r["final_returns"], s=8, alpha=0.5)
    ax2.set_xticks(range(len(labels)), labels, rotation=20, ha="right", fontsize=8)
    ax2.set_ylabel("final return (IQM, 95% bootstrap CI; dots: seeds)")
    ax2.set_title(f"fresh agents, {record['seeds']} new seeds, {record['budget_env_steps']:,} env steps")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", metavar="CONFIG", help="evaluate a finished CPU recipe run instead of timing (needs --run)")
    parser.add_argument("--run", help="the recipe's meta-training output folder")
    parser.add_argument("--seeds", type=int, default=16)
    parser.add_argument("--eval-seed", type=int, default=7000, help="base seed of the fresh agents (unused in meta-training)")
    parser.add_argument("--tuned-file", default="configs/tuned/breakout_cpu.yaml")
    parser.add_argument("--published", help="a published OPEN to evaluate beside: published:ENV or a .npy file")
    parser.add_argument("--meta-seed", type=int, help="the run's meta-training seed where it was not the recipe's "
                        "(meta-trained with --set seed=N); the output is then named RECIPE_seedN")
    parser.add_argument("--population", type=int, default=8)
    parser.add_argument("--updates", type=int, default=4, help="PPO updates per ES member's run")
    parser.add_argument("--width", type=int, default=2, help="pipeline agents")
    parser.add_argument("--inner-updates", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default="benchmarks/results")
    parser.add_argument("--cases", nargs="+", choices=["es_vmap", "pipeline_backward"], default=["es_vmap", "pipeline_backward"])
    args = parser.parse_args()

    import jax

    if args.recipe:
        record = recipe(args.recipe, args.run, args.seeds, args.eval_seed, args.tuned_file, args.published, args.meta_seed)
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        name = Path(args.recipe).stem + ("" if args.meta_seed is None else f"_seed{args.meta_seed}")
        record["machine"] = {"platform": platform.platform(), "jax": jax.__version__, "devices": [str(d) for d in jax.devices()],
                             "cpus": os.cpu_count()}
        (out / f"{name}.json").write_text(json.dumps(record, indent=2))
        plot_recipe(record, out / f"{name}.png")
        c = record["curve"]
        print(f"{c['metric']}: first {c['k']} mean {c['first_k_mean']:.3f}, last {c['k']} mean {c['last_k_mean']:.3f}, "
              f"change {c['change']:.3f} [{c['change_ci'][0]:.3f}, {c['change_ci'][1]:.3f}]")
        print(f"wrote {out / name}.json and .png")
        return

    rows = []
    print(f"{'case':<20} {'measured':>12} {'baseline':>12} {'ratio/share':>12}")
    if "es_vmap" in args.cases:
        es = es_vmap(args.population, args.updates, args.repeats)
        rows.append(es)
        print(f"{'es generation':<20} {es['generation_seconds']:>11.2f}s {es['one_by_one_seconds']:>11.2f}s "
              f"{es['ratio']:>12.2f}   (P={args.population}, {es['members_per_vmap']} vmapped at a time, "
              "vs one by one; target <= 1.0)")
        print(f"{'es full vmap':<20} {es['full_vmap_seconds']:>11.2f}s {es['one_by_one_seconds']:>11.2f}s "
              f"{es['full_vmap_ratio']:>12.2f}   (all {args.population} members in one vmap)")
        print(f"{'':<20} CPU-time ratios {es['cpu_ratio']:.2f} / {es['full_vmap_cpu_ratio']:.2f}; load average "
              f"{es['load_average'][0]:.1f}; largest fitness difference between the three: {es['max_fitness_difference']:.3g}")
    if "pipeline_backward" in args.cases:
        pipe = pipeline_backward(args.width, args.inner_updates, args.repeats)
        rows.append(pipe)
        print(f"{'pipeline meta-grad':<20} {pipe['meta_gradient_seconds']:>11.2f}s {pipe['forward_only_seconds']:>11.2f}s "
              f"{pipe['backward_share']:>12.2f}   (with backward vs forward only; share in backward)")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    record = {"machine": {"platform": platform.platform(), "processor": platform.processor(),
                          "jax": jax.__version__, "devices": [str(d) for d in jax.devices()]},
              "time": time.strftime("%Y-%m-%d %H:%M:%S"), "results": rows}
    (out / "meta_training.json").write_text(json.dumps(record, indent=2))
    print(f"wrote {out / 'meta_training.json'}")


if __name__ == "__main__":
    main()

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

    from metaopt.config import MetaTrainConfig
    from metaopt.meta.es import members_per_vmap, open_es_engine, open_task_fitness

    def config(per_vmap):
        return MetaTrainConfig.model_validate({
            "method": "open",
            "tasks": [{"env": "breakout", "ppo": {"total_timesteps": 64 * 128 * updates}}],
            "es": {"population_size": population, "sigma_init": 0.1, "members_per_vmap": per_vmap},
            "iterations": 1,
        })

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
        "generation_env_steps_per_second": steps / med["generation"], "one_by_one_env_steps_per_second": steps / med["one_by_one"],
        "cpu_ratio": med_cpu["generation"] / med_cpu["one_by_one"], "full_vmap_cpu_ratio": med_cpu["full_vmap"] / med_cpu["one_by_one"],
        "all_seconds": times, "all_cpu_seconds": cpu, "load_average": os.getloadavg(),
    }


def pipeline_backward(width: int, inner_updates: int, repeats: int) -> dict:
    from functools import partial

    import jax

    from metaopt.config import MetaTrainConfig
    from metaopt.meta.pipeline import agent_meta_loss, pipeline_engine

    cfg = MetaTrainConfig.model_validate({
        "method": "optim4rl",
        "tasks": ["breakout"],
        "pipeline": {"width": width, "inner_updates": inner_updates, "rematerialize": False},
        "iterations": 1,
    })
    engine = pipeline_engine(cfg)
    state = engine.init(jax.random.key(0))
    agents = state.agents[0]
    loss = partial(agent_meta_loss, engine, 0)
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--population", type=int, default=8)
    parser.add_argument("--updates", type=int, default=4, help="PPO updates per ES member's run")
    parser.add_argument("--width", type=int, default=2, help="pipeline agents")
    parser.add_argument("--inner-updates", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default="benchmarks/results")
    parser.add_argument("--cases", nargs="+", choices=["es_vmap", "pipeline_backward"], default=["es_vmap", "pipeline_backward"])
    args = parser.parse_args()

    import jax

    rows = []
    print(f"{'case':<20} {'measured':>12} {'baseline':>12} {'ratio/share':>12}")
    if "es_vmap" in args.cases:
        es = es_vmap(args.population, args.updates, args.repeats)
        rows.append(es)
        print(f"{'es generation':<20} {es['generation_seconds']:>11.2f}s {es['one_by_one_seconds']:>11.2f}s "
              f"{es['ratio']:>12.2f}   (P={args.population}, {es['members_per_vmap']} vmapped at a time, vs one by one; target <= 1.0)")
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

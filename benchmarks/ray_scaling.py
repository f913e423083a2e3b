"""ES generation time on Ray with 1 and 2 workers, and Ray's overhead. Prints a table and
writes JSON. Compile time excluded (a warm-up generation per pool).

speed-up: generation wall time with 1 worker / with 2 workers (same shards, same numbers).
overhead: (driver wall time per generation - the busiest worker's compute) / wall time:
  ask/tell, shipping parameters and fitnesses, scheduling.
layouts: 1 worker with both CPUs (XLA's threads use both cores), 1 worker pinned to one core,
  2 workers with a CPU each, unpinned (the OS spreads each worker's threads over both cores)
  and pinned (distributed.pin_cpus: each worker on its own core).

    python benchmarks/ray_scaling.py --out benchmarks/results
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path


def measure(workers: int, cpus: int, pin: bool, population: int, updates: int, generations: int) -> dict:
    import jax

    from metaopt.config import meta_config_at
    from metaopt.distributed.ray_meta import WorkerPool, ray_engine

    cfg = meta_config_at({
        "method": "open",
        "tasks": [{"env": "breakout", "ppo": {"total_timesteps": 64 * 128 * updates}}],
        "es": {"population_size": population, "members_per_shard": population // 2, "sigma_init": 0.1},
        "distributed": {"workers": workers, "cpus_per_worker": cpus, "pin_cpus": pin},
        "iterations": generations,
    }, {})
    pool = WorkerPool(cfg, cfg.distributed)
    try:
        engine = ray_engine(cfg, pool)
        state = engine.init(jax.random.key(0))
        state, _ = engine.step(state)  # compiles on every worker
        rows = []
        for _ in range(generations):
            state, metrics = engine.step(state)
            rows.append({k: float(metrics[k]) for k in ("ray_wall_seconds", "ray_slowest_worker_seconds", "ray_overhead_share")})
    finally:
        pool.shutdown()
    wall = statistics.median(r["ray_wall_seconds"] for r in rows)
    return {
        "workers": workers, "cpus_per_worker": cpus, "pinned": pin, "population": population,
        "ppo_updates_per_member": updates,
        "generation_seconds": wall,
        "slowest_worker_seconds": statistics.median(r["ray_slowest_worker_seconds"] for r in rows),
        "overhead_share": statistics.median(r["ray_overhead_share"] for r in rows),
        "env_steps_per_second": engine.env_steps_per_iteration / wall,
        "generations": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--population", type=int, default=8)
    parser.add_argument("--updates", type=int, default=4, help="PPO updates (64 envs x 128 steps) per member")
    parser.add_argument("--generations", type=int, default=3)
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args()

    import jax
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    layouts = [(1, 2, False), (1, 1, True), (2, 1, False), (2, 1, True)]
    rows = [measure(w, c, pin, args.population, args.updates, args.generations) for w, c, pin in layouts]
    ray.shutdown()
    best_single, one_pinned, two_unpinned, two_pinned = (r["generation_seconds"] for r in rows)
    speedups = {"two_pinned_vs_one_pinned": one_pinned / two_pinned,
                "two_pinned_vs_one_with_both_cpus": best_single / two_pinned,
                "two_unpinned_vs_one_with_both_cpus": best_single / two_unpinned}
    print(f"{'workers':>8} {'CPUs each':>10} {'pinned':>7} {'generation s':>13} {'busiest worker s':>17} "
          f"{'overhead':>9} {'env steps/s':>12}")
    for r in rows:
        print(f"{r['workers']:>8} {r['cpus_per_worker']:>10} {str(r['pinned']):>7} {r['generation_seconds']:>13.2f} "
              f"{r['slowest_worker_seconds']:>17.2f} {r['overhead_share']:>9.1%} {r['env_steps_per_second']:>12,.0f}")
    print(f"speed-up, 2 pinned workers vs 1 (a CPU each): {speedups['two_pinned_vs_one_pinned']:.2f}x (target >= 1.7x); "
          f"vs 1 worker with both CPUs: {speedups['two_pinned_vs_one_with_both_cpus']:.2f}x "
          f"(unpinned: {speedups['two_unpinned_vs_one_with_both_cpus']:.2f}x); overhead target < 5%")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    record = {"machine": {"platform": platform.platform(), "jax": jax.__version__, "cpus": 2},
              "time": time.strftime("%Y-%m-%d %H:%M:%S"), "speedups": speedups, "results": rows}
    (out / "ray_scaling.json").write_text(json.dumps(record, indent=2))
    print(f"wrote {out / 'ray_scaling.json'}")


if __name__ == "__main__":
    main()

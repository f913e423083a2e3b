"""ES generation time on Ray with 1 and 2 workers, and Ray's overhead. Prints a table and
writes JSON. Compile time excluded (a warm-up generation per pool).

speed-up: generation wall time with 1 worker / with 2 workers (same shards, same numbers).
overhead: (driver wall time per generation - the busiest worker's compute) / wall time:
  ask/tell, shipping parameters and fitnesses, scheduling.
machine ceiling: the same shard evaluated by plain processes without Ray, one alone and then
  two at once (each compiled first, started together): 2 x t(alone) / t(two at once) is the
  most any 2-worker scheme can gain on this machine.

    python benchmarks/ray_scaling.py --out benchmarks/results
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path


def measure(workers: int, population: int, updates: int, generations: int) -> dict:
    import jax

    from metaopt.config import MetaTrainConfig
    from metaopt.distributed.ray_meta import WorkerPool, ray_engine

    cfg = MetaTrainConfig.model_validate({
        "method": "open",
        "tasks": [{"env": "breakout", "ppo": {"total_timesteps": 64 * 128 * updates}}],
        "es": {"population_size": population, "members_per_shard": population // 2, "sigma_init": 0.1},
        "distributed": {"workers": workers, "cpus_per_worker": 2 // workers},
        "iterations": generations,
    })
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
        "workers": workers, "population": population, "ppo_updates_per_member": updates,
        "generation_seconds": wall,
        "slowest_worker_seconds": statistics.median(r["ray_slowest_worker_seconds"] for r in rows),
        "overhead_share": statistics.median(r["ray_overhead_share"] for r in rows),
        "env_steps_per_second": engine.env_steps_per_iteration / wall,
        "generations": rows,
    }


_SHARD_SCRIPT = """
import json, sys, time
from pathlib import Path
import jax
from metaopt.config import MetaTrainConfig
from metaopt.meta.es import open_es_engine
population, updates, repeats, barrier = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4])
cfg = MetaTrainConfig.model_validate({"method": "open",
    "tasks": [{"env": "breakout", "ppo": {"total_timesteps": 64 * 128 * updates}}],
    "es": {"population_size": population, "members_per_shard": population // 2, "sigma_init": 0.1}, "iterations": 1})
engine = open_es_engine(cfg)
members, keys, _ = engine.ask(engine.init(jax.random.key(0)))
shard = engine.shards(members)[0]
jax.block_until_ready(engine.evaluate_shard(shard, keys))
print("ready", flush=True)
while not barrier.exists():
    time.sleep(0.01)
t0 = time.perf_counter()
for _ in range(repeats):
    jax.block_until_ready(engine.evaluate_shard(shard, keys))
print(json.dumps({"seconds": time.perf_counter() - t0}), flush=True)
"""


def _shards_at_once(processes: int, population: int, updates: int, repeats: int) -> float:
    """Wall time for `processes` plain processes each evaluating one shard `repeats` times."""
    import subprocess
    import sys
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        barrier = Path(tmp) / "go"
        procs = [subprocess.Popen([sys.executable, "-c", _SHARD_SCRIPT, str(population), str(updates), str(repeats),
                                   str(barrier)], stdout=subprocess.PIPE, text=True) for _ in range(processes)]
        for p in procs:
            assert p.stdout.readline().strip() == "ready"
        barrier.touch()
        times = [json.loads(p.stdout.readline())["seconds"] for p in procs]
        for p in procs:
            p.wait()
    return max(times)


def machine_ceiling(population: int, updates: int, repeats: int = 2) -> dict:
    alone = _shards_at_once(1, population, updates, repeats)
    together = _shards_at_once(2, population, updates, repeats)
    return {"one_process_seconds": alone, "two_processes_seconds": together, "ceiling": 2 * alone / together}


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
    rows = [measure(w, args.population, args.updates, args.generations) for w in (1, 2)]
    ray.shutdown()
    one, two = rows
    speedup = one["generation_seconds"] / two["generation_seconds"]
    print(f"{'workers':>8} {'generation s':>13} {'busiest worker s':>17} {'overhead':>9} {'env steps/s':>12}")
    for r in rows:
        print(f"{r['workers']:>8} {r['generation_seconds']:>13.2f} {r['slowest_worker_seconds']:>17.2f} "
              f"{r['overhead_share']:>9.1%} {r['env_steps_per_second']:>12,.0f}")
    print(f"speed-up 2 vs 1 workers: {speedup:.2f}x (target >= 1.7x); overhead target < 5%")
    ceiling = machine_ceiling(args.population, args.updates)
    print(f"machine ceiling (plain processes, no Ray): one shard alone {ceiling['one_process_seconds']:.2f} s, "
          f"two shards in two processes at once {ceiling['two_processes_seconds']:.2f} s: at most "
          f"{ceiling['ceiling']:.2f}x from a second worker")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    record = {"machine": {"platform": platform.platform(), "jax": jax.__version__, "cpus": 2},
              "time": time.strftime("%Y-%m-%d %H:%M:%S"), "speedup": speedup, "results": rows,
              "machine_ceiling": ceiling}
    (out / "ray_scaling.json").write_text(json.dumps(record, indent=2))
    print(f"wrote {out / 'ray_scaling.json'}")


if __name__ == "__main__":
    main()

"""A2C throughput on Catch and the gridworlds at the reference's settings (512 envs x 20 steps
for the grids, 64 for Catch; Adam): env steps per second of (a) the env's step alone under
random actions and (b) whole A2C updates with `--seeds` seeds vmapped, as evaluation cells run
them; compile time excluded, best of `--repeats`. Prints a table and writes JSON.

    python benchmarks/a2c_throughput.py --out benchmarks/throughput/a2c.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import jax
from ppo_throughput import machine_info  # this folder is on sys.path when run as a script

from metaopt.agents.a2c import make_a2c
from metaopt.config import load_train_config
from metaopt.envs import make_env
from metaopt.optimizers import build_optimizer
from metaopt.tracking.mlflow_run import code_version

ENVS = ["catch", "small_dense_long", "big_sparse_short", "big_dense_long"]


def best_rate(run, state, steps_per_call: int, repeats: int) -> float:
    """Env steps per second of `run(state) -> (state, ...)`, best of `repeats`; compiled for the
    initial state and for the state it returns (their types may differ: weak types after reset)."""
    out = jax.block_until_ready(run(state))
    out = jax.block_until_ready(run(out[0]))
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        out = jax.block_until_ready(run(out[0]))
        best = min(best, time.perf_counter() - start)
    return steps_per_call / best


def env_rate(name: str, num_envs: int, steps: int, repeats: int) -> float:
    env = make_env(load_train_config(env=name).env, num_envs)
    _, state = env.reset(jax.random.key(0))

    def body(state, key):
        k_action, k_step = jax.random.split(key)
        state, s = env.step(k_step, state, jax.random.randint(k_action, (num_envs,), 0, env.action_dim))
        return state, s.reward.sum()

    run = jax.jit(lambda state: jax.lax.scan(body, state, jax.random.split(jax.random.key(1), steps)))
    return best_rate(run, state, steps * num_envs, repeats)


def update_rate(name: str, seeds: int, updates: int, repeats: int) -> tuple[float, int]:
    cfg = load_train_config(env=name, optimizer="adam")
    agent = make_a2c(cfg, build_optimizer(cfg.optimizer, cfg.agent))
    states = jax.vmap(agent.init)(jax.random.split(jax.random.key(0), seeds))
    run = jax.jit(jax.vmap(lambda s: jax.lax.scan(lambda c, _: agent.update(c), s, None, length=updates)))
    per_call = seeds * updates * cfg.a2c.num_envs * cfg.a2c.num_steps
    return best_rate(run, states, per_call, repeats), cfg.a2c.num_envs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", nargs="+", default=ENVS)
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--updates", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    rows = []
    for name in args.envs:
        update, num_envs = update_rate(name, args.seeds, args.updates, args.repeats)
        env = env_rate(name, num_envs, 100, args.repeats)
        rows.append({"env": name, "num_envs": num_envs, "env_step_per_s": env, "a2c_update_env_steps_per_s": update})
        print(f"{name:18s} {num_envs:4d} envs  env step {env:12,.0f}/s  A2C ({args.seeds} seeds vmapped) {update:10,.0f}/s",
              flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"meta": {**machine_info(), "code_version": code_version()}, "seeds": args.seeds,
                               "rows": rows}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

"""How far each optimizer moves an A2C agent per update: mean |delta theta| over all parameters,
averaged over updates 1-10 and 21-30 of one seed on a gridworld at the reference's A2C settings
(512 envs x 20 steps, one optimizer step per rollout). OPEN has no learning rate, so under A2C it
takes its own step size at a PPO-sized count of steps; the table shows how that compares with
Adam at a small and at the tuned rate. Prints a table and writes JSON.

    python benchmarks/a2c_step_sizes.py --env small_dense_long --out benchmarks/reference_probe/a2c_step_sizes.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from metaopt.agents.a2c import make_a2c
from metaopt.config import load_train_config
from metaopt.optimizers import build_optimizer

CASES = {  # label -> (optimizer, overrides)
    "open (published gridworld)": ("open", {"optimizer.meta_params": "published:gridworld"}),
    "adam 1e-3": ("adam", {"optimizer.learning_rate": 1e-3}),
    "adam 3e-2 (tuned)": ("adam", {"optimizer.learning_rate": 3e-2}),
    "optim4rl-grid 3e-2": ("optim4rl", {"optimizer.meta_params": "benchmarks/recipes/optim4rl_grid.safetensors",
                                        "optimizer.learning_rate": 3e-2}),
}


def step_sizes(env: str, optimizer: str, overrides: dict, seed: int, updates: int = 30) -> list[float]:
    """Mean |delta theta| over all parameters for each of the first `updates` A2C updates."""
    cfg = load_train_config(env=env, optimizer=optimizer, overrides={**overrides, "num_seeds": 1, "seed": seed})
    agent = make_a2c(cfg, build_optimizer(cfg.optimizer, cfg.a2c))
    state, update = agent.init(jax.random.key(seed)), jax.jit(agent.update)
    sizes = []
    for _ in range(updates):
        new, _ = update(state)
        moved = jax.tree.leaves(jax.tree.map(lambda a, b: jnp.abs(a - b).ravel(), new.params, state.params))
        sizes.append(float(jnp.concatenate(moved).mean()))
        state = new
    return sizes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="small_dense_long")
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--out", required=True, help="the JSON to write")
    args = parser.parse_args()
    rows = {}
    for label, (optimizer, overrides) in CASES.items():
        sizes = step_sizes(args.env, optimizer, overrides, args.seed)
        rows[label] = {"updates_1_10": float(np.mean(sizes[:10])), "updates_21_30": float(np.mean(sizes[20:])),
                       "per_update": sizes}
        print(f"{label:28s} updates 1-10: {rows[label]['updates_1_10']:.2e}   21-30: {rows[label]['updates_21_30']:.2e}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"env": args.env, "seed": args.seed, "measure": "mean |delta theta| per update",
                                          "rows": rows}, indent=2))


if __name__ == "__main__":
    main()

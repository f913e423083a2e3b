"""PPO throughput and peak memory: env steps/s (compile excluded) and peak RSS per case.

Each case runs in its own process so its peak resident memory is its own. Prints a table
and writes JSON. Cases with a learned optimizer also report their speed as a ratio to
PPO + Adam at the same budget measured in the same invocation (`breakout_1e6`). Usage:

    python benchmarks/ppo_throughput.py --out benchmarks/results            # all cases
    python benchmarks/ppo_throughput.py --cases breakout_1e6 breakout_open_1e6 breakout_optim4rl_1e6
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

# name -> (env, optimizer, overrides)
ANT_SMALL = {"ppo.num_envs": 16, "ppo.num_steps": 10, "ppo.num_minibatches": 4, "ppo.total_timesteps": 16 * 10 * 40}
OPEN_WEIGHTS = Path(__file__).resolve().parents[2] / "shared" / "reference" / "open_weights"
CASES: dict[str, tuple[str, str, dict]] = {
    "breakout_1e6": ("breakout", "adam", {"ppo.total_timesteps": 1_000_000}),
    "breakout_open_1e6": ("breakout", "open", {"ppo.total_timesteps": 1_000_000,
                                              "optimizer.meta_params": str(OPEN_WEIGHTS / "breakout_OPEN.npy")}),
    # Optim4RL's cost does not depend on its weights: freshly initialised ones.
    "breakout_optim4rl_1e6": ("breakout", "optim4rl", {"ppo.total_timesteps": 1_000_000}),
    "breakout_1e7": ("breakout", "adam", {"ppo.total_timesteps": 10_000_000}),
    "ant_positional": ("ant", "adam", {**ANT_SMALL, "env.backend": "positional"}),
    "ant_spring": ("ant", "adam", {**ANT_SMALL, "env.backend": "spring"}),
    "ant_generalized": ("ant", "adam", {**ANT_SMALL, "env.backend": "generalized"}),
    "ant_mjx": ("ant", "adam", {**ANT_SMALL, "env.backend": "mjx"}),
}
DEFAULT_CASES = ["breakout_1e6", "breakout_open_1e6", "breakout_optim4rl_1e6", "breakout_1e7",
                 "ant_positional", "ant_spring", "ant_generalized", "ant_mjx"]
RATIO_BASELINE = {"breakout_open_1e6": "breakout_1e6", "breakout_optim4rl_1e6": "breakout_1e6"}


def run_case(name: str) -> dict:
    """In the child process: one training run, measured."""
    from metaopt.config import load_train_config
    from metaopt.evaluation.runs import run_training

    from metaopt.optimizers import build_optimizer

    env, optimizer, overrides = CASES[name]
    cfg = load_train_config(env=env, optimizer=optimizer, overrides=overrides)
    meta_params = None
    if optimizer == "optim4rl":
        import jax

        from metaopt.optimizers import optim4rl

        meta_params = optim4rl.init_meta_params(jax.random.key(0), cfg.optimizer.hidden)
    result = run_training(cfg, build_optimizer(cfg.optimizer, cfg.ppo, meta_params))
    return {
        "case": name,
        "env": env,
        "optimizer": optimizer,
        "backend": cfg.env.backend if cfg.env.is_brax else None,
        "num_envs": cfg.ppo.num_envs,
        "num_steps": cfg.ppo.num_steps,
        "env_steps": result.env_steps,
        "env_steps_per_second": result.env_steps_per_second,
        "run_seconds": result.run_seconds,
        "compile_seconds": result.compile_seconds,
        "peak_rss_mb": result.peak_rss_mb,
        "final_return": float(result.final_returns().mean()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", nargs="+", default=DEFAULT_CASES, choices=sorted(CASES))
    parser.add_argument("--out", default="benchmarks/results", help="folder for ppo_throughput.json")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_case(args.child)))
        return

    rows = []
    for name in args.cases:
        t0 = time.time()
        proc = subprocess.run([sys.executable, __file__, "--child", name], capture_output=True, text=True)
        if proc.returncode != 0:
            tail = proc.stderr.strip().splitlines()[-1:] or ["?"]
            rows.append({"case": name, "error": tail[0]})
            print(f"{name}: failed: {tail[0]}", file=sys.stderr)
            continue
        row = json.loads(proc.stdout.strip().splitlines()[-1])
        row["wall_seconds"] = time.time() - t0
        rows.append(row)
        print(f"{name}: {row['env_steps_per_second']:,.0f} env steps/s, peak {row['peak_rss_mb']:,.0f} MB", file=sys.stderr)

    by_case = {r["case"]: r for r in rows if "error" not in r}
    for r in rows:
        base = by_case.get(RATIO_BASELINE.get(r["case"], ""))
        if base and "error" not in r:
            r["ratio_to_adam"] = r["env_steps_per_second"] / base["env_steps_per_second"]
    header = (f"{'case':<24}{'env steps/s':>14}{'vs adam':>9}{'peak RSS MB':>13}{'compile s':>11}"
              f"{'run s':>9}{'return':>9}")
    print(header)
    print("-" * len(header))
    for r in rows:
        if "error" in r:
            print(f"{r['case']:<24}  failed: {r['error'][:70]}")
            continue
        ratio = f"{r['ratio_to_adam']:.2f}x" if "ratio_to_adam" in r else "-"
        print(f"{r['case']:<24}{r['env_steps_per_second']:>14,.0f}{ratio:>9}{r['peak_rss_mb']:>13,.0f}"
              f"{r['compile_seconds']:>11.1f}{r['run_seconds']:>9.1f}{r['final_return']:>9.2f}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    import jax

    meta = {"python": platform.python_version(), "jax": jax.__version__, "machine": platform.machine(),
            "cpus": __import__("os").cpu_count(), "date": time.strftime("%Y-%m-%d %H:%M")}
    (out / "ppo_throughput.json").write_text(json.dumps({"meta": meta, "cases": rows}, indent=2))
    print(f"wrote {out / 'ppo_throughput.json'}")


if __name__ == "__main__":
    main()

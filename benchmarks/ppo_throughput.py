"""PPO throughput and peak memory: env steps/s (compile excluded) and peak RSS per case.

Each case runs in its own process so its peak resident memory is its own. Prints a table
and writes JSON. Usage:

    python benchmarks/ppo_throughput.py --out benchmarks/results            # all cases
    python benchmarks/ppo_throughput.py --cases breakout_1e6 ant_positional  # some
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
CASES: dict[str, tuple[str, str, dict]] = {
    "breakout_1e6": ("breakout", "adam", {"ppo.total_timesteps": 1_000_000}),
    "breakout_1e7": ("breakout", "adam", {"ppo.total_timesteps": 10_000_000}),
    "ant_positional": ("ant", "adam", {**ANT_SMALL, "env.backend": "positional"}),
    "ant_spring": ("ant", "adam", {**ANT_SMALL, "env.backend": "spring"}),
    "ant_generalized": ("ant", "adam", {**ANT_SMALL, "env.backend": "generalized"}),
    "ant_mjx": ("ant", "adam", {**ANT_SMALL, "env.backend": "mjx"}),
}
DEFAULT_CASES = ["breakout_1e6", "breakout_1e7", "ant_positional", "ant_spring", "ant_generalized", "ant_mjx"]


def run_case(name: str) -> dict:
    """In the child process: one training run, measured."""
    from metaopt.config import load_train_config
    from metaopt.evaluation.runs import run_training

    env, optimizer, overrides = CASES[name]
    cfg = load_train_config(env=env, optimizer=optimizer, overrides=overrides)
    result = run_training(cfg)
    return {
        "case": name,
        "env": env,
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

    header = f"{'case':<18}{'env steps/s':>14}{'peak RSS MB':>13}{'compile s':>11}{'run s':>9}{'return':>9}"
    print(header)
    print("-" * len(header))
    for r in rows:
        if "error" in r:
            print(f"{r['case']:<18}  failed: {r['error'][:70]}")
            continue
        print(f"{r['case']:<18}{r['env_steps_per_second']:>14,.0f}{r['peak_rss_mb']:>13,.0f}"
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

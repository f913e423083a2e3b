"""PPO throughput and peak memory: env steps/s (compile excluded) and peak RSS per case.

Each case runs in its own process so its peak resident memory is its own. Prints a table
and writes JSON. Cases with a learned optimizer also report their speed as a ratio to
PPO + Adam at the same budget measured in the same invocation (`breakout_1e6`). Usage:

    python benchmarks/ppo_throughput.py --out benchmarks/results            # all cases
    python benchmarks/ppo_throughput.py --cases breakout_1e6 breakout_open_1e6 breakout_optim4rl_1e6
    python benchmarks/ppo_throughput.py --interleaved 8                     # learned-optimizer ratios

--interleaved R: the ratios to Adam without the noise of separate processes on a shared
machine. One process compiles the PPO update (UPDATES_PER_CALL updates per call) once per
optimizer on the Breakout config, then times the optimizers in turn for R rounds; the
ratio is the median over rounds of Adam's time / the optimizer's time in that round.
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
    "breakout_open_1e6": ("breakout", "open", {"ppo.total_timesteps": 1_000_000,
                                              "optimizer.meta_params": "published:breakout"}),
    # Optim4RL's cost does not depend on its weights: freshly initialised ones.
    "breakout_optim4rl_1e6": ("breakout", "optim4rl", {"ppo.total_timesteps": 1_000_000}),
    # The same on XLA's code instead of the compiled CPU kernels (optimizers/kernels/).
    "breakout_open_xla_1e6": ("breakout", "open", {"ppo.total_timesteps": 1_000_000, "optimizer.cpu_kernel": False,
                                                  "optimizer.meta_params": "published:breakout"}),
    "breakout_optim4rl_xla_1e6": ("breakout", "optim4rl", {"ppo.total_timesteps": 1_000_000,
                                                          "optimizer.cpu_kernel": False}),
    "breakout_1e7": ("breakout", "adam", {"ppo.total_timesteps": 10_000_000}),
    # 16 seeds at once (vmapped): the GPU check's cases (benchmarks/gpu_check.sh).
    "breakout_16seeds_1e6": ("breakout", "adam", {"ppo.total_timesteps": 1_000_000, "num_seeds": 16}),
    "breakout_open_16seeds_1e6": ("breakout", "open", {"ppo.total_timesteps": 1_000_000, "num_seeds": 16,
                                                      "optimizer.meta_params": "published:breakout"}),
    "breakout_optim4rl_16seeds_1e6": ("breakout", "optim4rl", {"ppo.total_timesteps": 1_000_000, "num_seeds": 16}),
    "ant_positional": ("ant", "adam", {**ANT_SMALL, "env.backend": "positional"}),
    "ant_spring": ("ant", "adam", {**ANT_SMALL, "env.backend": "spring"}),
    "ant_generalized": ("ant", "adam", {**ANT_SMALL, "env.backend": "generalized"}),
    "ant_mjx": ("ant", "adam", {**ANT_SMALL, "env.backend": "mjx"}),
}
DEFAULT_CASES = ["breakout_1e6", "breakout_open_1e6", "breakout_optim4rl_1e6", "breakout_1e7",
                 "ant_positional", "ant_spring", "ant_generalized", "ant_mjx"]
RATIO_BASELINE = {name: "breakout_16seeds_1e6" if "16seeds" in name else "breakout_1e6"
                  for name in CASES if name.startswith(("breakout_open", "breakout_optim4rl"))}
INTERLEAVED = ("breakout_1e6", "breakout_open_1e6", "breakout_optim4rl_1e6", "breakout_open_xla_1e6",
               "breakout_optim4rl_xla_1e6")
UPDATES_PER_CALL = 4


def case_config(name: str):
    """(TrainConfig, meta_params) of a case."""
    from metaopt.config import load_train_config

    env, optimizer, overrides = CASES[name]
    cfg = load_train_config(env=env, optimizer=optimizer, overrides=overrides)
    meta_params = None
    if optimizer == "optim4rl":
        import jax

        from metaopt.optimizers import optim4rl

        meta_params = optim4rl.init_meta_params(jax.random.key(0), cfg.optimizer.hidden)
    return cfg, meta_params


def run_case(name: str) -> dict:
    """In the child process: one training run, measured."""
    from metaopt.optimizers import build_optimizer
    from metaopt.training.runs import run_training

    env, optimizer, _ = CASES[name]
    cfg, meta_params = case_config(name)
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
        "device": _device_memory(),
        "num_seeds": cfg.num_seeds,
        "final_return": float(result.final_returns().mean()),
    }


def _device_memory() -> dict:
    """The accelerator and its peak memory in use by this process (GPUs; {} where JAX has no stats)."""
    import jax

    device = jax.local_devices()[0]
    stats = device.memory_stats() or {}
    out = {"platform": device.platform, "kind": device.device_kind}
    if "peak_bytes_in_use" in stats:
        out["peak_mb"] = stats["peak_bytes_in_use"] / 2**20
        out["limit_mb"] = stats.get("bytes_limit", 0) / 2**20
    return out


def run_interleaved(rounds: int) -> list[dict]:
    """Each case's PPO update compiled once, then timed in turn for `rounds` rounds."""
    import jax
    import numpy as np

    from metaopt.agents.ppo import make_ppo
    from metaopt.optimizers import build_optimizer

    compiled = {}
    for name in INTERLEAVED:
        cfg, meta_params = case_config(name)
        ppo = make_ppo(cfg, build_optimizer(cfg.optimizer, cfg.ppo, meta_params))
        state = jax.jit(jax.vmap(ppo.init))(jax.random.split(jax.random.key(cfg.seed), 1))

        def updates(state, ppo=ppo):
            return jax.lax.scan(lambda s, _: ppo.update(s), state, None, length=UPDATES_PER_CALL)

        t0 = time.perf_counter()
        call = jax.jit(jax.vmap(updates)).lower(state).compile()  # vmapped over one seed, as run_training does
        jax.block_until_ready(call(state))  # warm-up
        compiled[name] = (call, state, cfg.ppo.batch_size * UPDATES_PER_CALL, time.perf_counter() - t0)
        print(f"{name}: compiled", file=sys.stderr)
    seconds = {name: [] for name in compiled}
    for r in range(rounds):
        for name, (call, state, _, _) in compiled.items():
            t0 = time.perf_counter()
            jax.block_until_ready(call(state))
            seconds[name].append(time.perf_counter() - t0)
        print(f"round {r + 1}/{rounds}", file=sys.stderr)
    adam = np.asarray(seconds[INTERLEAVED[0]])
    rows = []
    for name, (_, _, steps, compile_s) in compiled.items():
        t = np.asarray(seconds[name])
        rows.append({
            "case": name, "optimizer": CASES[name][1], "rounds": rounds, "updates_per_call": UPDATES_PER_CALL,
            "ms_per_update_median": float(np.median(t)) * 1000 / UPDATES_PER_CALL,
            "ms_per_update_min": float(t.min()) * 1000 / UPDATES_PER_CALL,
            "env_steps_per_second": steps / float(np.median(t)),
            "ratio_to_adam": float(np.median(adam / t)), "ratio_range": [float((adam / t).min()), float((adam / t).max())],
            "compile_and_warmup_seconds": compile_s,
        })
    return rows


def print_interleaved(rows: list[dict]) -> None:
    header = f"{'case':<24}{'ms/update':>11}{'(min)':>9}{'env steps/s':>14}{'vs adam':>9}{'range':>15}"
    print(header)
    print("-" * len(header))
    for r in rows:
        lo, hi = r["ratio_range"]
        print(f"{r['case']:<24}{r['ms_per_update_median']:>11.1f}{r['ms_per_update_min']:>9.1f}"
              f"{r['env_steps_per_second']:>14,.0f}{r['ratio_to_adam']:>8.3f}x{f'{lo:.2f}-{hi:.2f}':>15}")


def machine_info() -> dict:
    import os

    import jax

    return {"python": platform.python_version(), "jax": jax.__version__, "machine": platform.machine(),
            "cpus": os.cpu_count(), "load_average": os.getloadavg(), "date": time.strftime("%Y-%m-%d %H:%M")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", nargs="+", default=DEFAULT_CASES, choices=sorted(CASES))
    parser.add_argument("--out", default="benchmarks/results", help="folder for ppo_throughput.json")
    parser.add_argument("--interleaved", type=int, metavar="ROUNDS",
                        help="time Adam, OPEN and Optim4RL (kernels and XLA) in turn in one process (ratios to Adam)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_case(args.child)))
        return
    out = Path(args.out)
    if args.interleaved:
        rows = run_interleaved(args.interleaved)
        print_interleaved(rows)
        out.mkdir(parents=True, exist_ok=True)
        (out / "ppo_ratio.json").write_text(json.dumps({"meta": machine_info(), "cases": rows}, indent=2))
        print(f"wrote {out / 'ppo_ratio.json'}")
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
    out.mkdir(parents=True, exist_ok=True)
    (out / "ppo_throughput.json").write_text(json.dumps({"meta": machine_info(), "cases": rows}, indent=2))
    print(f"wrote {out / 'ppo_throughput.json'}")


if __name__ == "__main__":
    main()

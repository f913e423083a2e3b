"""Plan cells side by side, with and without `resources.pin_cpus`: the machine's env steps per
second while two CPU cells (a CPU each) train at once. Prints a line per run and writes JSON.

Each layout runs the same two-cell plan (Adam and the published Breakout OPEN on Breakout,
2 seeds, the published PPO config) into a fresh folder through `metaopt evaluate`; a cell's
time is its `run_seconds` (compile excluded) from device.json, and the machine's rate is all
env steps over the span from the first cell's start to the last one's end (compiles
included). Layouts alternate
(off, on, off, on...) so a drift in the machine's speed touches both.

    python benchmarks/cell_pinning.py --rounds 2 --out benchmarks/throughput
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]


def run_layout(pin: bool, steps: int, seeds: int, root: Path) -> dict:
    """Run the two-cell plan once; returns the cells' timings and the machine's rate."""
    out = root / f"pin_{pin}_{time.monotonic_ns()}"
    cmd = [sys.executable, "-m", "metaopt.cli", "evaluate", "--plan", "configs/eval/tiny.yaml", "--out", str(out),
           "--set", "envs=[breakout]", "--set", "optimizers=[adam, {label: open-breakout, optimizer: open, "
           "meta_params: 'published:breakout', trained_on: [breakout]}]",
           "--set", f"seeds={seeds}", "--set", f"total_timesteps={steps}",
           "--set", "ppo={}", "--set", f"resources.pin_cpus={str(pin).lower()}",
           "--set", f"tracking.uri=sqlite:///{root}/mlruns.db"]
    done = subprocess.run(cmd, cwd=PROJECT, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"metaopt evaluate failed:\n{done.stdout[-2000:]}{done.stderr[-3000:]}")
    cells = []
    for device in sorted(out.glob("cells/*/*/device.json")):
        d = json.loads(device.read_text())
        cells.append({"cell": f"{device.parent.parent.name}/{device.parent.name}", "cores": d.get("cores"),
                      "compile_seconds": d["compile_seconds"], "run_seconds": d["run_seconds"],
                      "started": d["started"], "finished": d["finished"]})
    span = (max(datetime.fromisoformat(c["finished"]) for c in cells)
            - min(datetime.fromisoformat(c["started"]) for c in cells)).total_seconds()
    return {"pin_cpus": pin, "cells": cells, "span_seconds": span,
            "machine_env_steps_per_second": len(cells) * seeds * steps / span,
            "cell_env_steps_per_second": [seeds * steps / c["run_seconds"] for c in cells]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=1_048_576, help="env steps per seed (128 updates of 8,192)")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", default="benchmarks/throughput")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.rounds):
            for pin in (False, True):
                rows.append(run_layout(pin, args.steps, args.seeds, Path(tmp)))
                r = rows[-1]
                print(f"pin_cpus={str(pin):5}  span {r['span_seconds']:7.1f} s  machine "
                      f"{r['machine_env_steps_per_second']:8,.0f} env steps/s  cells "
                      + ", ".join(f"{c['cell']} {c['run_seconds']:.1f} s on {c['cores']}" for c in r["cells"]), flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    record = {"machine": {"platform": platform.platform(), "processor": platform.processor()},
              "time": time.strftime("%Y-%m-%d %H:%M:%S"), "steps_per_seed": args.steps, "seeds": args.seeds,
              "results": rows}
    (out / "cell_pinning.json").write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {out / 'cell_pinning.json'}")


if __name__ == "__main__":
    main()

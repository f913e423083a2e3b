"""`ray job submit` entry point for meta-training (OPEN by ES or Optim4RL by pipeline, by
config); plain `python ray_jobs/meta_train.py ...` starts an embedded local Ray instead.

    ray job submit --address http://127.0.0.1:8265 --working-dir . -- \\
        python ray_jobs/meta_train.py --config configs/meta/open_breakout.yaml --out /home/metaopt/data/open_breakout
    python ray_jobs/meta_train.py --config configs/meta/open_breakout_smoke.yaml --out runs/smoke
    python ray_jobs/meta_train.py --config ... --out ... --resume RUN_ID    # a driver that died

Thin on purpose: `metaopt meta-train --ray` with the same arguments.
"""

import sys

from metaopt.cli import main

if __name__ == "__main__":
    sys.exit(main(["meta-train", "--ray", *sys.argv[1:]]))

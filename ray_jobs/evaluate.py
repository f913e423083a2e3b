"""`ray job submit` entry point for evaluating optimizers: PPO agents trained from scratch
with a registered learned optimizer next to Adam and RMSProp, on the same seeds; a table,
results.json, curves and a plot.

    ray job submit --address http://127.0.0.1:8265 --working-dir . -- \\
        python ray_jobs/evaluate.py --env breakout --optimizers models:/open-breakout@champion adam rmsprop \\
        --total-steps 1e7 --seeds 4 --out runs/eval_breakout

Thin on purpose: `metaopt compare` with the same arguments (models:/ URIs are fetched from
the MLflow registry at $MLFLOW_TRACKING_URI, default ./mlruns.db).
"""

import sys

from metaopt.cli import main

if __name__ == "__main__":
    sys.exit(main(["compare", *sys.argv[1:]]))

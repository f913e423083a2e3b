"""`ray job submit` entry point for a PPO training run; plain `python ray_jobs/train.py` works too.

    ray job submit --address http://127.0.0.1:8265 --working-dir . -- \
        python ray_jobs/train.py --env breakout --optimizer adam --total-steps 1e6 --out /shared/runs/x

Thin on purpose: the same arguments and code path as `metaopt train`.
"""

import sys

from metaopt.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
